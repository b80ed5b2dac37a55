"""Property-based tests: shape algebra, the Gaussian kernel and the predict invariants."""

import math

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.stats import norm

from skdcgmm import GMM, DeepConvGMM, Fold, Pool
from skdcgmm.nn import Folding, Pooling
from skdcgmm.nn.folding import folding_output_shape
from skdcgmm.nn.functional import log_gaussian_diag, log_normaliser
from skdcgmm.nn.pooling import pooling_output_shape

SETTINGS = settings(max_examples=25, deadline=None)


# ---------------------------------------------------------------------- (a) shape algebra
@st.composite
def fold_then_pool(draw):
    """An image shape, a Fold that fits it and a Pool that fits the folded map."""
    h, w, c = draw(st.integers(1, 12)), draw(st.integers(1, 12)), draw(st.integers(1, 3))
    patch = (draw(st.integers(1, h)), draw(st.integers(1, w)))
    stride = (draw(st.integers(1, h)), draw(st.integers(1, w)))
    ho, wo = (h - patch[0]) // stride[0] + 1, (w - patch[1]) // stride[1] + 1
    kernel = (draw(st.integers(1, ho)), draw(st.integers(1, wo)))
    pool_stride = (draw(st.integers(1, ho + 1)), draw(st.integers(1, wo + 1)))
    n = draw(st.integers(1, 3))
    return n, (h, w, c), patch, stride, kernel, pool_stride


def _random(*shape):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@SETTINGS
@given(case=fold_then_pool(), mode=st.sampled_from(["max", "avg"]))
def test_output_shapes_match_the_modules_and_torch(case, mode):
    n, (h, w, c), patch, stride, kernel, pool_stride = case
    # Folding of (N, H*W, C)
    fold_shape = folding_output_shape((h, w, c), patch, stride)
    fold = Folding((h, w, c), patch, stride)
    assert fold.output_shape == fold_shape
    x = _random(n, h * w, c)
    folded = fold(x)
    ho, wo, d = fold_shape
    assert folded.shape == (n, ho * wo, d)
    assert d == patch[0] * patch[1] * c
    unfolded = F.unfold(x.view(n, h, w, c).permute(0, 3, 1, 2), patch, stride=stride)
    assert unfolded.shape == (n, d, ho * wo)  # torch's (N, C*pH*pW, L)
    # Pooling of the folded map, read as (N, H'*W', K) with K = D'
    pool_shape = pooling_output_shape(fold_shape, kernel, pool_stride)
    pool = Pooling(fold_shape, kernel, pool_stride, mode)
    assert pool.output_shape == pool_shape
    pooled = pool(folded)
    hp, wp, k = pool_shape
    assert k == d and pooled.shape == (n, hp * wp, k)
    reference = F.max_pool2d(
        folded.view(n, ho, wo, d).permute(0, 3, 1, 2), kernel, pool_stride, ceil_mode=True
    )
    assert reference.shape == (n, k, hp, wp)
    assert pool.topdown(pooled).shape == folded.shape
    assert fold.topdown(folded).shape == x.shape


@SETTINGS
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    k=st.integers(1, 3),
    data=st.data(),
)
def test_pooling_shape_is_torch_ceil_mode(h, w, k, data):
    kernel = (data.draw(st.integers(1, h)), data.draw(st.integers(1, w)))
    stride = (data.draw(st.integers(1, 2 * h)), data.draw(st.integers(1, 2 * w)))
    hp, wp, kk = pooling_output_shape((h, w, k), kernel, stride)
    x = _random(2, h * w, k)
    torch_out = F.max_pool2d(x.view(2, h, w, k).permute(0, 3, 1, 2), kernel, stride, ceil_mode=True)
    assert torch_out.shape == (2, kk, hp, wp)
    assert Pooling((h, w, k), kernel, stride).forward(x).shape == (2, hp * wp, k)
    # ceil_mode: the last window starts inside the map, and windows or steps reach its end.
    assert (hp - 1) * stride[0] < h <= (hp - 1) * stride[0] + max(kernel[0], stride[0])
    assert (wp - 1) * stride[1] < w <= (wp - 1) * stride[1] + max(kernel[1], stride[1])


# ---------------------------------------------------------------------- (b) the Gaussian kernel
@st.composite
def gaussian_case(draw):
    n, n_pos = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    k, d = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    p = 1 if draw(st.booleans()) else n_pos  # shared or one GMM per position

    def floats(low, high):
        return st.floats(low, high, allow_nan=False, allow_infinity=False)

    x = draw(hnp.arrays(np.float64, (n, n_pos, d), elements=floats(-3, 3)))
    means = draw(hnp.arrays(np.float64, (p, k, d), elements=floats(-3, 3)))
    precisions = draw(hnp.arrays(np.float64, (p, k, d), elements=floats(0.1, 5)))
    weights = draw(hnp.arrays(np.float64, (p, k), elements=floats(0.01, 1)))
    return x, means, precisions, weights / weights.sum(-1, keepdims=True)


@SETTINGS
@given(case=gaussian_case())
def test_log_gaussian_diag_is_the_weighted_log_density_without_c_d(case):
    x, means, precisions, weights = case
    n, n_pos, d = x.shape
    tensors = [torch.from_numpy(a) for a in (x, means, precisions, np.log(weights))]
    out = log_gaussian_diag(*tensors).numpy()
    assert out.shape == (n, n_pos, means.shape[1])
    # The naive reference: log pi_k + sum_d log N(x_d; mu_kd, 1 / s_kd^2), per position.
    mu = np.broadcast_to(means, (n_pos, *means.shape[1:]))  # (L, K, D)
    s = np.broadcast_to(precisions, mu.shape)
    logw = np.broadcast_to(np.log(weights), (n_pos, means.shape[1]))  # (L, K)
    log_pdf = norm.logpdf(x[:, :, None, :], loc=mu[None], scale=1.0 / s[None]).sum(-1)
    reference = logw[None] + log_pdf  # (N, L, K)
    # The kernel omits the constant c_D = -D/2 log(2 pi) of a D-dimensional Gaussian.
    assert log_normaliser(d) == -0.5 * d * math.log(2 * math.pi)
    np.testing.assert_allclose(out + log_normaliser(d), reference, rtol=1e-10, atol=1e-9)


# ---------------------------------------------------------------------- (c) predict invariants
@st.composite
def fitted_case(draw):
    side = draw(st.integers(2, 6))
    channels = draw(st.integers(1, 2))
    n_components = draw(st.integers(1, 4))
    deep = side >= 3 and draw(st.booleans())
    layers = (Fold(2, 1), GMM(3), Pool(2), Fold(), GMM()) if deep else "flat"
    seed = draw(st.integers(0, 2**16))
    n_train = draw(st.integers(max(n_components, 20), 40))
    d = side * side * channels
    X = draw(hnp.arrays(np.float64, (draw(st.integers(1, 8)), d), elements=st.floats(-1, 2)))
    return (side, channels), n_components, layers, seed, n_train, X


@SETTINGS
@given(case=fitted_case())
def test_predict_invariants_on_random_input(case):
    (side, channels), n_components, layers, seed, n_train, X = case
    train = np.random.RandomState(seed).rand(n_train, side * side * channels)
    model = DeepConvGMM(
        n_components,
        layers=layers,
        image_shape=(side, side, channels),
        max_iter=1,
        random_state=seed,
        device="cpu",
    ).fit(train)
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), n_components)
    assert (proba >= 0).all() and (proba <= 1).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    labels = model.predict(X)
    assert labels.shape == (len(X),)
    assert set(labels.tolist()) <= set(range(n_components))
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))
    scores = model.score_samples(X)
    assert scores.shape == (len(X),) and np.isfinite(scores).all()
    np.testing.assert_allclose(model.transform(X), proba, rtol=0, atol=0)
    # One row at a time gives the same answers (inference does not mix rows).
    np.testing.assert_allclose(model.score_samples(X[:1]), scores[:1], rtol=1e-12)
