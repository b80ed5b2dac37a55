"""Outlier detection with a DCGMM: :class:`DeepConvGMMOutlierDetector`, sklearn's outlier API."""

from __future__ import annotations

import re
from numbers import Real
from typing import ClassVar

import numpy as np
from sklearn.base import OutlierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._estimator import DeepConvGMM

__all__ = ["DeepConvGMMOutlierDetector"]

#: Tukey's fence: ``contamination="auto"`` flags training scores below ``Q1 - 1.5 * IQR``.
_TUKEY_K = 1.5


def _doc_section(doc: str, name: str) -> str:
    """The entries of the numpydoc section ``name`` of ``doc`` (without its header), or ''."""
    match = re.search(rf"\n    {name}\n    -+\n(.*?)(?=\n\n    \w[\w ]*\n    -+\n|\Z)", doc, re.S)
    return match.group(1).rstrip() if match else ""


_PARENT_PARAMETERS = _doc_section(DeepConvGMM.__doc__ or "", "Parameters") or (
    "    **params\n"
    "        The parameters of :class:`DeepConvGMM`, with the same meaning and defaults."
)
_PARENT_ATTRIBUTES = _doc_section(DeepConvGMM.__doc__ or "", "Attributes")

_DOC = """Outlier detector on a Deep Convolutional GMM: a drop-in for ``IsolationForest``.

    A :class:`DeepConvGMM` (same parameters and defaults, training and fitted attributes,
    plus ``contamination``) with scikit-learn's outlier-detector API, like
    :class:`~sklearn.ensemble.IsolationForest`, :class:`~sklearn.covariance.EllipticEnvelope`
    or :class:`~sklearn.neighbors.LocalOutlierFactor` with ``novelty=True``: ``score_samples``
    is the model's log-likelihood (higher = more normal), ``decision_function`` is
    ``score_samples - offset_`` (negative = outlier) and ``predict`` returns ``+1`` for inliers
    and ``-1`` for outliers. ``offset_`` is set by ``fit`` from the scores of the training data.

    Parameters
    ----------
{parameters}
    contamination : "auto" or float, default="auto"
        How ``offset_`` is chosen from the log-likelihoods ``s`` of the training data.

        - float in ``(0, 0.5]``: the expected proportion of outliers in the training data;
          ``offset_`` is the ``100 * contamination`` percentile of ``s``, so that fraction
          of the training samples is flagged (up to ties), as in ``IsolationForest``.
        - ``"auto"``: Tukey's lower fence, ``offset_ = Q1(s) - 1.5 * (Q3(s) - Q1(s))``
          with ``Q1``, ``Q3`` the quartiles of ``s``: training samples whose score is an
          outlier of the score distribution are flagged, as the whiskers of a box plot do.
          ``IsolationForest`` and ``LocalOutlierFactor`` use a fixed offset for ``"auto"``,
          which suits their normalised scores; a log-likelihood has no fixed scale (it
          shifts with the number of features, their scaling, ``min_variance`` and, for deep
          models, the architecture), so a fixed offset would be meaningless. The fence moves
          and scales with the scores, like a percentile, but does not assume a proportion:
          on data drawn from a diagonal Gaussian it flags about 5 % of the samples with 2
          features, 1.5 % with 16 and 0.5 % with 784 (the lower tail of a log-likelihood is
          skewed), on contaminated data more, and it may flag none. Pass a float when the
          proportion of outliers is known.

    Attributes
    ----------
{attributes}
    offset_ : float
        Threshold on ``score_samples``: ``decision_function(X) = score_samples(X) - offset_``,
        and samples with a negative decision are outliers. Set by ``fit`` (and by each
        ``partial_fit`` call, from the chunk it saw) as described under ``contamination``.

    See Also
    --------
    DeepConvGMM : The density model itself (``predict`` gives clusters there).
    sklearn.ensemble.IsolationForest : Outlier detection with random trees.
    sklearn.covariance.EllipticEnvelope : Outlier detection with one robust Gaussian.

    Notes
    -----
    The methods inherited from :class:`DeepConvGMM` keep their meaning: ``score_samples``
    (the top GMM layer's exact log-likelihood; the image log-density for ``layers="flat"``),
    ``score`` (its mean, higher is better, so ``GridSearchCV`` selects models by held-out
    log-likelihood), ``predict_proba`` (the top layer's cluster responsibilities, *not*
    probabilities of being an inlier; ``predict_proba(X).argmax(axis=1)`` are the clusters),
    ``transform``, ``sample``, ``inpaint`` and pickling. Only ``predict`` and
    ``fit_predict`` change: they return ``+1`` / ``-1`` instead of clusters.

    Examples
    --------
    >>> import numpy as np
    >>> from skdcgmm import DeepConvGMMOutlierDetector
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(0, 0.1, (50, 2)), rng.normal(1, 0.1, (50, 2))])
    >>> detector = DeepConvGMMOutlierDetector(n_components=2, max_iter=10, random_state=0)
    >>> detector.fit(X).predict([[0.0, 0.1], [1.0, 0.9], [3.0, -2.0]]).tolist()
    [1, 1, -1]
    >>> detector.decision_function([[3.0, -2.0]]) < 0
    array([ True])
    """


class DeepConvGMMOutlierDetector(OutlierMixin, DeepConvGMM):
    __doc__ = _DOC.format(parameters=_PARENT_PARAMETERS, attributes=_PARENT_ATTRIBUTES)

    _parameter_constraints: ClassVar[dict] = {
        **DeepConvGMM._parameter_constraints,
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
    }

    # Every parameter of DeepConvGMM, in its order, then contamination. sklearn needs them
    # spelled out (get_params reads this signature); they are stored as given, no super().
    # The defaults are DeepConvGMM's, the best outlier settings measured over MNIST and
    # Fashion-MNIST (README, "Extensions").
    def __init__(
        self,
        n_components: int = 10,
        *,
        layers="auto",
        image_shape=None,
        max_iter="auto",
        batch_size="auto",
        learning_rate="auto",
        learning_rate_final="auto",
        annealing: str = "time",
        tol: float = 1e-4,
        n_iter_no_change: int = 5,
        n_init: int = 1,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        device="auto",
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        transform_layer: int = -1,
        compile: bool = False,
        top_refit: str | None = "auto",
        top_refit_min_variance: float | str | None = "auto",
        top_refit_reg_covar: float = 0.0,
        top_refit_shrinkage: float | str = "auto",
        top_factors: int | None = None,
        contamination="auto",
    ) -> None:
        self.n_components = n_components
        self.layers = layers
        self.image_shape = image_shape
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_final = learning_rate_final
        self.annealing = annealing
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.n_init = n_init
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.transform_layer = transform_layer
        self.compile = compile
        self.top_refit = top_refit
        self.top_refit_min_variance = top_refit_min_variance
        self.top_refit_reg_covar = top_refit_reg_covar
        self.top_refit_shrinkage = top_refit_shrinkage
        self.top_factors = top_factors
        self.contamination = contamination

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None) -> DeepConvGMMOutlierDetector:
        """Fit the model to ``X`` and set ``offset_`` from the scores of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; images flattened to rows, ideally scaled to ``[0, 1]``.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : DeepConvGMMOutlierDetector
            The fitted estimator.
        """
        self._fit_offset(super().fit, X)
        return self

    def partial_fit(self, X, y=None) -> DeepConvGMMOutlierDetector:
        """One pass of training over the chunk ``X``; ``offset_`` is then set from ``X``.

        Training continues as in :meth:`DeepConvGMM.partial_fit`; ``offset_`` is recomputed
        from the scores of this chunk under the updated model (as ``fit`` does for its data),
        so chunks should be large enough for the percentile (or quartiles) to be stable.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One chunk of training data.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : DeepConvGMMOutlierDetector
            The updated estimator.
        """
        self._fit_offset(super().partial_fit, X)
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit the model to ``X`` and flag its outliers (equal to ``fit(X).predict(X)``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        is_inlier : ndarray of shape (n_samples,)
            ``1`` for inliers, ``-1`` for outliers.
        """
        scores = self._fit_offset(super().fit, X)  # the training scores: no second pass
        return _labels(scores - self.offset_)

    def _fit_offset(self, fit, X) -> np.ndarray:
        """Run ``fit(X)``, then set ``offset_`` from the scores of ``X``; return the scores."""
        fit(X)  # on error the previous model (and its offset_) is kept by DeepConvGMM
        try:
            scores = self.score_samples(X)
        except BaseException:
            self.__dict__.pop("offset_", None)  # the model is new: an old offset_ is stale
            raise
        if self.contamination == "auto":
            q1, q3 = np.percentile(scores, [25.0, 75.0])
            self.offset_ = float(q1 - _TUKEY_K * (q3 - q1))
        else:
            self.offset_ = float(np.percentile(scores, 100.0 * self.contamination))
        return scores

    # ------------------------------------------------------------------ outlier API
    def decision_function(self, X) -> np.ndarray:
        """Shifted log-likelihood ``score_samples(X) - offset_``: negative for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        decision : ndarray of shape (n_samples,)
            The lower, the more abnormal; below 0 the sample is an outlier.
        """
        check_is_fitted(self, "offset_")
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """Whether each sample is an inlier (``+1``) or an outlier (``-1``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        is_inlier : ndarray of shape (n_samples,)
            ``1`` where ``decision_function(X) >= 0``, else ``-1``.
        """
        return _labels(self.decision_function(X))


def _labels(decision: np.ndarray) -> np.ndarray:
    """``+1`` where ``decision >= 0``, ``-1`` below (sklearn's outlier-detector convention)."""
    is_inlier = np.ones(decision.shape[0], dtype=int)
    is_inlier[decision < 0] = -1
    return is_inlier
