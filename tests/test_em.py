"""EM refit of a GMM layer: equal to scikit-learn's EM step, monotone, chunking-invariant."""

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from skdcgmm.nn import GMMLayer
from skdcgmm.nn.em import em_refit_


def _data(n=300, shape=(1, 1, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.1, 0.2, 0.8, 0.5], [0.9, 0.7, 0.2, 0.4], [0.5, 0.5, 0.5, 0.9]])
    labels = torch.randint(0, 3, (n, shape[0] * shape[1]), generator=g)
    x = centres[labels][..., : shape[2]] + 0.08 * torch.randn(
        n, shape[0] * shape[1], shape[2], generator=g
    )
    return x.double()


def _layer(shape=(1, 1, 4), k=3, **kw):
    layer = GMMLayer(shape, k, generator=torch.Generator().manual_seed(1), **kw).double()
    with torch.no_grad():  # a start that is not a fixed point: means spread over the data
        layer.means.add_(torch.linspace(0.2, 0.8, k, dtype=torch.float64)[:, None])
        layer.precisions.fill_(3.0)
    return layer


def _chunks(x, size):
    return lambda: (x[i : i + size] for i in range(0, len(x), size))


@pytest.mark.parametrize("reg", [0.0, 0.01])
def test_one_step_equals_sklearn_em_step(reg):
    x = _data()
    layer = _layer(min_variance=1e-9)
    start = {
        "means_init": layer.means[0].detach().numpy().copy(),
        "precisions_init": (layer.precisions[0] ** 2).detach().numpy().copy(),
        "weights_init": layer.log_weights()[0].exp().detach().numpy().copy(),
    }
    result = em_refit_(layer, _chunks(x, 1000), max_iter=1, tol=0.0, reg_variance=reg)
    em = GaussianMixture(3, covariance_type="diag", reg_covar=reg, max_iter=1, **start)
    with pytest.warns(Warning):  # one step does not converge
        em.fit(x[:, 0].numpy())
    assert result.n_iter == 1 and not result.converged
    np.testing.assert_allclose(layer.means[0].detach().numpy(), em.means_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        (layer.precisions[0] ** -2).detach().numpy(), em.covariances_, rtol=1e-9, atol=1e-12
    )
    weights = layer.log_weights()[0].exp().detach().numpy()
    np.testing.assert_allclose(weights, em.weights_, rtol=1e-10)
    # The recorded log-likelihoods are those of the start and of the refitted layer.
    np.testing.assert_allclose(result.log_likelihood[-1], em.score(x[:, 0].numpy()), rtol=1e-10)


@pytest.mark.parametrize("shared", [True, False])
def test_log_likelihood_never_decreases_and_matches_the_layer(shared):
    shape = (2, 2, 4)
    x = _data(200, shape)
    layer = _layer(shape, shared=shared)
    before = layer.log_likelihood(x).mean().item()
    result = em_refit_(layer, _chunks(x, 64), max_iter=30, tol=1e-8)
    history = np.array(result.log_likelihood)
    assert history[0] == pytest.approx(before)
    assert np.all(np.diff(history) >= -1e-9)
    assert history[-1] > history[0] + 1.0
    assert result.log_likelihood[-1] == pytest.approx(layer.log_likelihood(x).mean().item())
    assert torch.allclose(layer.log_weights().exp().sum(-1), torch.ones(1, dtype=torch.float64))


def test_chunking_does_not_change_the_fit():
    x = _data(250)
    a, b = _layer(), _layer()
    em_refit_(a, _chunks(x, 250), max_iter=5, tol=0.0)
    em_refit_(b, _chunks(x, 7), max_iter=5, tol=0.0)
    for name in ("means", "precisions", "logits"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name))


def test_variances_stay_within_the_layer_bounds_and_float32_layers_refit():
    x = _data(100)
    layer = GMMLayer((1, 1, 4), 3, min_variance=0.05, generator=torch.Generator().manual_seed(0))
    result = em_refit_(layer, _chunks(x.float(), 50), max_iter=20)
    assert layer.means.dtype == torch.float32
    assert (layer.precisions <= layer.precision_max + 1e-6).all()  # variances >= 0.05
    assert result.converged and result.n_iter < 20


def test_a_lower_floor_than_the_layer_s_fits_tighter_and_leaves_the_layer_bounds_alone():
    x = _data(300)  # clusters of standard deviation 0.08: variance 0.0064 < the floor 0.05
    own, low = _layer(min_variance=0.05), _layer(min_variance=0.05)
    a = em_refit_(own, _chunks(x, 100), max_iter=50, tol=1e-10)
    b = em_refit_(low, _chunks(x, 100), max_iter=50, tol=1e-10, min_variance=1e-3)
    variances = low.precisions.detach() ** -2
    assert (variances >= 1e-3 * (1 - 1e-9)).all() and (variances < 0.05).any()
    assert ((own.precisions.detach() ** -2) >= 0.05 * (1 - 1e-9)).all()
    assert b.log_likelihood[-1] > a.log_likelihood[-1] + 1.0
    assert low.precision_max == own.precision_max == pytest.approx(0.05**-0.5)
    for bad in (0.0, -1.0, 1e7):
        with pytest.raises(ValueError, match="min_variance"):
            em_refit_(low, _chunks(x, 100), min_variance=bad)


def test_empty_components_keep_their_parameters_and_bad_input_is_refused():
    x = _data(100)
    layer = _layer(k=4)
    with torch.no_grad():
        layer.means[0, 3] = 50.0  # far from all data: no responsibility
    em_refit_(layer, _chunks(x, 100), max_iter=3, tol=0.0)
    assert torch.allclose(layer.means[0, 3], torch.full((4,), 50.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="max_iter"):
        em_refit_(layer, _chunks(x, 100), max_iter=0)
    with pytest.raises(ValueError, match="no input"):
        em_refit_(layer, lambda: iter(()))
    for bad in (-1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="reg_variance"):
            em_refit_(layer, _chunks(x, 100), reg_variance=bad)


@pytest.mark.parametrize("shrinkage", [0.3, 1.0])
@pytest.mark.parametrize("shared", [True, False])
def test_shrinkage_step_equals_the_pooled_variance_formula(shrinkage, shared):
    shape = (2, 1, 4)
    x = _data(200, shape)
    layer = _layer(shape, shared=shared, min_variance=1e-9)
    with torch.no_grad():
        resp = torch.softmax(layer.log_scores(x), dim=-1)  # (n, L, K): the start's E-step
    em_refit_(layer, _chunks(x, 64), max_iter=1, tol=0.0, shrinkage=shrinkage, reg_variance=0.01)
    # Reference: weighted moments of every mixture (all positions pooled when shared).
    r, v = (resp.reshape(1, -1, 3), x.reshape(1, -1, 4)) if shared else (
        resp.transpose(0, 1), x.transpose(0, 1))  # fmt: skip
    expected = []
    for rp, vp in zip(r.numpy(), v.numpy(), strict=True):
        nk = rp.sum(0)
        means = rp.T @ vp / nk[:, None]
        own = np.stack([rp[:, k] @ (vp - means[k]) ** 2 / nk[k] for k in range(3)])
        pooled = (nk[:, None] * own).sum(0) / nk.sum()
        expected.append((1 - shrinkage) * own + shrinkage * pooled + 0.01)
    variances = (layer.precisions.detach() ** -2).numpy()
    np.testing.assert_allclose(variances, np.stack(expected)[: len(variances)], rtol=1e-9)


def test_full_shrinkage_is_em_of_a_shared_diagonal_covariance():
    x = _data(300)
    layer = _layer(min_variance=1e-9)
    result = em_refit_(layer, _chunks(x, 100), max_iter=40, tol=1e-12, shrinkage=1.0)
    variances = layer.precisions.detach()[0] ** -2  # (K, D): one row, repeated
    torch.testing.assert_close(variances, variances[:1].expand_as(variances))
    assert np.all(np.diff(result.log_likelihood) >= -1e-9)  # exact EM of that model
    # Its diagonal is that of scikit-learn's tied (full) covariance at the same fixed point.
    with torch.no_grad():
        resp = torch.softmax(layer.log_scores(x), dim=-1)[:, 0].numpy()
    data, nk = x[:, 0].numpy(), resp.sum(0)
    means = resp.T @ data / nk[:, None]
    tied = (data.T @ data - (nk[:, None] * means).T @ means) / nk.sum()
    np.testing.assert_allclose(variances[0].numpy(), np.diag(tied), rtol=1e-6)
    np.testing.assert_allclose(layer.means[0].detach().numpy(), means, rtol=1e-6, atol=1e-9)


def test_no_shrinkage_is_plain_em_and_bad_shrinkage_is_refused():
    x = _data(200)
    a, b = _layer(), _layer()
    em_refit_(a, _chunks(x, 100), max_iter=5, tol=0.0)
    em_refit_(b, _chunks(x, 100), max_iter=5, tol=0.0, shrinkage=0.0)
    for name in ("means", "precisions", "logits"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="shrinkage"):
            em_refit_(a, _chunks(x, 100), shrinkage=bad)
