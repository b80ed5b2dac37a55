"""Shared fixtures: seeded synthetic data factories and MNIST subsets (skipped when absent)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from skdcgmm.datasets import load_mnist


def make_blobs_data(n_per: int = 100, centers=None, std: float = 0.05, seed: int = 0):
    """Well-separated isotropic Gaussian blobs in [0, 1]-ish coordinates."""
    rng = np.random.RandomState(seed)
    if centers is None:
        centers = np.array([[0.2, 0.2, 0.8], [0.8, 0.2, 0.2], [0.2, 0.8, 0.5], [0.8, 0.8, 0.9]])
    X = np.vstack([c + std * rng.randn(n_per, len(c)) for c in centers])
    y = np.repeat(np.arange(len(centers)), n_per)
    perm = rng.permutation(len(y))
    return X[perm], y[perm], np.asarray(centers)


@pytest.fixture
def blobs():
    return make_blobs_data()


@pytest.fixture(scope="session")
def mnist_subset():
    """2,000 MNIST training and 1,000 test images, or skip when the data is absent."""
    if not os.environ.get("SKDCGMM_DATA"):
        pytest.skip("MNIST not available: set SKDCGMM_DATA to a folder holding mnist/ (IDX files)")
    try:
        X, y = load_mnist("train", download=False)
        Xt, yt = load_mnist("test", download=False)
    except OSError as exc:
        pytest.skip(f"MNIST not available: {exc}")
    return X[:2000], y[:2000], Xt[:1000], yt[:1000]


@pytest.fixture(autouse=True)
def _quiet_convergence():
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


# The fixture writer is a script, not a test module.
collect_ignore_glob = ["fixtures/*.py"]
