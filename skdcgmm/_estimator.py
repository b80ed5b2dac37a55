"""The scikit-learn face of the engine: :class:`DeepConvGMM`."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    DensityMixin,
    TransformerMixin,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from ._training import TrainingConfig, new_state, train
from ._utils import caller_stacklevel, resolve_device, retain_freed_memory, to_tensor
from .layers import GMM, build_stack, resolve_layers
from .nn import GMMLayer, SamplingOptions
from .nn.sampling import generate, sharpen, sharpening_target_index, variants

__all__ = ["DeepConvGMM"]

_MAX_SEED = 2**31 - 1
#: Bytes of activations per forward pass at inference on a GPU (and of a top-down sampling
#: pass on any device): scoring any number of images runs in chunks of at most this many bytes
#: (plus the model), whatever the architecture. A GPU wants large chunks (few kernel launches).
_INFERENCE_BYTES = 256 * 2**20
#: The same budget for inference on the CPU, which wants small chunks: their activations stay
#: below the 32 MiB that glibc's malloc is asked to serve from its heap (no page faults for
#: fresh memory, see ``_utils.retain_freed_memory``) and closer to the caches. Measured on a
#: 2-core CPU, 32 MiB chunks score 2x faster than 256 MiB ones for the deep presets (C 3.8k ->
#: 7.8k images/s) and 1.6x for the flat model at K = 100.
_CPU_INFERENCE_BYTES = 32 * 2**20
#: Version of the pickled state (``__getstate__``); increment on any change of its layout.
_PICKLE_FORMAT = 1
#: Attributes that validating the input of ``fit`` sets before the model is trained.
_INPUT_ATTRIBUTES = ("n_features_in_", "feature_names_in_")


class DeepConvGMM(ClassNamePrefixFeaturesOutMixin, TransformerMixin, DensityMixin, BaseEstimator):
    """Deep Convolutional Gaussian Mixture Model trained by annealed minibatch SGD.

    A stack of GMM layers (Gepperth & Pfülb, IJCNN 2021) fitted from random initialisation by
    stochastic gradient ascent on the annealed max-component log-likelihood: early in training a
    Gaussian neighbourhood on a torus grid of components makes the update SOM-like, so no
    k-means initialisation is needed; the neighbourhood radius then shrinks to zero and the
    objective becomes the max-component (hard-assignment) bound of the log-likelihood.

    Parameters
    ----------
    n_components : int, default=10
        Number of components of the top GMM layer, i.e. the number of clusters.
    layers : str or sequence of layer specs, default="auto"
        Architecture: a preset name or a sequence of specs from :mod:`skdcgmm.layers`, e.g.
        ``(Fold(8, stride=1), GMM(25), Pool(2), Fold(), GMM())``. Presets: ``"flat"`` (one
        diagonal GMM over the whole input, ``"A"`` in the paper) and the paper's ``"B"`` to
        ``"G"`` (method §13, adapted to the image size). ``"auto"`` is ``"C"`` for images of at
        least 16x16, a small convolutional stack from 8x8 and ``"flat"`` below. Rows are read
        as images by the rule of ``image_shape``, so tabular data whose ``n_features`` is a
        perfect square of at least 64 gets a convolutional stack too: pass ``"flat"`` for it.
        The top GMM takes ``n_components`` and must see the whole map.
    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(H, W, C)`` of the images when ``X`` holds them as rows of
        ``H * W * C`` features (channels last). ``None``: taken from ``X`` when it is given as
        ``(n, H, W)`` or ``(n, H, W, C)``, otherwise square single-channel images when
        ``n_features`` is a perfect square, otherwise rows are treated as ``1 x 1`` images.
    max_iter : int, default=20
        Maximum number of epochs (passes over the data).
    batch_size : int or "auto", default="auto"
        Minibatch size. ``"auto"`` is ``n_samples // 100`` clipped to ``[10, 100]`` (and to
        ``n_samples``): 100 on large data sets, and about 100 steps per epoch on small ones,
        which otherwise would get too few updates. Values above ``n_samples`` are clipped
        with a warning.
    learning_rate : float, default=0.1
        Initial SGD step size (the paper's ``eps0``), multiplied per parameter by the GMM
        spec's learning-rate factors. A step moves a mean by up to ``learning_rate *
        lr_means / min_variance`` (2 at the defaults) times the share of the batch its
        component wins, so steps cannot overshoot while that product stays <= 2; with many
        components sharing a batch, larger batches take proportionally larger rates (the
        linear scaling rule: the flat model at K = 100 trains at ``batch_size=1000,
        learning_rate=1.0``; see the README's "Speed"). ``fit`` raises a ``ValueError`` when
        training diverges.
    learning_rate_final : float, default=0.02
        Step size reached when annealing ends (``learning_rate`` if larger).
    annealing : {"time", "plateau"}, default="time"
        Schedule of the annealing radius and learning rate. ``"time"`` decays both
        geometrically over the first half of the planned ``max_iter`` epochs, so every fit ends
        annealed; ``"plateau"`` is the reference's loss-plateau controller, which may need
        thousands of steps to finish.
    tol : float, default=1e-4
        Relative tolerance: after annealing has ended, training stops when the epoch loss (or
        the validation score, with ``early_stopping``) has not improved by more than
        ``tol * |best|`` for ``n_iter_no_change`` epochs.
    n_iter_no_change : int, default=5
        Epochs without improvement before stopping.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (a random subset) and judge
        convergence on its objective (the summed annealed log-likelihood per sample, the
        negated training loss) instead of the training loss; the parameters of the best
        validated epoch are kept. Only annealed epochs are compared (before, the objective
        itself changes with the annealing radius).
    validation_fraction : float, default=0.1
        Fraction of the training data held out when ``early_stopping`` is on.
    device : str, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and sampling through private generators; the global
        torch and numpy random states are never used.
    warm_start : bool, default=False
        Continue from the previous fit's parameters and annealing radius instead of
        re-initialising (the learning-rate schedule restarts; every GMM layer learns from the
        first step, whatever its ``wait``). See also :meth:`partial_fit`.
    verbose : int, default=0
        ``1``: a progress bar per epoch (tqdm, when installed; plain lines otherwise) with the
        loss, the annealing radius sigma and images/s; ``2`` or more: one plain line per epoch.
    transform_layer : int, default=-1
        Index into ``layers_`` of the layer whose output ``transform`` returns (flattened):
        ``-1`` is the top GMM's responsibilities; e.g. ``2`` is the pooled first-layer
        responsibilities of ``"C"``, the paper's linear read-out.
    compile : bool, default=False
        Compute the training losses through ``torch.compile`` (inductor), which fuses the
        passes over the layers' log-scores: on a 2-core CPU, preset ``"C"`` trains about
        1.2x faster (README, "Speed"). Compiling takes some seconds per architecture (graphs
        are reused by later fits and cached on disk between processes), so it pays off for
        long fits. Where ``torch.compile`` is unavailable (no C++ compiler, unsupported
        platform), ``fit`` warns once and trains eagerly. The computation is the same in
        another order: float32 rounding differs, which long fits can amplify into slightly
        different models, as a different number of threads can.

    Attributes
    ----------
    module_ : skdcgmm.nn.DCGMMStack
        The fitted torch engine.
    layers_ : tuple
        The resolved layer specs.
    image_shape_ : tuple of int
        ``(H, W, C)`` of the training images.
    device_ : torch.device
        The device the model lives on.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column names.
    n_iter_ : int
        Epochs run by the last ``fit``; ``partial_fit`` adds one per call.
    loss_curve_ : list of float
        Per-epoch training loss: the negated annealed log-likelihood summed over GMM layers
        (lower is better); appended to by warm starts and ``partial_fit``.
    history_ : dict of ndarray
        Per-epoch records, one row per entry of ``loss_curve_``: ``"loss"`` ``(n,)``,
        ``"layer_loss"``, ``"sigma"`` and ``"learning_rate"`` ``(n, n_gmm_layers)`` (every
        GMM layer's own loss, annealing radius and base learning rate at the end of the
        epoch), ``"images_per_second"`` ``(n,)`` and ``"validation_score"`` ``(n,)`` (NaN
        without ``early_stopping``). ``pandas.DataFrame`` takes the 1-D entries directly.
    validation_scores_ : list of float or None
        Validation objective per epoch of the last fit with ``early_stopping``, else ``None``.
    best_validation_score_ : float or None
        Best annealed validation objective, whose parameters were kept (``early_stopping``);
        ``None`` when none was reached or without ``early_stopping``.
    converged_ : bool
        Whether the last fit stopped by the ``tol`` criterion.
    means_, weights_, precisions_, covariances_ : ndarray
        Parameters of the top GMM layer: means ``(K, D)``, mixing weights ``(K,)``, diagonal
        precisions and variances ``(K, D)`` (as in ``GaussianMixture(covariance_type="diag")``).

    See Also
    --------
    sklearn.mixture.GaussianMixture : Flat GMM fitted by EM.

    Notes
    -----
    Training runs in float32 on the chosen device. On the CPU, inference (``score_samples``,
    ``predict_proba``, ``transform``) runs in float64, so results do not depend on how rows are
    batched; on CUDA it runs in float32.

    Examples
    --------
    >>> import numpy as np
    >>> from skdcgmm import DeepConvGMM
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(0, 0.1, (50, 2)), rng.normal(1, 0.1, (50, 2))])
    >>> gmm = DeepConvGMM(n_components=2, max_iter=20, random_state=0).fit(X)
    >>> sorted(np.bincount(gmm.predict(X)).tolist())
    [50, 50]
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "layers": [str, list, tuple],
        "image_shape": [tuple, list, None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "learning_rate_final": [Interval(Real, 0, None, closed="neither")],
        "annealing": [StrOptions({"time", "plateau"})],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "transform_layer": [Integral],
        "compile": ["boolean"],
    }

    def __init__(
        self,
        n_components: int = 10,
        *,
        layers="auto",
        image_shape=None,
        max_iter: int = 20,
        batch_size="auto",
        learning_rate: float = 0.1,
        learning_rate_final: float = 0.02,
        annealing: str = "time",
        tol: float = 1e-4,
        n_iter_no_change: int = 5,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        device="auto",
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        transform_layer: int = -1,
        compile: bool = False,
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
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.transform_layer = transform_layer
        self.compile = compile

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None) -> DeepConvGMM:
        """Fit the model to ``X`` by annealed minibatch SGD.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; images flattened to rows, ideally scaled to ``[0, 1]``.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : DeepConvGMM
            The fitted estimator.
        """
        self._validate_params()
        return self._guarded_fit(X, partial=False)

    def partial_fit(self, X, y=None) -> DeepConvGMM:
        """One pass of annealed SGD over ``X``, continuing from the previous calls.

        The first call initialises the model like ``fit``; later calls carry the parameters,
        the annealing radius and the learning-rate schedule on, so data that does not fit in
        memory can be streamed chunk by chunk (``X`` may also be a ``np.memmap``). With
        ``annealing="time"`` each call counts as one epoch of the schedule: annealing ends
        after ``max_iter / 2`` calls, so set ``max_iter`` to the number of calls planned
        (e.g. chunks per pass times passes). After ``fit``, ``partial_fit`` continues the
        fitted model at its final (annealed) rates. The first call plans the schedule:
        later changes of ``learning_rate``, ``learning_rate_final``, ``annealing`` or
        ``max_iter`` apply from the next ``fit``. ``early_stopping`` does not apply.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One chunk of training data.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : DeepConvGMM
            The updated estimator.
        """
        self._validate_params()
        return self._guarded_fit(X, partial=True)

    def _guarded_fit(self, X, *, partial: bool) -> DeepConvGMM:
        # validate_data(reset=True) overwrites n_features_in_ (and feature_names_in_) before the
        # other checks: put them back if this fit fails, so that a fitted model stays usable.
        saved = {k: self.__dict__[k] for k in _INPUT_ATTRIBUTES if k in self.__dict__}
        try:
            return self._fit(X, partial=partial)
        except BaseException:
            for name in _INPUT_ATTRIBUTES:
                self.__dict__.pop(name, None)
            self.__dict__.update(saved)
            raise

    def _fit(self, X, *, partial: bool = False) -> DeepConvGMM:
        fitted = hasattr(self, "module_")
        continuing = fitted and (partial or self.warm_start)
        streamed = isinstance(X, np.memmap)
        X, image_shape = self._validate_images(X, reset=not continuing)
        n_samples = X.shape[0]
        if n_samples < self.n_components and not (partial and continuing):
            raise ValueError(
                "Expected n_samples >= n_components but got "
                f"n_components = {self.n_components}, n_samples = {n_samples}"
            )
        device = resolve_device(self.device)
        specs = resolve_layers(self.layers, image_shape)
        if continuing and isinstance(self.layers, str):
            # A preset continues with the precision rates it was fitted with: that default
            # changed (models saved before resolved None to 10 in every GMM layer).
            if _unset_precision_rates(specs) == _unset_precision_rates(self.layers_):
                specs = self.layers_
        n_train = n_samples
        if self.early_stopping and not partial:
            n_train -= math.ceil(self.validation_fraction * n_samples)
            if n_train < 1:
                raise ValueError(
                    f"validation_fraction={self.validation_fraction} leaves no training samples "
                    f"out of {n_samples}."
                )
        if self.batch_size == "auto":
            batch_size = min(n_train, max(10, min(100, n_train // 100)))
        else:
            batch_size = self.batch_size
        if batch_size > n_train:
            if not partial:  # a streamed chunk may well be smaller than a batch
                warnings.warn(
                    f"batch_size={batch_size} is larger than the {n_train} training samples; "
                    f"using batch_size={n_train}.",
                    UserWarning,
                    stacklevel=caller_stacklevel(),
                )
            batch_size = n_train
        config = TrainingConfig(
            max_iter=self.max_iter,
            batch_size=batch_size,
            learning_rate=self.learning_rate,
            learning_rate_final=min(self.learning_rate_final, self.learning_rate),
            annealing=self.annealing,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            early_stopping=self.early_stopping,
            validation_fraction=self.validation_fraction,
            verbose=self.verbose,
            # Delayed starts settle the inputs of higher layers of a new model; a model that
            # continues has settled ones.
            waits=() if continuing else tuple(spec.wait for spec in specs if isinstance(spec, GMM)),
            compile=self.compile,
        )
        if continuing:
            if self.layers_ != specs or self.module_.top.n_components != self.n_components:
                raise ValueError(
                    f"{'partial_fit' if partial else 'warm_start=True'} needs the same layers "
                    "and n_components as the previous fit."
                )
            # The old model (and its random streams) stays intact on error: copies are trained.
            seeds, n_calls = self._seeds, dict(self._n_calls)
            generator = _draw_generator(seeds, n_calls, "fit", torch.device("cpu"))
            stack = copy.deepcopy(self.module_).to(device)
            state = copy.deepcopy(self._training_state) if partial else None
        else:
            rng = check_random_state(self.random_state)
            generator = torch.Generator().manual_seed(int(rng.randint(_MAX_SEED)))
            stack = build_stack(specs, image_shape, self.n_components, generator).to(device)
            state = None
            # Seeds of the generators of later calls: new draws per call, reproducible per fit.
            seeds = {kind: int(rng.randint(_MAX_SEED)) for kind in ("fit", "sample")}
            n_calls = {"fit": 0, "sample": 0}
        _check_transform_layer(self.transform_layer, len(stack.layers))
        shape = _positions(image_shape)
        if streamed:
            data = X  # batches are copied to the device one at a time
        else:
            data = to_tensor(X, device, torch.float32).view(n_samples, *shape)
        state = new_state(stack, config) if state is None else state
        result = train(stack, data, config, generator, state, shape=shape, single_pass=partial)

        self.module_ = stack
        self._training_state = state
        self._seeds, self._n_calls = seeds, n_calls
        self.layers_ = specs
        self.image_shape_ = image_shape
        self.device_ = device
        history = {key: np.asarray(value, dtype=float) for key, value in result.history.items()}
        if continuing:
            history = {
                key: np.concatenate([self.history_[key], value]) for key, value in history.items()
            }
            self.n_iter_ = self.n_iter_ + result.n_iter if partial else result.n_iter
        else:
            self.n_iter_ = result.n_iter
        self.history_ = history
        self.loss_curve_ = (self.loss_curve_ if continuing else []) + result.loss_curve
        if not partial:
            self.converged_ = result.converged
        elif not continuing:
            self.converged_ = False
        if self.early_stopping and not partial:
            self.validation_scores_ = result.history["validation_score"]
            self.best_validation_score_ = result.best_validation_score
        else:
            self.validation_scores_ = self.best_validation_score_ = None
        low, high = _column_range(X)
        if continuing:
            low, high = np.minimum(low, self.data_min_), np.maximum(high, self.data_max_)
        self.data_min_, self.data_max_ = low, high
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit the model and return the top-layer component of every sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.fit(X).predict(X)

    # ------------------------------------------------------------------ input
    def _validate_images(
        self, X, *, reset: bool, allow_nan: bool = False
    ) -> tuple[np.ndarray, tuple[int, int, int]]:
        """Validate ``X`` as rows; return them with the image shape ``(H, W, C)``.

        A ``np.memmap`` keeps its dtype and is not copied: callers convert it chunk by chunk.
        """
        nd_shape = None
        dtype = "numeric" if isinstance(X, np.memmap) else [np.float64, np.float32]
        if not hasattr(X, "ndim"):  # nested lists of images (sparse matrices have ndim)
            X = np.asarray(X)
        ndim = X.ndim
        if ndim > 4:
            raise ValueError(
                "X must be 2-D (n_samples, n_features) or hold images (n_samples, H, W[, C]), "
                f"got a {ndim}-D array of shape {tuple(X.shape)}."
            )
        if ndim in (3, 4) and hasattr(X, "reshape"):
            nd_shape = tuple(int(v) for v in X.shape[1:])
            X = X.reshape(X.shape[0], math.prod(nd_shape))  # not -1: X may hold 0 images
        finite = "allow-nan" if allow_nan else True
        X = validate_data(self, X, dtype=dtype, reset=reset, ensure_all_finite=finite)
        n_features = X.shape[1]
        if not reset:
            image_shape = self.image_shape_
            if nd_shape is not None and _as_hwc(nd_shape) != image_shape:
                raise ValueError(
                    f"X has images of shape {nd_shape}, but {type(self).__name__} was fitted "
                    f"on images of shape {image_shape}."
                )
            return X, image_shape
        if self.image_shape is not None:
            image_shape = _as_hwc(self.image_shape, "image_shape")
            if nd_shape is not None and _as_hwc(nd_shape) != image_shape:
                raise ValueError(
                    f"image_shape={self.image_shape} does not match X's images of shape {nd_shape}."
                )
        elif nd_shape is not None:
            image_shape = _as_hwc(nd_shape)
        else:
            side = math.isqrt(n_features)
            image_shape = (side, side, 1) if side * side == n_features else (1, 1, n_features)
        if math.prod(image_shape) != n_features:
            raise ValueError(
                f"image_shape={self.image_shape} has {math.prod(image_shape)} pixel values but X "
                f"has {n_features} features."
            )
        return X, image_shape

    # ------------------------------------------------------------------ inference
    def _inference(self, X, fn) -> np.ndarray:
        """Validate ``X`` and apply ``fn(stack, x_chunk)`` over memory-bounded chunks."""
        check_is_fitted(self)
        X, image_shape = self._validate_images(X, reset=False)
        stack = self.module_
        dtype, budget = torch.float32, _INFERENCE_BYTES
        if self.device_.type == "cpu":
            # float64 on the CPU: results independent of how rows are batched.
            stack, dtype = copy.deepcopy(stack).double(), torch.float64
            budget = _CPU_INFERENCE_BYTES
            retain_freed_memory()  # also in a process that scores without having trained
        itemsize = torch.finfo(dtype).bits // 8
        # The largest activation, counted three times (input, log-scores, output of a layer).
        largest = _largest_activation(image_shape, stack)
        chunk = max(1, min(X.shape[0], budget // (3 * itemsize * largest)))
        output = None  # filled chunk by chunk: no list of pieces to concatenate (2x memory)
        with torch.no_grad():
            for start in range(0, X.shape[0], chunk):
                rows = to_tensor(X[start : start + chunk], self.device_, dtype)
                rows = rows.view(rows.shape[0], *_positions(image_shape))
                piece = fn(stack, rows).double().cpu().numpy()
                if output is None:
                    output = np.empty((X.shape[0], *piece.shape[1:]))
                output[start : start + len(piece)] = piece
        return output

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities of the top GMM layer's components.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_components)
            Posterior probability of every component; rows sum to 1.
        """
        return self._inference(X, lambda stack, x: stack(x)[:, 0])

    def predict(self, X) -> np.ndarray:
        """Top-layer component (cluster) of every sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.predict_proba(X).argmax(axis=1)

    def transform(self, X) -> np.ndarray:
        """Features for downstream estimators: the output of layer ``transform_layer``.

        By default the top layer's responsibilities (equal to ``predict_proba``); with a lower
        layer, its responsibilities (or pooled responsibilities) at every position, flattened
        position-major.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        features : ndarray of shape (n_samples, n_features_out)
        """
        check_is_fitted(self)
        index = _check_transform_layer(self.transform_layer, len(self.module_.layers))
        return self._inference(X, lambda stack, x: stack(x, upto=index).flatten(1))

    def score_samples(self, X) -> np.ndarray:
        """Exact log-likelihood of every sample under the top GMM layer.

        For the flat model this is the log-density ``log p(x)`` of the fitted mixture, as
        ``GaussianMixture.score_samples``; higher means more typical (an inlier score).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
        """
        return self._inference(X, lambda stack, x: stack.log_likelihood(x))

    def score(self, X, y=None) -> float:
        """Mean exact log-likelihood of ``X`` (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        log_likelihood : float
        """
        return float(self.score_samples(X).mean())

    def sample(self, n_samples: int = 1, *, components=None, **options):
        """Generate images top-down from the fitted model (method §8–§10).

        Every top-layer component is drawn from the mixing weights (or given), its Gaussian
        sampled and the result walked down the stack: folding layers average overlapping
        patches back into maps, pooling layers upsample, lower GMM layers sample patches from
        the components the map above selects. Reproducible for a fixed ``random_state``;
        successive calls give new samples.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to generate.
        components : int or array-like of shape (n_samples,), default=None
            Top-layer components to sample from (conditional sampling); ``None`` draws them
            from the mixing weights.
        **options
            Sampling options, all keyword-only:

            - ``top_s`` (int or None, default None): lower GMM layers draw only among the
              ``top_s`` most active components of their top-down control (the paper's S).
            - ``exponent`` (float, default 1.0): lower GMM layers' selection probabilities
              are their top-down control to this power (the top layer draws from its
              mixing weights).
            - ``noise_divisor`` (float, default 1.0): standard deviations are divided by it;
              1 samples the fitted Gaussians, larger values stay closer to the means (the
              paper uses 5 to 20).
            - ``start_noise_divisor`` (float or None, default None): ``noise_divisor`` of the
              layer sampling starts at (the top layer; for variants, their root layer);
              ``None`` uses ``noise_divisor``.
            - ``floor_noise`` (bool, default True): whether dimensions whose variance sits
              on its floor (pixels that never varied) get noise.
            - ``upsampling`` ({"dense", "sparse"}, default "dense"): top-down mode of
              pooling layers.
            - ``sharpening_steps`` (int, default 0): gradient-ascent steps after every
              fold-back that raise the log-likelihood of the GMM layer above (§9); 0 is off.
            - ``sharpening_rate`` (float, default 0.1): initial step size; adapted per
              sample so that no sample's objective ever decreases.
            - ``reconstruction_weight`` (float, default 1000.0): weight of
              ``mean (x - x0)^2``, which keeps a sharpened map near its folded-back start
              ``x0``; small weights let sharpening wipe images out towards the most likely
              patch (empty background).
            - ``sharpening_target`` ({"next", "top", "drawn"}, default "next"): sharpen for
              the GMM layer directly above each folding layer, or for the top one, after every
              fold-back; or, with ``"drawn"``, once at the end: raise the first GMM layer's
              likelihood of the image's patches while pulling the top layer's input towards
              the vector drawn there. For deep stacks, ``benchmarks/bench_sampling.py``
              compares it with these settings: ``noise_divisor=20, floor_noise=False,
              start_noise_divisor=1, sharpening_steps=30, sharpening_target="drawn"``.
            - ``match_weight`` (float, default 200.0): weight of that pull, the mean of
              ``0.5 (s_k (h - v))^2`` over the top layer's input ``h``, drawn vector ``v``
              and the drawn component's precisions ``s_k``.
            - ``clip`` (bool, default True): clip samples to the per-feature range of the
              training data (sharpening always stays inside it).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Generated samples, as rows of ``H * W * C`` values (channels last).
        y : ndarray of shape (n_samples,)
            Top-layer component of every sample.
        """
        opts, bounds = self._sampling_setup(options, "sample")
        if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}.")
        n_samples = int(n_samples)
        fixed = None
        if components is not None:
            fixed = np.asarray(components)
            if fixed.ndim == 0:
                fixed = np.full(n_samples, fixed)
            k = self.module_.top.n_components
            if (
                fixed.shape != (n_samples,)
                or not np.issubdtype(fixed.dtype, np.integer)
                or fixed.min() < 0
                or fixed.max() >= k
            ):
                raise ValueError(
                    f"components must be an int or {n_samples} ints in [0, {k}), got "
                    f"{components!r}."
                )
        generator = self._next_generator()
        rows, labels, chunk = [], [], self._sampling_chunk()
        for start in range(0, n_samples, chunk):
            n = min(chunk, n_samples - start)
            comps = None
            if fixed is not None:
                # A copy as int64 (any integer dtype indexes; the caller's array is never shared).
                comps = torch.tensor(fixed[start : start + n].astype(np.int64), device=self.device_)
                comps = comps.view(n, 1)
            x, comps = generate(self.module_, n, opts, generator, components=comps, bounds=bounds)
            rows.append(_to_rows(x))
            labels.append(comps[:, 0].cpu().numpy().astype(np.int64))
        return np.concatenate(rows), np.concatenate(labels)

    def generate_variants(self, X, *, layer: int = -1, **options):
        """Variants of given images: sample down from what a GMM layer recognises in them.

        The responsibilities of ``X`` at GMM layer ``layer`` replace the top-down control
        there, and sampling walks down from it (method §8): the top layer keeps the cluster of
        each image, lower layers keep more of its local structure.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])
            Images.
        layer : int, default=-1
            Index into ``layers_`` of a GMM layer; -1 is the top one.
        **options
            The sampling options of :meth:`sample`.

        Returns
        -------
        X_new : ndarray of the same shape as ``X``
        """
        opts, bounds = self._sampling_setup(options, "generate_variants")
        root = self._gmm_layer_index(layer)
        shape = np.shape(X)
        X, _ = self._validate_images(X, reset=False)
        return self._variants(X, root, opts, bounds).reshape(shape)

    def inpaint(self, X, mask=None, *, layer: int = -1, n_iter: int = 3, **options):
        """Fill the masked pixels of images with content that fits the rest (method §8).

        The masked pixels are set to 0 and variants of the images are generated from GMM layer
        ``layer``; the known pixels are put back and the variants regenerated ``n_iter``
        times, so that the fill agrees more and more with what is known. With sharpening,
        a last gradient ascent moves only the filled pixels. Pixels outside the mask are
        returned unchanged.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])
            Images. Masked pixels may hold anything, NaN included; the others must be finite.
        mask : array-like of bool or None, default=None
            True where a pixel is missing and must be filled: of the shape of ``X``, or of
            one image (``(n_features,)``, ``(H, W, C)``, or ``(H, W)`` for all channels of a
            pixel), which applies to every image. ``None`` masks the NaN entries of ``X``.
        layer : int, default=-1
            Index into ``layers_`` of the GMM layer variants start from.
        n_iter : int, default=3
            Rounds of variant generation and putting back the known pixels.
        **options
            The sampling options of :meth:`sample`.

        Returns
        -------
        X_filled : ndarray of the same shape as ``X``
        """
        opts, bounds = self._sampling_setup(options, "inpaint")
        root = self._gmm_layer_index(layer)
        if not isinstance(n_iter, Integral) or isinstance(n_iter, bool) or n_iter < 1:
            raise ValueError(f"n_iter must be an int >= 1, got {n_iter!r}.")
        shape = np.shape(X)
        X, _ = self._validate_images(X, reset=False, allow_nan=True)
        nan = np.isnan(X)
        missing = nan if mask is None else self._pixel_mask(mask, shape, X.shape)
        if (nan & ~missing).any():
            raise ValueError(
                "Input X contains NaN outside the mask: only masked pixels may be NaN."
            )
        known = np.where(missing, 0.0, X)
        filled = known
        for _ in range(n_iter):
            filled = np.where(missing, self._variants(filled, root, opts, bounds), known)
        if opts.sharpening_steps > 0:
            filled = self._sharpen_pixels(filled, missing, opts, bounds)
        return np.where(missing, filled, X).reshape(shape)

    def _pixel_mask(self, mask, shape: tuple, rows_shape: tuple) -> np.ndarray:
        """``inpaint``'s ``mask`` as a boolean array of the shape of the rows of ``X``.

        ``shape`` is ``X``'s own shape; a mask of one image applies to every image.
        """
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise TypeError(f"mask must be a boolean array, got dtype {mask.dtype}.")
        h, w, c = self.image_shape_
        if mask.shape == (h, w):  # one pixel: all its channels
            mask = np.repeat(mask[..., None], c, axis=-1)
        if mask.shape in ((h * w * c,), (h, w, c)):
            return np.broadcast_to(mask.reshape(1, -1), rows_shape)
        try:
            return np.broadcast_to(mask, shape).reshape(rows_shape)
        except ValueError:
            raise ValueError(
                f"mask of shape {mask.shape} matches neither X {shape} nor one of its images "
                f"{(h, w, c)}."
            ) from None

    # ------------------------------------------------------------------ sampling helpers
    def _sampling_setup(self, options: dict, caller: str):
        """Check the fit, validate sampling keywords: ``(engine options, clip bounds or None)``."""
        check_is_fitted(self)
        opts, clip = _sampling_options(options, caller)
        return opts, self._bounds() if clip else None

    def _next_generator(self, kind: str = "sample", device=None) -> torch.Generator:
        """A generator for the next ``kind`` call ("fit": continued fits, "sample": sampling).

        New draws per call, reproducible per ``random_state`` and fit.
        """
        device = self.device_ if device is None else device
        return _draw_generator(self._seeds, self._n_calls, kind, device)

    def _bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training data's per-feature range in the engine's layout ``(L0, D0)``."""
        shape = _positions(self.image_shape_)
        low, high = (
            torch.as_tensor(v, dtype=torch.float32, device=self.device_).view(shape)
            for v in (self.data_min_, self.data_max_)
        )
        return low, high

    def _sampling_chunk(self) -> int:
        """Images per top-down pass, bounding activations (and sharpening's graph)."""
        largest = _largest_activation(self.image_shape_, self.module_)
        return max(1, _INFERENCE_BYTES // (8 * 4 * largest))

    def _gmm_layer_index(self, layer: int) -> int:
        index = _check_transform_layer(layer, len(self.module_.layers), "layer")
        if not isinstance(self.module_.layers[index], GMMLayer):
            raise ValueError(
                f"layer={layer} is a {type(self.module_.layers[index]).__name__} layer; "
                "choose the index of a GMM layer in layers_."
            )
        return index

    def _chunks(self, X: np.ndarray):
        """Rows of ``X`` as float32 tensors ``(n, L0, D0)`` in sampling-sized chunks."""
        chunk = self._sampling_chunk()
        for start in range(0, X.shape[0], chunk):
            rows = to_tensor(X[start : start + chunk], self.device_, torch.float32)
            yield rows.view(rows.shape[0], *_positions(self.image_shape_))

    def _variants(self, X, root, opts, bounds) -> np.ndarray:
        generator = self._next_generator()
        chunks = self._chunks(X)
        return np.concatenate(
            [
                _to_rows(variants(self.module_, x, root, opts, generator, bounds=bounds))
                for x in chunks
            ]
        )

    def _sharpen_pixels(self, X, missing, opts, bounds) -> np.ndarray:
        """Sharpen images for the GMM layer above the first folding, moving only ``missing``."""
        stack = self.module_
        target = sharpening_target_index(stack, 0, opts.sharpening_target)
        level = bounds or (-torch.inf, torch.inf)
        chunks = zip(self._chunks(X), self._chunks(missing.astype(np.float32)))
        return np.concatenate(
            [
                _to_rows(sharpen(stack, x, 0, target, opts, bounds=level, free=free > 0))
                for x, free in chunks
            ]
        )

    # ------------------------------------------------------------------ fitted views
    def _top_param(self, name: str) -> np.ndarray:
        check_is_fitted(self)
        value = getattr(self.module_.top, name).detach().double().cpu().numpy()
        return value[0] if value.shape[0] == 1 else value

    @property
    def means_(self) -> np.ndarray:
        """Means of the top GMM layer, ``(n_components, n_features_top)``."""
        return self._top_param("means")

    @property
    def precisions_(self) -> np.ndarray:
        """Diagonal precisions (inverse variances) of the top GMM layer."""
        return self._top_param("precisions") ** 2

    @property
    def covariances_(self) -> np.ndarray:
        """Diagonal variances of the top GMM layer."""
        return 1.0 / self.precisions_

    @property
    def weights_(self) -> np.ndarray:
        """Mixing weights of the top GMM layer, ``(n_components,)``."""
        check_is_fitted(self)
        w = self.module_.top.log_weights().detach().double().exp().cpu().numpy()
        return w[0] if w.shape[0] == 1 else w

    @property
    def _n_features_out(self) -> int:
        index = _check_transform_layer(self.transform_layer, len(self.module_.layers))
        return math.prod(self.module_.layers[index].output_shape)

    # ------------------------------------------------------------------ persistence
    # Pickle format (see "Persistence" in the README). The state is the estimator's __dict__
    # with the torch module replaced by plain data, so that a pickle never holds a device
    # tensor or a module class:
    #   "_module_state": {name: CPU tensor} of DCGMMStack.state_dict(),
    #   "_module_geometry": n_components of the top GMM layer (with layers_ and image_shape_,
    #       enough to rebuild the stack with build_stack before loading the state dict),
    #   "device_": str, "_skdcgmm_format": int, "_skdcgmm_version": str.
    # Every other attribute is a plain Python/numpy value, a frozen spec of skdcgmm.layers or
    # an annealing schedule of skdcgmm.nn. A change to any of this increments _PICKLE_FORMAT
    # and adds a conversion from the previous format to __setstate__.
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # a copy: object.__getstate__ returns __dict__
        module = state.pop("module_", None)
        if module is not None:
            # CPU tensors and the specs only, so a model fitted on a GPU loads on any machine.
            state["_module_state"] = {k: v.detach().cpu() for k, v in module.state_dict().items()}
            state["_module_geometry"] = module.top.n_components
            state["device_"] = str(state["device_"])
        state["_skdcgmm_format"] = _PICKLE_FORMAT
        state["_skdcgmm_version"] = _version()
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        fmt = state.pop("_skdcgmm_format", _PICKLE_FORMAT)
        saved_by = state.pop("_skdcgmm_version", "unknown")
        if fmt > _PICKLE_FORMAT:
            raise ValueError(
                f"This model was saved by skdcgmm {saved_by} in pickle format {fmt}; this "
                f"skdcgmm ({_version()}) reads formats up to {_PICKLE_FORMAT}. Upgrade skdcgmm."
            )
        module_state = state.pop("_module_state", None)
        geometry = state.pop("_module_geometry", None)
        # Parameters added after the model was saved (e.g. compile) take their defaults.
        for name, param in inspect.signature(type(self).__init__).parameters.items():
            if param.default is not param.empty:
                state.setdefault(name, param.default)
        super().__setstate__(state)
        if module_state is not None:
            try:
                device = resolve_device(self.device_)
            except ValueError:
                warnings.warn(
                    f"The model was saved on {self.device_!r}, which is not available here; "
                    "it is loaded on the CPU.",
                    UserWarning,
                    stacklevel=caller_stacklevel(),
                )
                device = torch.device("cpu")
            stack = build_stack(self.layers_, self.image_shape_, geometry, torch.Generator())
            stack.load_state_dict(module_state)
            self.module_ = stack.to(device).eval()
            self.device_ = device


def _unset_precision_rates(specs: tuple) -> tuple:
    """``specs`` with every GMM's ``lr_precisions`` reset to its default (``None``)."""
    return tuple(
        dataclasses.replace(spec, lr_precisions=None) if isinstance(spec, GMM) else spec
        for spec in specs
    )


def _draw_generator(seeds: dict, n_calls: dict, kind: str, device) -> torch.Generator:
    """The generator of the next ``kind`` call; counts the call in ``n_calls``."""
    seed = (seeds[kind] + 7919 * n_calls[kind]) % _MAX_SEED
    n_calls[kind] += 1
    return torch.Generator(device=device).manual_seed(seed)


def _version() -> str:
    from . import __version__

    return __version__


def _as_hwc(shape, name: str = "image shape") -> tuple[int, int, int]:
    """``(H, W)`` or ``(H, W, C)`` -> ``(H, W, C)``, validated."""
    shape = tuple(shape)
    if len(shape) not in (2, 3) or not all(
        isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in shape
    ):
        raise ValueError(f"{name} must be (H, W) or (H, W, C) with positive ints, got {shape!r}.")
    return tuple(int(v) for v in shape) + ((1,) if len(shape) == 2 else ())


def _column_range(X: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature minimum and maximum as float64, read in chunks (memory maps stay on disk)."""
    low = np.full(X.shape[1], np.inf)
    high = np.full(X.shape[1], -np.inf)
    for start in range(0, X.shape[0], chunk):
        rows = X[start : start + chunk]
        low = np.minimum(low, rows.min(axis=0))
        high = np.maximum(high, rows.max(axis=0))
    return low, high


def _to_rows(x: torch.Tensor) -> np.ndarray:
    """Engine images ``(n, L0, D0)`` as float64 numpy rows ``(n, L0 * D0)``."""
    return x.detach().reshape(x.shape[0], -1).double().cpu().numpy()


def _largest_activation(image_shape: tuple[int, int, int], stack) -> int:
    """Values per image of the largest tensor passed between the stack's layers."""
    return max([math.prod(image_shape)] + [math.prod(m.output_shape) for m in stack.layers])


def _positions(image_shape: tuple[int, int, int]) -> tuple[int, int]:
    """The engine's layout of an image: ``(L, D) = (H * W, C)``."""
    return (image_shape[0] * image_shape[1], image_shape[2])


def _check_transform_layer(index: int, n_layers: int, name: str = "transform_layer") -> int:
    if not isinstance(index, Integral) or isinstance(index, bool):
        raise TypeError(f"{name} must be an int, got {index!r}.")
    if not -n_layers <= index < n_layers:
        raise ValueError(f"{name}={index} is out of range for a model of {n_layers} layers.")
    return index % n_layers


#: Keyword options of the sampling methods and their constraints (sklearn's vocabulary).
_SAMPLING_CONSTRAINTS: dict = {
    "top_s": [Interval(Integral, 1, None, closed="left"), None],
    "exponent": [Interval(Real, 0, None, closed="neither")],
    "noise_divisor": [Interval(Real, 0, None, closed="neither")],
    "start_noise_divisor": [Interval(Real, 0, None, closed="neither"), None],
    "floor_noise": ["boolean"],
    "upsampling": [StrOptions({"dense", "sparse"})],
    "sharpening_steps": [Interval(Integral, 0, None, closed="left")],
    "sharpening_rate": [Interval(Real, 0, None, closed="neither")],
    "reconstruction_weight": [Interval(Real, 0, None, closed="left")],
    "sharpening_target": [StrOptions({"next", "top", "drawn"})],
    "match_weight": [Interval(Real, 0, None, closed="left")],
    "clip": ["boolean"],
}


def _sampling_options(options: dict, caller: str) -> tuple[SamplingOptions, bool]:
    """Validate sampling keywords; return the engine's options and whether to clip.

    Methods call :meth:`DeepConvGMM._sampling_setup`, which adds the fit check and bounds.
    """
    unknown = sorted(set(options) - set(_SAMPLING_CONSTRAINTS))
    if unknown:
        raise TypeError(
            f"{caller}() got unexpected keyword arguments {unknown}; the sampling options are "
            f"{sorted(_SAMPLING_CONSTRAINTS)}."
        )
    validate_parameter_constraints(_SAMPLING_CONSTRAINTS, options, caller_name=caller)
    options = dict(options)
    clip = bool(options.pop("clip", True))
    return SamplingOptions(**options), clip
