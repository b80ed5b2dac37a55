"""Metrics that scikit-learn does not ship: clustering accuracy, purity, sample quality (NDB)."""

from __future__ import annotations

import math
from numbers import Real
from typing import NamedTuple

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.stats import norm
from sklearn.cluster import KMeans
from sklearn.exceptions import NotFittedError
from sklearn.metrics.cluster import contingency_matrix
from sklearn.utils import check_array

__all__ = ["NDB", "NDBResult", "clustering_accuracy", "ndb_score", "purity_score"]


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
    labels_true, labels_pred = _check_labels(labels_true, labels_pred)
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
    labels_true, labels_pred = _check_labels(labels_true, labels_pred)
    table = contingency_matrix(labels_true, labels_pred)
    return float(np.asarray(table.max(axis=0)).sum() / table.sum())


class NDBResult(NamedTuple):
    """The result of :func:`ndb_score` and :meth:`NDB.score`."""

    ndb_k: float
    """Fraction of bins whose proportions differ significantly (NDB / K); lower is better."""
    js: float
    """Jensen-Shannon divergence (natural log, in ``[0, ln 2]``) of the bin proportions."""
    different: np.ndarray
    """``(n_bins,)`` bool: the statistically different bins."""
    reference_proportions: np.ndarray
    """``(n_bins,)`` fraction of the reference samples in every bin."""
    sample_proportions: np.ndarray
    """``(n_bins,)`` fraction of the evaluated samples in every bin."""
    bin_centers: np.ndarray
    """``(n_bins, n_features)`` k-means centres of the bins."""


class NDB:
    """Number of statistically Different Bins, with the bins fitted once (Richardson & Weiss).

    :meth:`fit` splits the reference samples (e.g. training images) into ``n_bins`` bins by
    k-means; :meth:`score` puts every evaluated sample in the bin of its nearest centre and
    compares the fraction of reference and of evaluated samples in every bin with a two-sided
    two-proportion z-test at level ``alpha``. A generator that drops modes or invents new
    kinds of samples leaves many bins with too few or too many samples. Fitting once and
    scoring several generators against the same bins compares them without the variation of
    the binning between calls (:func:`ndb_score` does both in one call). Images of any shape
    are flattened.

    Parameters
    ----------
    n_bins : int, default=100
        Number of k-means bins ``K``.
    alpha : float, default=0.05
        Significance level of every bin's test.
    random_state : int, RandomState instance or None, default=None
        Seeds k-means.

    Attributes
    ----------
    bin_centers_ : ndarray of shape (n_bins, n_features)
        k-means centres of the bins.
    reference_proportions_ : ndarray of shape (n_bins,)
        Fraction of the reference samples in every bin.
    n_reference_ : int
        Number of reference samples.

    Examples
    --------
    >>> import numpy as np
    >>> from skdcgmm.metrics import NDB
    >>> rng = np.random.RandomState(0)
    >>> ndb = NDB(n_bins=10, random_state=0).fit(rng.rand(500, 4))
    >>> ndb.score(rng.rand(500, 4) ** 3).ndb_k > ndb.score(rng.rand(500, 4)).ndb_k
    True
    """

    def __init__(self, n_bins: int = 100, *, alpha: float = 0.05, random_state=None) -> None:
        self.n_bins = n_bins
        self.alpha = alpha
        self.random_state = random_state

    def fit(self, X_reference) -> NDB:
        """Fit the bins on the reference samples.

        Parameters
        ----------
        X_reference : array-like of shape (n_reference, ...)
            Real samples.

        Returns
        -------
        self : NDB
        """
        return self._fit(self._check(X_reference)[0])

    def _fit(self, reference: np.ndarray) -> NDB:
        kmeans = KMeans(n_clusters=self.n_bins, n_init=1, random_state=self.random_state)
        kmeans.fit(reference)
        self._kmeans = kmeans
        self.bin_centers_ = kmeans.cluster_centers_
        self.n_reference_ = len(reference)
        self.reference_proportions_ = (
            np.bincount(kmeans.labels_, minlength=self.n_bins) / self.n_reference_
        )
        return self

    def score(self, X_samples) -> NDBResult:
        """NDB/K and JS divergence of ``X_samples`` against the fitted bins.

        Parameters
        ----------
        X_samples : array-like of shape (n_samples, ...)
            Samples to evaluate, with as many features as the reference samples.

        Returns
        -------
        result : NDBResult
        """
        if not hasattr(self, "_kmeans"):  # sklearn's check_is_fitted needs an estimator's tags
            raise NotFittedError("This NDB instance is not fitted yet; call fit first.")
        return self._score(self._check_samples(X_samples, self.bin_centers_))

    def _score(self, samples: np.ndarray) -> NDBResult:
        n_bins, n_ref, n_smp = self.n_bins, self.n_reference_, len(samples)
        p_ref = self.reference_proportions_
        p_smp = np.bincount(self._kmeans.predict(samples), minlength=n_bins) / n_smp  # (K,)
        pooled = (p_ref * n_ref + p_smp * n_smp) / (n_ref + n_smp)  # (K,)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_smp))
        z = np.divide(p_ref - p_smp, se, out=np.zeros(n_bins), where=se > 0)
        different = 2 * norm.sf(np.abs(z)) < self.alpha
        middle = (p_ref + p_smp) / 2
        js = 0.5 * (_kl(p_ref, middle) + _kl(p_smp, middle))
        return NDBResult(
            float(different.mean()), float(js), different, p_ref.copy(), p_smp,
            self.bin_centers_.copy(),
        )  # fmt: skip

    def _check(self, X_reference, X_samples=None) -> tuple[np.ndarray, np.ndarray | None]:
        """The reference and (if given) the samples as checked rows; the parameters checked."""
        reference = check_array(_as_rows(X_reference, "X_reference"), input_name="X_reference")
        if reference.dtype.kind != "f":  # integer images: float samples must not be rounded
            reference = reference.astype(np.float64)
        samples = None if X_samples is None else self._check_samples(X_samples, reference)
        n_bins = self.n_bins
        if not isinstance(n_bins, (int, np.integer)) or not 2 <= n_bins <= len(reference):
            raise ValueError(
                f"n_bins must be an int in [2, n_reference={len(reference)}], got {n_bins!r}."
            )
        if not (isinstance(self.alpha, Real) and 0 < self.alpha < 1):
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}.")
        return reference, samples

    @staticmethod
    def _check_samples(X_samples, reference: np.ndarray) -> np.ndarray:
        samples = check_array(_as_rows(X_samples, "X_samples"), input_name="X_samples")
        samples = samples.astype(reference.dtype, copy=False)  # the dtype k-means was fitted in
        if samples.shape[1] != reference.shape[1]:
            raise ValueError(
                f"X_samples has {samples.shape[1]} features but X_reference has "
                f"{reference.shape[1]}."
            )
        return samples


def ndb_score(
    X_reference,
    X_samples,
    *,
    n_bins: int = 100,
    alpha: float = 0.05,
    random_state=None,
) -> NDBResult:
    """Number of statistically Different Bins (Richardson & Weiss, NeurIPS 2018).

    The reference samples (e.g. training images) are split into ``n_bins`` bins by k-means;
    every evaluated sample goes to the bin of its nearest centre. A two-sided two-proportion
    z-test at level ``alpha`` compares the fraction of reference and of evaluated samples in
    every bin. A generator that drops modes or invents new kinds of samples leaves many bins
    with too few or too many samples. Images of any shape are flattened. To score several
    sample sets against the same bins, fit an :class:`NDB` once instead.

    Parameters
    ----------
    X_reference : array-like of shape (n_reference, ...)
        Real samples; the bins are fitted on them.
    X_samples : array-like of shape (n_samples, ...)
        Samples to evaluate, with the same number of features.
    n_bins, alpha, random_state
        As in :class:`NDB`: the number of bins ``K`` (default 100), the level of every bin's
        test (default 0.05) and the seed of k-means (default None).

    Returns
    -------
    result : NDBResult
        ``ndb_k`` (NDB / K), ``js`` (Jensen-Shannon divergence of the bin proportions), the
        boolean ``different`` per bin, both proportions and the bin centres.

    Examples
    --------
    >>> import numpy as np
    >>> from skdcgmm.metrics import ndb_score
    >>> X = np.random.RandomState(0).rand(500, 4)
    >>> ndb_score(X, X, n_bins=10, random_state=0).ndb_k
    0.0
    """
    ndb = NDB(n_bins, alpha=alpha, random_state=random_state)
    reference, samples = ndb._check(X_reference, X_samples)  # every check before k-means
    return ndb._fit(reference)._score(samples)


def _check_labels(labels_true, labels_pred) -> tuple[np.ndarray, np.ndarray]:
    """Both label arrays as 1-D arrays of the same, non-zero length."""
    labels = []
    for name, value in (("labels_true", labels_true), ("labels_pred", labels_pred)):
        value = np.asarray(value)
        if value.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got an array of shape {value.shape}.")
        labels.append(value)
    if len(labels[0]) != len(labels[1]):
        raise ValueError(
            "labels_true and labels_pred must have the same length, got "
            f"{len(labels[0])} and {len(labels[1])}."
        )
    if len(labels[0]) == 0:
        raise ValueError("labels_true and labels_pred are empty; need at least one sample.")
    return labels[0], labels[1]


def _as_rows(X, name: str) -> np.ndarray:
    """``(n, ...)`` -> ``(n, prod(...))`` (``(n,)`` -> ``(n, 1)``), also for ``n = 0``."""
    if sparse.issparse(X):
        raise TypeError(f"{name} must be a dense array, got a sparse matrix; use .toarray().")
    array = np.asarray(X)
    if array.ndim == 0:
        raise ValueError(f"{name} must be an array of samples, got the scalar {X!r}.")
    return array.reshape(array.shape[0], math.prod(array.shape[1:]))


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """Kullback-Leibler divergence with ``0 log 0 = 0`` (``q > 0`` wherever ``p > 0``)."""
    nonzero = p > 0
    return float(np.sum(p[nonzero] * np.log(p[nonzero] / q[nonzero])))
