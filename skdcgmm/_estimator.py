"""The scikit-learn face of the engine: :class:`DeepConvGMM`."""

from __future__ import annotations

import copy
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
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._training import TrainingConfig, train
from ._utils import resolve_device, to_tensor
from .layers import GMM, build_stack, resolve_layers

__all__ = ["DeepConvGMM"]

_MAX_SEED = 2**31 - 1
#: Bytes of activations per forward pass at inference: scoring any number of images runs in
#: chunks of at most this many bytes (plus the model), whatever the architecture.
_INFERENCE_BYTES = 256 * 2**20


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
        least 16x16, a small convolutional stack from 8x8 and ``"flat"`` below (and for
        tabular data). The top GMM takes ``n_components`` and must see the whole map.
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
        spec's learning-rate factors. Keep ``learning_rate * lr_means / min_variance <= 2``
        (2 at the defaults): larger steps can overshoot a component's mean.
    learning_rate_final : float, default=0.02
        Step size reached when annealing ends (``learning_rate`` if larger).
    annealing : {"time", "plateau"}, default="time"
        Schedule of the annealing radius and learning rate. ``"time"`` decays both
        geometrically over the first half of the planned ``max_iter`` epochs, so every fit ends
        annealed; ``"plateau"`` is the reference's loss-plateau controller, which may need
        thousands of steps to finish.
    tol : float, default=1e-4
        Relative tolerance: after annealing has ended, training stops when the epoch loss has
        not improved by more than ``tol * |best loss|`` for ``n_iter_no_change`` epochs.
    n_iter_no_change : int, default=5
        Epochs without improvement before stopping.
    device : str, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and sampling through private generators; the global
        torch and numpy random states are never used.
    warm_start : bool, default=False
        Continue from the previous fit's parameters and annealing radius instead of
        re-initialising (the learning-rate schedule restarts).
    verbose : int, default=0
        Print one progress line per epoch when positive.
    transform_layer : int, default=-1
        Index into ``layers_`` of the layer whose output ``transform`` returns (flattened):
        ``-1`` is the top GMM's responsibilities; e.g. ``2`` is the pooled first-layer
        responsibilities of ``"C"``, the paper's linear read-out.

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
        Epochs run by the last fit.
    loss_curve_ : list of float
        Per-epoch training loss: the negated annealed log-likelihood summed over GMM layers
        (lower is better); appended to by warm starts.
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
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "transform_layer": [Integral],
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
        device="auto",
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        transform_layer: int = -1,
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
        self.device = device
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.transform_layer = transform_layer

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
        continuing = self.warm_start and hasattr(self, "module_")
        X, image_shape = self._validate_images(X, reset=not continuing)
        n_samples = X.shape[0]
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components but got "
                f"n_components = {self.n_components}, n_samples = {n_samples}"
            )
        device = resolve_device(self.device)
        specs = resolve_layers(self.layers, image_shape)
        if self.batch_size == "auto":
            batch_size = min(n_samples, max(10, min(100, n_samples // 100)))
        else:
            batch_size = self.batch_size
        if batch_size > n_samples:
            warnings.warn(
                f"batch_size={batch_size} is larger than n_samples={n_samples}; "
                f"using batch_size={n_samples}.",
                UserWarning,
                stacklevel=2,
            )
            batch_size = n_samples
        config = TrainingConfig(
            max_iter=self.max_iter,
            batch_size=batch_size,
            learning_rate=self.learning_rate,
            learning_rate_final=min(self.learning_rate_final, self.learning_rate),
            annealing=self.annealing,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            verbose=self.verbose,
            waits=tuple(spec.wait for spec in specs if isinstance(spec, GMM)),
        )
        rng = check_random_state(self.random_state)
        generator = torch.Generator().manual_seed(int(rng.randint(_MAX_SEED)))
        if continuing:
            if self.layers_ != specs or self.module_.top.n_components != self.n_components:
                raise ValueError(
                    "warm_start=True needs the same layers and n_components as the previous fit."
                )
            stack = copy.deepcopy(self.module_).to(device)  # the old model stays intact on error
        else:
            stack = build_stack(specs, image_shape, self.n_components, generator).to(device)
        _check_transform_layer(self.transform_layer, len(stack.layers))
        data = to_tensor(X, device, torch.float32).view(n_samples, *_positions(image_shape))
        result = train(stack, data, config, generator)

        self.module_ = stack
        self.layers_ = specs
        self.image_shape_ = image_shape
        self.device_ = device
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.loss_curve_ = (self.loss_curve_ if continuing else []) + result.loss_curve
        self._sample_seed = int(rng.randint(_MAX_SEED))
        self._n_sample_calls = 0
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
    def _validate_images(self, X, *, reset: bool) -> tuple[np.ndarray, tuple[int, int, int]]:
        """Validate ``X`` as rows; return them with the image shape ``(H, W, C)``."""
        nd_shape = None
        if getattr(X, "ndim", 2) in (3, 4) and hasattr(X, "reshape"):
            nd_shape = tuple(int(v) for v in X.shape[1:])
            X = X.reshape(X.shape[0], -1)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=reset)
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
        dtype = torch.float32
        if self.device_.type == "cpu":
            # float64 on the CPU: results independent of how rows are batched.
            stack, dtype = copy.deepcopy(stack).double(), torch.float64
        itemsize = torch.finfo(dtype).bits // 8
        # The largest activation, counted three times (input, log-scores, output of a layer).
        largest = max([math.prod(image_shape)] + [math.prod(m.output_shape) for m in stack.layers])
        chunk = max(1, min(X.shape[0], _INFERENCE_BYTES // (3 * itemsize * largest)))
        outputs = []
        with torch.no_grad():
            for start in range(0, X.shape[0], chunk):
                rows = to_tensor(X[start : start + chunk], self.device_, dtype)
                rows = rows.view(rows.shape[0], *_positions(image_shape))
                outputs.append(fn(stack, rows).double().cpu().numpy())
        return np.concatenate(outputs, axis=0)

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

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Generate samples from the fitted model.

        Reproducible for a fixed ``random_state``; successive calls give new samples.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to generate.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Generated samples.
        y : ndarray of shape (n_samples,)
            Top-layer component of every sample.
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}.")
        seed = (self._sample_seed + self._n_sample_calls) % _MAX_SEED
        self._n_sample_calls += 1
        generator = torch.Generator(device=self.device_).manual_seed(seed)
        with torch.no_grad():
            x, components = self.module_.sample(int(n_samples), generator=generator)
        X = x.reshape(n_samples, -1).double().cpu().numpy()  # rows of H * W * C, channels last
        return X, components[:, 0].cpu().numpy().astype(np.int64)

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
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # a copy: object.__getstate__ returns __dict__
        module = state.pop("module_", None)
        if module is not None:
            # CPU tensors and the specs only, so a model fitted on a GPU loads on any machine.
            state["_module_state"] = {k: v.detach().cpu() for k, v in module.state_dict().items()}
            state["_module_geometry"] = module.top.n_components
            state["device_"] = str(state["device_"])
        return state

    def __setstate__(self, state: dict) -> None:
        module_state = state.pop("_module_state", None)
        geometry = state.pop("_module_geometry", None)
        super().__setstate__(state)
        if module_state is not None:
            try:
                device = resolve_device(self.device_)
            except ValueError:
                warnings.warn(
                    f"The model was saved on {self.device_!r}, which is not available here; "
                    "it is loaded on the CPU.",
                    UserWarning,
                    stacklevel=2,
                )
                device = torch.device("cpu")
            stack = build_stack(self.layers_, self.image_shape_, geometry, torch.Generator())
            stack.load_state_dict(module_state)
            self.module_ = stack.to(device).eval()
            self.device_ = device


def _as_hwc(shape, name: str = "image shape") -> tuple[int, int, int]:
    """``(H, W)`` or ``(H, W, C)`` -> ``(H, W, C)``, validated."""
    shape = tuple(shape)
    if len(shape) not in (2, 3) or not all(
        isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in shape
    ):
        raise ValueError(f"{name} must be (H, W) or (H, W, C) with positive ints, got {shape!r}.")
    return tuple(int(v) for v in shape) + ((1,) if len(shape) == 2 else ())


def _positions(image_shape: tuple[int, int, int]) -> tuple[int, int]:
    """The engine's layout of an image: ``(L, D) = (H * W, C)``."""
    return (image_shape[0] * image_shape[1], image_shape[2])


def _check_transform_layer(index: int, n_layers: int) -> int:
    if not -n_layers <= index < n_layers:
        raise ValueError(
            f"transform_layer={index} is out of range for a model of {n_layers} layers."
        )
    return index % n_layers
