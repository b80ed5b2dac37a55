"""Kernels of skdcgmm.nn.functional against naive float64 references."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from sklearn.mixture import GaussianMixture

from skdcgmm.nn.functional import (
    grid_shape,
    log_gaussian_diag,
    log_normaliser,
    smoothing_kernel,
    toroidal_sq_distances,
)


def _random_params(n_pos, k, d, seed):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n_pos, k, d, generator=g, dtype=torch.float64)
    prec = 0.5 + 3 * torch.rand(n_pos, k, d, generator=g, dtype=torch.float64)
    logw = torch.log_softmax(torch.randn(n_pos, k, generator=g, dtype=torch.float64), -1)
    return means, prec, logw


def _direct(x, means, prec, logw):
    # (N, L, K, D) materialised on purpose: the naive reference.
    diff = x[:, :, None, :] - means[None]  # (N, L, K, D) with P broadcast
    quad = (prec[None] ** 2 * diff**2).sum(-1)
    return logw[None] + torch.log(prec).sum(-1)[None] - 0.5 * quad


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 5),
    n_pos=st.integers(1, 4),
    k=st.integers(1, 6),
    d=st.integers(1, 7),
    shared=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_log_gaussian_diag_matches_direct_formula(n, n_pos, k, d, shared, seed):
    means, prec, logw = _random_params(1 if shared else n_pos, k, d, seed)
    x = torch.rand(
        n, n_pos, d, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64
    )
    got = log_gaussian_diag(x, means, prec, logw)
    assert got.shape == (n, n_pos, k)
    torch.testing.assert_close(got, _direct(x, means, prec, logw), rtol=1e-10, atol=1e-10)


def test_log_gaussian_diag_matches_scipy_norm():
    means, prec, logw = _random_params(1, 3, 4, 0)
    x = torch.rand(5, 1, 4, dtype=torch.float64)
    got = log_gaussian_diag(x, means, prec, logw) + log_normaliser(4)  # (5, 1, 3)
    ref = np.empty((5, 3))
    for k in range(3):
        ref[:, k] = logw[0, k].item() + norm.logpdf(
            x[:, 0].numpy(), loc=means[0, k].numpy(), scale=1 / prec[0, k].numpy()
        ).sum(-1)
    np.testing.assert_allclose(got[:, 0].numpy(), ref, rtol=1e-10)


def test_exact_log_likelihood_matches_sklearn_gaussian_mixture():
    means, prec, logw = _random_params(1, 4, 6, 3)
    X = np.random.RandomState(0).rand(30, 6)
    gm = GaussianMixture(4, covariance_type="diag")
    gm.means_ = means[0].numpy()
    gm.precisions_cholesky_ = prec[0].numpy()  # diag: inverse standard deviations
    gm.covariances_ = 1 / prec[0].numpy() ** 2
    gm.weights_ = logw[0].exp().numpy()
    ours = torch.logsumexp(log_gaussian_diag(torch.tensor(X)[:, None], means, prec, logw), -1)
    ours = ours[:, 0] + log_normaliser(6)
    np.testing.assert_allclose(ours.numpy(), gm.score_samples(X), rtol=1e-10)


@pytest.mark.parametrize(
    "k, expected",
    [(1, (1, 1)), (7, (1, 7)), (12, (3, 4)), (25, (5, 5)), (30, (5, 6)), (100, (10, 10))],
)
def test_grid_shape_is_most_square(k, expected):
    assert grid_shape(k) == expected


def test_grid_shape_rejects_zero():
    with pytest.raises(ValueError, match="n_components"):
        grid_shape(0)


def test_toroidal_distances_wrap_around():
    d2 = toroidal_sq_distances(25)  # 5 x 5 torus
    assert torch.equal(d2, d2.T)
    assert d2[0, 4] == 1  # (0,0)-(0,4): neighbours across the border
    assert d2[0, 20] == 1  # (0,0)-(4,0)
    assert d2[0, 12] == 8  # (0,0)-(2,2)
    assert d2.diagonal().abs().sum() == 0
    d2 = toroidal_sq_distances(12)  # 3 x 4 torus
    assert d2[0, 2] == 4 and d2[0, 3] == 1 and d2[0, 8] == 1


@pytest.mark.parametrize("k", [4, 12, 25, 49])
@pytest.mark.parametrize("sigma", [0.01, 0.3, 1.0, 3.5])
def test_smoothing_kernel_properties(k, sigma):
    g = smoothing_kernel(toroidal_sq_distances(k), sigma)
    torch.testing.assert_close(g.sum(1), torch.ones(k, dtype=g.dtype))
    torch.testing.assert_close(g, g.T)  # every row sees the same torus, so G is symmetric
    assert (g >= 0).all()
    if sigma == 0.01:
        torch.testing.assert_close(g, torch.eye(k, dtype=g.dtype))
    else:
        assert (g.diagonal() < 1).all()


def test_smoothing_kernel_rejects_non_positive_sigma():
    with pytest.raises(ValueError, match="sigma"):
        smoothing_kernel(toroidal_sq_distances(4), 0.0)


def test_log_normaliser():
    assert log_normaliser(3) == pytest.approx(-1.5 * math.log(2 * math.pi))


@pytest.mark.parametrize(
    "shape, patch, stride",
    [((28, 28, 1), (8, 8), (1, 1)), ((9, 7, 3), (3, 2), (2, 1)), ((6, 6, 2), (2, 2), (2, 2))],
)
def test_patch_log_scores_by_convolution_equal_those_of_folded_patches(shape, patch, stride):
    from skdcgmm.nn import Folding
    from skdcgmm.nn.functional import log_gaussian_diag_patches

    g = torch.Generator().manual_seed(0)
    fold = Folding(shape, patch, stride)
    d, k = fold.output_shape[2], 5
    x = torch.rand(4, shape[0] * shape[1], shape[2], generator=g, dtype=torch.float64)
    means = torch.rand(1, k, d, generator=g, dtype=torch.float64)
    precisions = torch.rand(1, k, d, generator=g, dtype=torch.float64) + 0.5
    log_weights = torch.log_softmax(torch.rand(1, k, generator=g, dtype=torch.float64), -1)
    expected = log_gaussian_diag(fold(x), means, precisions, log_weights)
    got = log_gaussian_diag_patches(x, shape, patch, stride, means, precisions, log_weights)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
