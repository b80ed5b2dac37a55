"""skdcgmm.metrics against brute-force definitions."""

import itertools

import numpy as np
import pytest

from skdcgmm.metrics import clustering_accuracy, purity_score


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
