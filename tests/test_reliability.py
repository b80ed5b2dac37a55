"""Reliability of DeepConvGMM: degenerate data, divergence, reproducibility."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skdcgmm import DeepConvGMM

_RNG = np.random.RandomState(0)
DEGENERATE = {
    "all zero": np.zeros((60, 100)),
    "constant": np.full((60, 100), 0.7),
    "duplicated samples": np.repeat(_RNG.rand(6, 100), 10, axis=0),
    "one distinct image": np.tile(_RNG.rand(1, 100), (60, 1)),
    "far outside [0, 1]": _RNG.rand(60, 100) * 1e4 - 5e3,
    "tiny values": _RNG.rand(60, 100) * 1e-8,
}


@pytest.mark.parametrize("layers", ["auto", "flat"])
@pytest.mark.parametrize("name", sorted(DEGENERATE))
def test_degenerate_data_trains_without_nan(name, layers):
    X = DEGENERATE[name]
    model = DeepConvGMM(3, layers=layers, max_iter=3, random_state=0).fit(X)
    assert np.isfinite(model.loss_curve_).all()
    assert np.isfinite(model.score_samples(X)).all()
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(1), 1)
    samples, _ = model.sample(4, sharpening_steps=2)
    assert np.isfinite(samples).all()
    assert all(torch.isfinite(p).all() for p in model.module_.parameters())


def test_excessive_learning_rate_is_reported_and_keeps_the_old_model():
    X = _RNG.rand(60, 100)
    model = DeepConvGMM(3, max_iter=2, random_state=0).fit(X)
    before = model.score_samples(X)
    with pytest.raises(ValueError, match=r"Training diverged.*learning_rate"):
        model.set_params(learning_rate=10.0).fit(X)
    np.testing.assert_array_equal(model.score_samples(X), before)


def test_large_but_stable_learning_rate_recovers():
    X = _RNG.rand(60, 100)
    # learning_rate_final="auto" would be 1.0 / 5: the recovery needs the small final rate.
    model = DeepConvGMM(
        3, learning_rate=1.0, learning_rate_final=0.02, max_iter=3, random_state=0
    ).fit(X)
    assert np.isfinite(model.score_samples(X)).all()


@pytest.mark.parametrize("layers", ["auto", "flat"])
def test_same_random_state_gives_identical_models_and_samples(layers):
    X = _RNG.rand(80, 64)
    est = DeepConvGMM(4, layers=layers, max_iter=3, random_state=7)
    torch.manual_seed(1)
    np.random.seed(1)  # noqa: NPY002 - the global state must not matter
    a = clone(est).fit(X)
    torch.manual_seed(2)  # the global RNGs must not matter
    np.random.seed(2)  # noqa: NPY002
    torch.rand(10)
    np.random.rand(10)  # noqa: NPY002
    b = clone(est).fit(X)
    for (name, p), q in zip(a.module_.state_dict().items(), b.module_.state_dict().values()):
        assert torch.equal(p, q), name
    for kwargs in ({}, {"sharpening_steps": 3, "upsampling": "sparse", "top_s": 2}):
        np.testing.assert_array_equal(a.sample(5, **kwargs)[0], b.sample(5, **kwargs)[0])
    mask = np.zeros(64, bool)
    mask[:32] = True
    np.testing.assert_array_equal(a.inpaint(X[:3], mask), b.inpaint(X[:3], mask))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    other = clone(est).set_params(random_state=8).fit(X)
    assert not torch.equal(other.module_.top.means, a.module_.top.means)
