"""GMMLayer: shapes, the annealed loss, its gradient, bounds and sampling."""

import math

import pytest
import torch

from skdcgmm.nn import GMMLayer
from skdcgmm.nn.functional import log_normaliser


def _layer(shape=(1, 1, 5), k=9, **kw):
    return GMMLayer(shape, k, generator=torch.Generator().manual_seed(0), **kw).double()


def _x(n=8, shape=(1, 1, 5), seed=1):
    return torch.rand(
        n,
        shape[0] * shape[1],
        shape[2],
        generator=torch.Generator().manual_seed(seed),
        dtype=torch.float64,
    )


@pytest.mark.parametrize("shared", [True, False])
def test_shapes_and_responsibilities(shared):
    layer = _layer((2, 3, 5), 4, shared=shared)
    x = _x(7, (2, 3, 5))
    resp = layer(x)
    assert resp.shape == (7, 6, 4) and layer.output_shape == (2, 3, 4)
    torch.testing.assert_close(resp.sum(-1), torch.ones(7, 6, dtype=resp.dtype))
    assert layer.means.shape == ((1 if shared else 6), 4, 5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_responsibilities_are_the_softmax_over_components(dtype):
    g = torch.Generator().manual_seed(0)
    scores = (torch.randn(3, 5, 25, generator=g) * 60).to(dtype)  # gaps of hundreds
    before = scores.clone()
    got = GMMLayer.responsibilities(scores)
    exact = torch.softmax(scores.double(), dim=-1)
    tol = 1e-14 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(got.double(), exact, rtol=tol, atol=tol)
    assert got.dtype == dtype
    assert torch.equal(scores, before)  # the log-scores are not modified


def test_float64_responsibilities_are_differentiable():
    # Sharpening differentiates through responsibilities; float64 takes the written-out path.
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(2, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(GMMLayer.responsibilities, (scores,))


def test_initial_state_follows_the_method():
    layer = GMMLayer((1, 1, 10), 25, generator=torch.Generator().manual_seed(0))
    assert layer.means.abs().max() <= 0.1
    torch.testing.assert_close(layer.precisions, torch.full_like(layer.precisions, math.sqrt(20)))
    torch.testing.assert_close(layer.log_weights().exp(), torch.full((1, 25), 1 / 25))
    assert float(layer.sigma) == pytest.approx(0.25 * math.sqrt(50))


def test_per_position_weights_normalise_per_position():
    layer = _layer((2, 2, 3), 5, shared=False)
    with torch.no_grad():
        layer.logits.normal_()
    torch.testing.assert_close(
        layer.log_weights().exp().sum(-1), torch.ones(4, dtype=torch.float64)
    )


def test_annealed_loss_at_small_sigma_is_max_component_bound():
    layer = _layer()
    with torch.no_grad():
        layer.means.normal_(0.5, 0.3)
    layer.set_sigma(0.01)
    x = _x()
    scores = layer.log_scores(x)
    loss = layer.annealed_loss(scores)
    expected = scores.amax(-1).mean() + log_normaliser(5)
    torch.testing.assert_close(loss, expected)
    exact = layer.log_likelihood(x)  # (N, L)
    max_comp = scores.amax(-1) + log_normaliser(5)
    assert (max_comp <= exact + 1e-12).all()
    assert (exact <= max_comp + math.log(9) + 1e-12).all()


def test_gradient_of_annealed_loss_is_neighbourhood_weighted():
    """d l / d mu_j = G_{k* j} s_j^2 (x - mu_j) for one sample (method §2.7)."""
    layer = _layer(k=9)
    layer.set_sigma(1.0)
    x = _x(1)
    scores = layer.log_scores(x)
    loss = layer.annealed_loss(scores)
    (grad,) = torch.autograd.grad(loss, layer.means)
    with torch.no_grad():
        winner = (scores @ layer.kernel.T)[0, 0].argmax()
        s2 = layer.precisions[0] ** 2
        expected = layer.kernel[winner][:, None] * s2 * (x[0, 0][None] - layer.means[0])
    torch.testing.assert_close(grad[0], expected)


def test_set_sigma_rebuilds_kernel():
    layer = _layer()
    layer.set_sigma(0.01)
    torch.testing.assert_close(layer.kernel, torch.eye(9, dtype=layer.kernel.dtype))
    assert float(layer.sigma) == 0.01


def test_kernel_is_identity_follows_sigma_and_a_loaded_state():
    layer = _layer()
    assert not layer.kernel_is_identity  # sigma0 = 0.25 * sqrt(18)
    layer.set_sigma(0.01)  # 2 * 110 * 0.01^2 = 0.022 <= 1
    assert layer.kernel_is_identity
    fresh = _layer()
    fresh.load_state_dict(layer.state_dict())
    assert not fresh.kernel_is_identity  # unknown until the next set_sigma
    fresh.set_sigma(0.01)  # the value the buffer already holds
    assert fresh.kernel_is_identity
    fresh.set_sigma(0.5)
    assert not fresh.kernel_is_identity


def test_project_clamps_precisions():
    layer = _layer(min_variance=0.05, max_variance=100.0)
    with torch.no_grad():
        layer.precisions.fill_(50.0)
        layer.precisions[0, 0, 0] = -3.0
    layer.project_()
    assert layer.precisions.max() <= math.sqrt(20) + 1e-12
    assert layer.precisions.min() >= 0.1 - 1e-12


def test_project_flushes_means_that_would_become_denormal():
    layer = _layer()
    with torch.no_grad():
        layer.means.view(-1)[:4] = torch.tensor([3e-21, -5e-21, 2e-20, -1e-3])
    before = layer.means.detach().clone()
    layer.project_()
    got = layer.means.detach().view(-1)
    assert got[0] == 0 and got[1] == 0  # within 1e-20 of 0
    assert got[2] == before.view(-1)[2] and got[3] == before.view(-1)[3]
    assert torch.equal(got[4:], before.view(-1)[4:])


def test_param_groups_carry_factors_and_position_multiplier():
    shared = _layer((2, 2, 3), 4, lr_factors=(1.0, 0.5, 0.25))
    assert [g["lr"] for g in shared.param_groups(0.1)] == pytest.approx([0.1, 0.05, 0.025])
    indy = _layer((2, 2, 3), 4, shared=False, lr_factors=(1.0, 0.5, 0.25))
    assert [g["lr"] for g in indy.param_groups(0.1)] == pytest.approx([0.4, 0.2, 0.1])


def test_sampling_statistics():
    layer = GMMLayer((1, 1, 2), 2, min_variance=0.01)
    with torch.no_grad():
        layer.means.copy_(torch.tensor([[[0.0, 0.0], [5.0, -5.0]]]))
        layer.precisions.copy_(torch.tensor([[[10.0, 10.0], [2.0, 4.0]]]))
        layer.logits.copy_(torch.log(torch.tensor([[0.25, 0.75]])))
    g = torch.Generator().manual_seed(0)
    comps = layer.sample_components(20_000, generator=g)
    assert comps.shape == (20_000, 1)
    assert comps.float().mean().item() == pytest.approx(0.75, abs=0.02)
    x = layer.sample_vectors(comps, generator=g)
    second = x[comps[:, 0] == 1, 0]
    torch.testing.assert_close(second.mean(0), torch.tensor([5.0, -5.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(second.std(0), torch.tensor([0.5, 0.25]), atol=0.02, rtol=0)


def test_sample_components_follows_control():
    layer = _layer((1, 2, 3), 4)
    control = torch.zeros(5, 2, 4, dtype=torch.float64)
    control[..., 2] = 1.0
    comps = layer.sample_components(5, control=control, generator=torch.Generator().manual_seed(0))
    assert (comps == 2).all()
    with pytest.raises(ValueError, match="control must have shape"):
        layer.sample_components(5, control=control[:, :1])


def test_bad_input_shape_is_rejected():
    layer = _layer()
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 1, 5\)"):
        layer(torch.zeros(3, 1, 4, dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n_components": 0}, "n_components"), ({"min_variance": 0.0}, "min_variance")],
)
def test_bad_construction_is_rejected(kwargs, match):
    args = {"input_shape": (1, 1, 3), "n_components": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        GMMLayer(**args)
