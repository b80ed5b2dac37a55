"""skdcgmm.metrics against brute-force definitions."""

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import norm
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError

from skdcgmm.metrics import NDB, clustering_accuracy, ndb_score, purity_score


def _brute_force_accuracy(y, c):
    classes, clusters = np.unique(y), np.unique(c)
    best = 0
    for perm in (
        itertools.permutations(classes, len(clusters)) if len(clusters) <= len(classes) else []
    ):
        mapping = dict(zip(clusters, perm))
        best = max(best, np.mean([mapping[v] == t for v, t in zip(c, y)]))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_accuracy_matches_brute_force(seed):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 4, 40)
    c = np.where(rng.rand(40) < 0.7, (y + 1) % 4, rng.randint(0, 4, 40))
    assert clustering_accuracy(y, c) == pytest.approx(_brute_force_accuracy(y, c))


def test_accuracy_and_purity_edge_cases():
    assert clustering_accuracy([0, 0, 1, 1], [5, 5, 7, 7]) == 1.0
    assert clustering_accuracy([0, 1, 2, 3], [0, 0, 0, 0]) == 0.25
    assert purity_score([0, 1, 2, 3], [0, 1, 2, 3]) == 1.0
    assert purity_score([0, 0, 1, 1], [0, 0, 0, 0]) == 0.5


def test_ndb_of_a_set_against_itself_is_zero():
    X = load_digits().data
    result = ndb_score(X, X.reshape(-1, 8, 8), n_bins=20, random_state=0)
    assert result.ndb_k == 0.0 and result.js == 0.0
    assert result.different.shape == (20,) and not result.different.any()
    np.testing.assert_allclose(result.reference_proportions.sum(), 1.0)
    assert result.bin_centers.shape == (20, 64)


def test_ndb_flags_the_bins_of_a_removed_class():
    digits = load_digits()
    X, y = digits.data, digits.target
    result = ndb_score(X, X[y != 0], n_bins=20, random_state=0)
    labels = np.argmin(((X[:, None] - result.bin_centers[None]) ** 2).sum(-1), axis=1)
    zero_bins = [b for b in range(20) if np.mean(y[labels == b] == 0) > 0.8]
    assert zero_bins and result.different[zero_bins].all()
    assert np.all(result.sample_proportions[zero_bins] < 0.01)
    assert 0 < result.ndb_k < 1 and result.js > 0


def test_ndb_matches_the_two_proportion_test_and_scipy_js():
    rng = np.random.RandomState(0)
    X, Y = rng.rand(400, 3), rng.rand(300, 3) ** 2
    r = ndb_score(X, Y, n_bins=8, alpha=0.01, random_state=0)
    p1, p2 = r.reference_proportions, r.sample_proportions
    pooled = (400 * p1 + 300 * p2) / 700
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / 400 + 1 / 300))
    np.testing.assert_array_equal(r.different, 2 * norm.sf(np.abs(z)) < 0.01)
    assert r.js == pytest.approx(jensenshannon(p1, p2) ** 2, rel=1e-9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_bins": 1}, "n_bins"),
        ({"n_bins": 10_000}, "n_bins"),
        ({"n_bins": 10, "alpha": 1.5}, "alpha"),
    ],
)
def test_ndb_rejects_bad_arguments(kwargs, message):
    X = np.random.RandomState(0).rand(50, 4)
    with pytest.raises(ValueError, match=message):
        ndb_score(X, X, **kwargs)
    with pytest.raises(ValueError, match="features"):
        ndb_score(X, X[:, :3])


def test_fitted_ndb_scores_every_set_as_ndb_score_does():
    digits = load_digits()
    X, y = digits.data, digits.target
    ndb = NDB(20, alpha=0.01, random_state=0).fit(X)
    centers = ndb.bin_centers_.copy()
    for Y in (X[y != 0], X[y < 5], X[::2].reshape(-1, 8, 8)):
        got, want = ndb.score(Y), ndb_score(X, Y, n_bins=20, alpha=0.01, random_state=0)
        assert (got.ndb_k, got.js) == (want.ndb_k, want.js)
        np.testing.assert_array_equal(got.different, want.different)
        np.testing.assert_array_equal(got.sample_proportions, want.sample_proportions)
        got.bin_centers[:] = 0  # results are copies: the fitted bins stay as they were
        got.reference_proportions[:] = 0
    np.testing.assert_array_equal(ndb.bin_centers_, centers)
    assert ndb.reference_proportions_.sum() == pytest.approx(1.0)


def test_ndb_compares_integer_images_with_float_samples_without_rounding():
    rng = np.random.RandomState(0)
    reference = (rng.rand(400, 4) > 0.5).astype(int)
    samples = reference * 0.9 + 0.05  # the same bins, never an integer
    fitted = NDB(10, random_state=0).fit(reference).score(samples)
    direct = ndb_score(reference, samples, n_bins=10, random_state=0)
    assert direct.ndb_k == fitted.ndb_k == 0.0


def test_ndb_checks_before_fitting_and_scoring():
    X = np.random.RandomState(0).rand(50, 4)
    with pytest.raises(NotFittedError, match="fit"):
        NDB(5).score(X)
    with pytest.raises(ValueError, match="n_bins"):
        NDB(51).fit(X)
    with pytest.raises(ValueError, match="features"):
        NDB(5, random_state=0).fit(X).score(X[:, :3])
