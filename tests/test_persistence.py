"""Persistence: committed pickles of earlier formats load and reproduce their outputs."""

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.utils._testing import assert_allclose

from skdcgmm import DeepConvGMM
from skdcgmm._persistence import PICKLE_FORMAT as _PICKLE_FORMAT

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("deepconvgmm_format*.pkl"))


def _load(path):
    with warnings.catch_warnings():
        # A fixture written under another scikit-learn version is expected to load.
        warnings.simplefilter("ignore", InconsistentVersionWarning)
        with open(path, "rb") as f:
            return pickle.load(f)


def test_a_fixture_exists_for_the_current_format():
    assert f"deepconvgmm_format{_PICKLE_FORMAT}.pkl" in [p.name for p in FIXTURES]


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_saved_models_of_every_format_load_and_reproduce_their_outputs(path):
    model = _load(path)
    assert model.get_params()["compile"] is False  # added since: its default
    expected = np.load(path.with_name(f"{path.stem}_expected.npz"))
    X = expected["X"]
    assert_allclose(model.score_samples(X), expected["score_samples"], rtol=1e-9, atol=1e-9)
    assert_allclose(model.predict_proba(X), expected["predict_proba"], rtol=1e-9, atol=1e-12)
    features = model.set_params(transform_layer=2).transform(X)
    assert_allclose(features, expected["transform_2"], rtol=1e-9, atol=1e-12)
    images, _ = model.sample(3)
    assert images.shape == (3, X.shape[1]) and np.isfinite(images).all()
    model.partial_fit(X)  # training can continue from a loaded model
    assert np.isfinite(model.score_samples(X)).all()


def test_a_model_saved_by_a_newer_format_is_refused_clearly(blobs):
    model = DeepConvGMM(2, max_iter=1, random_state=0).fit(blobs[0])
    state = model.__getstate__()
    state["_skdcgmm_format"] = _PICKLE_FORMAT + 1
    with pytest.raises(ValueError, match="Upgrade skdcgmm"):
        DeepConvGMM.__new__(DeepConvGMM).__setstate__(state)


def test_a_model_saved_on_an_absent_gpu_loads_on_the_cpu(blobs):
    model = DeepConvGMM(2, max_iter=1, random_state=0).fit(blobs[0])
    state = model.__getstate__()
    assert all(t.device.type == "cpu" for t in state["_module_state"].values())
    state["device_"] = "cuda:7"  # as written by a model fitted on a machine with 8 GPUs
    restored = DeepConvGMM.__new__(DeepConvGMM)
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.warns(UserWarning, match="not available here; it is loaded on the CPU"):
        restored.__setstate__(state)
    assert restored.device_ == torch.device("cpu")
    assert_allclose(restored.score_samples(blobs[0]), model.score_samples(blobs[0]))
