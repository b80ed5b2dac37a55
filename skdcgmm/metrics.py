"""Clustering metrics that scikit-learn does not ship."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics.cluster import contingency_matrix

__all__ = ["clustering_accuracy", "purity_score"]


def clustering_accuracy(labels_true, labels_pred) -> float:
    """Accuracy of cluster labels under the best one-to-one matching of clusters to classes.

    The matching maximises the number of agreements (Hungarian algorithm on the contingency
    matrix); clusters left without a class count as wrong.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
    labels_pred : array-like of shape (n_samples,)

    Returns
    -------
    accuracy : float in [0, 1]

    Examples
    --------
    >>> from skdcgmm.metrics import clustering_accuracy
    >>> clustering_accuracy([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    table = contingency_matrix(labels_true, labels_pred)  # (classes, clusters)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def purity_score(labels_true, labels_pred) -> float:
    """Fraction of samples whose cluster's majority class is their class.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
    labels_pred : array-like of shape (n_samples,)

    Returns
    -------
    purity : float in [0, 1]

    Examples
    --------
    >>> from skdcgmm.metrics import purity_score
    >>> purity_score([0, 0, 1, 1], [0, 1, 2, 2])
    1.0
    """
    table = contingency_matrix(labels_true, labels_pred)
    return float(np.asarray(table.max(axis=0)).sum() / table.sum())
