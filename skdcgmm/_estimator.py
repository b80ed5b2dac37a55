"""The scikit-learn face of the engine: :class:`DeepConvGMM`.

The estimator stores its parameters, validates them and the data, resolves the architecture,
device and random streams, delegates training to :mod:`skdcgmm._training` and inference to the
engine, and sets the fitted attributes. Sampling (:mod:`skdcgmm._sampling`), input validation
(:mod:`skdcgmm._input`) and pickling (:mod:`skdcgmm._persistence`) live in modules of their own.
"""

from __future__ import annotations

import copy
import dataclasses
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
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._input import check_layer_index, column_range, largest_activation, positions, validate_images
from ._persistence import PersistenceMixin
from ._sampling import SamplingMixin
from ._training import TrainingConfig, new_state, refit_top, train
from ._utils import (
    MAX_SEED,
    caller_stacklevel,
    draw_generator,
    resolve_device,
    retain_freed_memory,
    to_tensor,
)
from .layers import GMM, build_stack, is_large_image, resolve_layers
from .nn.factor import FactorGMMLayer

__all__ = ["DeepConvGMM"]

#: Bytes of activations per forward pass at inference on a GPU: scoring any number of images
#: runs in chunks of at most this many bytes (plus the model), whatever the architecture. A GPU
#: wants large chunks (few kernel launches).
_INFERENCE_BYTES = 256 * 2**20
#: The same budget for inference on the CPU, which wants small chunks: their activations stay
#: below the 32 MiB that glibc's malloc is asked to serve from its heap (no page faults for
#: fresh memory, see ``_utils.retain_freed_memory``) and closer to the caches. Measured on a
#: 2-core CPU, 32 MiB chunks score 2x faster than 256 MiB ones for the deep presets (C 3.8k ->
#: 7.8k images/s) and 1.6x for the flat model at K = 100.
_CPU_INFERENCE_BYTES = 32 * 2**20
#: ``batch_size="auto"``: the largest batch whose GMM log-scores (positions x components x
#: input dimensions, summed over GMM layers) hold at most this many values: 1,000 images for the
#: flat model at K = 100 on MNIST (78,400 values each), 109 for preset C (730,600 each). Measured
#: on MNIST, these are the batch sizes of the best speed at full quality (README, "Speed").
_BATCH_VALUES = 8 * 10**7
#: Bounds of ``batch_size="auto"``, and the steps per epoch it leaves at least (above 10 rows).
_MIN_BATCH, _MAX_BATCH, _MIN_STEPS = 10, 1000, 60
#: ``learning_rate="auto"`` at batch sizes up to 100; larger batches scale it linearly.
_BASE_LEARNING_RATE, _BASE_BATCH = 0.1, 100
#: ``learning_rate_final="auto"`` is ``learning_rate`` divided by this.
_FINAL_RATE_DIVISOR = 5.0
#: ``max_iter="auto"``: annealing lasts this many images seen per unit of side of the torus
#: grid of the largest GMM layer (sqrt of its components): 90,000 (1.5 epochs of MNIST) for
#: preset C (25 components), 126,000 for C49 (49), 180,000 for the flat model at K = 100.
#: Shorter annealing loses test log-likelihood on the flat model (MNIST, K = 100, 5 epochs: 204
#: after 1.5 epochs of annealing, 216 after 3); longer annealing of C loses clustering accuracy.
_ANNEAL_SAMPLES_PER_SIDE = 18_000
#: ``max_iter="auto"`` plans annealing plus as long again at the final rates, at most this
#: many epochs (and ``partial_fit`` plans over this many calls).
_MAX_AUTO_EPOCHS = 20
#: Most EM steps of ``top_refit="em"``.
_EM_MAX_ITER = 100
#: Presets that ``layers="auto"`` gave images of at least 16x16 in earlier versions (``"C"``;
#: ``"E"`` in ``DeepConvGMMOutlierDetector``): models fitted with them continue with them.
_OLD_AUTO = ("C", "E")
#: ``top_refit_min_variance="auto"``: the variance floor of the top-layer EM refit of images of
#: at least 16x16, and below.
_LARGE_IMAGE_FLOOR, _SMALL_IMAGE_FLOOR = 0.005, 0.01
#: ``top_refit_shrinkage="auto"`` of deep stacks of images of at least 16x16, and below (flat
#: models are not shrunk).
_LARGE_IMAGE_SHRINKAGE, _SMALL_IMAGE_SHRINKAGE = 0.5, 0.5
#: Attributes that validating the input of ``fit`` sets before the model is trained.
_INPUT_ATTRIBUTES = ("n_features_in_", "feature_names_in_")


class DeepConvGMM(
    SamplingMixin,
    PersistenceMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    DensityMixin,
    BaseEstimator,
):
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
        ``"G"`` (method §13, adapted to the image size), plus ``"C49"``: ``"C"`` with 49
        first-layer components instead of 25 (not in the paper). ``"auto"`` is ``"C49"`` for
        images of at least 16x16, a small convolutional stack from 8x8 and ``"flat"`` below.
        Over three seeds, with the default refit floor, ``"C49"`` raised all six outlier
        and clustering figures of ``"C"`` on MNIST and Fashion-MNIST (Fashion-MNIST
        clustering accuracy 0.536 to 0.588, leave-one-class-out ROC-AUC 0.713 to 0.725;
        MNIST leave-out 0.878 to 0.915), at about twice the fit time; its Fashion-MNIST
        samples are worse at K = 25 (NDB/K 0.732 against 0.680, both far below the flat
        models' 0.87) and better at K = 100 (0.598 against 0.634) (README, "Extensions").
        Pass ``"C"`` for the paper's choice. Rows are read as images by the rule of
        ``image_shape``, so tabular data whose ``n_features`` is a perfect square of at least
        64 gets a convolutional stack too: pass ``"flat"`` for it.
        The top GMM takes ``n_components`` and must see the whole map.
    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(H, W, C)`` of the images when ``X`` holds them as rows of
        ``H * W * C`` features (channels last). ``None``: taken from ``X`` when it is given as
        ``(n, H, W)`` or ``(n, H, W, C)``, otherwise square single-channel images when
        ``n_features`` is a perfect square, otherwise rows are treated as ``1 x 1`` images.
    max_iter : int or "auto", default="auto"
        Number of epochs (passes over the data) training is planned over: annealing takes the
        first half (see ``annealing``), training at the final rates the second, and training
        stops early once annealed and converged (``tol``). An int that ends training
        unconverged gives a ``ConvergenceWarning``. ``"auto"`` scales the plan with the data
        and the model: annealing lasts ``18,000 * sqrt(K)`` images seen, ``K`` the largest
        number of components of a GMM layer (90,000, 1.5 epochs of MNIST, for preset ``"C"``;
        180,000 for the flat model at K = 100), the plan twice that, rounded up to whole
        epochs and at most 20 epochs (small data sets: 20 epochs, annealing over 10), and a
        plan that has run its course gives no warning. ``partial_fit`` plans over
        ``max_iter`` calls (20 for ``"auto"``).
    batch_size : int or "auto", default="auto"
        Minibatch size. ``"auto"`` scales with the model: the largest batch whose GMM
        log-scores (positions x components x input dimensions, summed over the GMM layers)
        hold at most 8e7 values, clipped to ``[10, 1000]``, and to ``n_samples // 60`` (at
        least 10) so that every epoch has 60 steps or more. On 60,000 MNIST images that is
        1,000 for the flat model at K = 100 and 109 for preset ``"C"``. Values above
        ``n_samples`` are clipped with a warning.
    learning_rate : float or "auto", default="auto"
        Initial SGD step size (the paper's ``eps0``), multiplied per parameter by the GMM
        spec's learning-rate factors. ``"auto"`` is 0.1 up to batches of 100 and grows in
        proportion to larger batches (the linear scaling rule: the batch-mean gradient of a
        batch of 1,000 takes a step of 1.0). A step moves a mean by up to ``learning_rate *
        lr_means / min_variance`` times the share of the batch its component wins, so steps
        cannot overshoot while that product stays <= 2 for components that win a large
        share; ``fit`` raises a ``ValueError`` when training diverges.
    learning_rate_final : float or "auto", default="auto"
        Step size reached when annealing ends (``learning_rate`` if larger); ``"auto"`` is
        ``learning_rate / 5``.
    annealing : {"time", "plateau"}, default="time"
        Schedule of the annealing radius and learning rate. ``"time"`` decays both
        geometrically over the first half of the planned epochs (``max_iter``), so every fit
        ends annealed; delayed GMM layers (``GMM(wait=...)``) start after their fraction of
        the plan. ``"plateau"`` is the reference's loss-plateau controller, which may need
        thousands of steps to finish.
    tol : float, default=1e-4
        Relative tolerance: after annealing has ended, training stops when the epoch loss (or
        the validation score, with ``early_stopping``) has not improved by more than
        ``tol * |best|`` for ``n_iter_no_change`` epochs.
    n_iter_no_change : int, default=5
        Epochs without improvement before stopping.
    n_init : int, default=1
        Number of fits from different random initialisations; the one with the highest
        ``lower_bound_`` (training objective) is kept, as in ``GaussianMixture``. Continued
        fits (``warm_start``, ``partial_fit``) train the fitted model once.
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
    top_refit : {"auto", "em"} or None, default="auto"
        ``"em"``: after SGD, refit the top GMM layer by expectation-maximisation on the
        inputs the (fixed) layers below give the training data, starting from the SGD
        solution (an extension of the paper's method, see :mod:`skdcgmm.nn.em`): soft
        responsibilities replace the max-component assignment, so the top layer's variances
        and weights become maximum-likelihood ones and its exact log-likelihood rises. At
        most 100 EM steps, stopped when a step gains less than ``tol`` (relative); each
        makes one pass over the training data. ``None`` is the paper's method (SGD only).
        ``"auto"``: ``"em"`` for a stack of two or more GMM layers, ``None`` for a single
        one (``layers="flat"``, whose EM fit is :class:`sklearn.mixture.GaussianMixture`'s
        and would cost its time). The refit raised one-class ROC-AUC, clustering accuracy
        and NMI on MNIST and Fashion-MNIST over three seeds each, and did not worsen
        NDB/K (README, "Extensions"). ``partial_fit`` does not refit.
    top_refit_min_variance : float, None or "auto", default="auto"
        Variance floor of the ``top_refit`` EM steps; ``None`` keeps the top GMM layer's own
        ``min_variance``. SGD needs its floor for stable steps, maximum likelihood does not:
        a lower one lets the refitted components fit the features more tightly. ``"auto"``:
        0.005 for images of at least 16x16 and 0.01 below. With ``"C49"``, 0.005 gained
        one-class and leave-out ROC-AUC and clustering accuracy over 0.01 on both data sets;
        with ``"C"``, of the floors measured (the layers' 0.05, 0.01, 0.002), 0.01 gave the
        best clustering NMI, 0.002 gained Fashion-MNIST one-class ROC-AUC but lost sample
        NDB/K; on scikit-learn's 8x8 digits, 0.002 lost outlier ROC-AUC (README,
        "Extensions").
        The layer's floor for later SGD steps (``warm_start``, ``partial_fit``) is
        unchanged.
    top_refit_reg_covar : float, default=0.0
        Added to every variance of the ``top_refit`` EM steps before the floor applies, as
        :class:`~sklearn.mixture.GaussianMixture`'s ``reg_covar``: narrow components are
        widened smoothly instead of clipped at the floor (the refit then maximises the
        regularised fit, not the likelihood itself). With ``"C49"`` at the floor 0.005, 0.005
        raised Fashion-MNIST one-class ROC-AUC (0.9221 to 0.9238, three seeds), leave-one-out
        ROC-AUC (0.7248 to 0.7281, one seed) and MNIST clustering accuracy (0.650 to 0.678),
        but lost MNIST clustering NMI (0.683 to 0.673) and one-class ROC-AUC (0.9833 to
        0.9819) and tied Fashion-MNIST clustering (NMI 0.558 against 0.559, five seeds);
        0.01 lost Fashion-MNIST one-class ROC-AUC again. It does not win on both data sets,
        so it is off by default (README, "Extensions").
    top_refit_shrinkage : float in [0, 1] or "auto", default="auto"
        At every ``top_refit`` EM step, each component's variances become
        ``(1 - s) var_k + s var_pooled``, where ``var_pooled = sum_k pi_k var_k`` is the
        mixture's within-component variance (before ``top_refit_reg_covar`` and the floor
        apply). ``0`` is plain EM; ``1`` fits a mixture whose components share one diagonal
        covariance, as :class:`~sklearn.mixture.GaussianMixture`'s ``"tied"`` shares a full
        one. ``"auto"`` is 0.5 for deep stacks and 0 for flat models (whose EM refit stays
        :class:`~sklearn.mixture.GaussianMixture`'s). With ``"C49"`` at the floor 0.005 (three
        seeds), 0.5 raised Fashion-MNIST one-class ROC-AUC from 0.922 to 0.928
        (``GaussianMixture``: 0.925), clustering accuracy from 0.588 to 0.596 and sample
        quality, and kept MNIST one-class ROC-AUC (0.982 against 0.983) and clustering
        accuracy (0.647 against 0.650), but lowered MNIST clustering NMI from 0.683 to 0.644;
        on scikit-learn's 8x8 digits it raised clustering and one-class ROC-AUC (README,
        "Extensions"). The gain is not a better fit of held-out data: on two Fashion-MNIST
        one-class tasks the top layer's held-out log-likelihood fell as ``s`` grew. A
        plausible reading (not tested): shared variances keep a component's few narrowest
        feature directions from deciding its scores alone. The top layer stays a diagonal
        GMM layer (``sample``, ``warm_start``, ``aic``/``bic`` unchanged).
    top_factors : int or None, default=None
        With ``top_refit``: after the EM refit, replace the top GMM layer by a mixture of
        common factor analysers with this many factors (Baek, McLachlan & Flack, 2010; see
        :mod:`skdcgmm.nn.factor`). Every component's covariance becomes
        ``A Omega_k A^T + Psi``: ``A`` spans the leading principal directions of the top
        layer's inputs, the diagonal noise ``Psi`` (floored at the refit's floor) is shared,
        and the components are fitted by exact EM from the refitted layer's
        responsibilities. The top layer then models how its input features vary together,
        not each on its own. It needs the refit (``"flat"`` only refits with
        ``top_refit="em"``) and ``top_factors`` below the top layer's input dimension.
        ``means_`` and ``covariances_`` are then each component's mean and marginal
        variances; ``warm_start`` and ``partial_fit`` continue from those (a diagonal top)
        and only ``fit`` fits the factors again. With ``"C49"`` and 64 factors (seed 0), it
        raised Fashion-MNIST one-class ROC-AUC from 0.9225 to 0.9319 but lost MNIST one-class
        (0.9844 to 0.9795) and Fashion-MNIST clustering (NMI 0.573 to 0.567), so it is off by
        default (README, "Extensions").

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
    em_n_iter_ : int
        EM steps of ``top_refit`` in the last ``fit``, those of ``top_factors`` included (0
        without it).
    lower_bound_ : float
        The training objective of the kept parameters: the mean over the training samples
        of the annealed max-component log-likelihoods, summed over GMM layers, in the last
        epoch (the best validated one with ``early_stopping``); the negated last entry of
        ``loss_curve_``. Once annealed, the max-component term of a GMM layer is a lower
        bound of its log-likelihood, so for the flat model this approximates from below
        the mean ``score`` of the training data (its parameters moved during the epoch).
        ``n_init`` keeps the start with the highest value.
    means_, weights_, precisions_, covariances_, precisions_cholesky_ : ndarray
        Parameters of the top GMM layer: means ``(K, D)``, mixing weights ``(K,)``, diagonal
        precisions, variances and inverse standard deviations ``(K, D)`` (as in
        ``GaussianMixture(covariance_type="diag")``).

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

    #: The preset that ``layers="auto"`` gives images of at least 16x16.
    _auto_layers: ClassVar[str] = "C49"

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "layers": [str, list, tuple],
        "image_shape": [tuple, list, None],
        "max_iter": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "learning_rate_final": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "annealing": [StrOptions({"time", "plateau"})],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "transform_layer": [Integral],
        "compile": ["boolean"],
        "top_refit": [StrOptions({"auto", "em"}), None],
        "top_refit_min_variance": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"auto"}),
            None,
        ],
        "top_refit_reg_covar": [Interval(Real, 0, None, closed="left")],
        "top_refit_shrinkage": [Interval(Real, 0, 1, closed="both"), StrOptions({"auto"})],
        "top_factors": [Interval(Integral, 1, None, closed="left"), None],
    }

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
        X, image_shape = validate_images(self, X, reset=not continuing)
        n_samples = X.shape[0]
        if n_samples < self.n_components and not (partial and continuing):
            raise ValueError(
                "Expected n_samples >= n_components but got "
                f"n_components = {self.n_components}, n_samples = {n_samples}"
            )
        device = resolve_device(self.device)
        specs = self._resolve_specs(image_shape, partial=partial, continuing=continuing)
        # The fitted stack, or a new one built only for its shapes (this also checks the specs
        # against the images before any data is converted).
        probe = (
            self.module_
            if continuing
            else build_stack(specs, image_shape, self.n_components, torch.Generator())
        )
        self._check_top_factors(probe)
        config = self._training_config(
            specs, n_samples, probe, partial=partial, continuing=continuing
        )
        check_layer_index(self.transform_layer, len(specs))  # one engine layer per spec
        shape = positions(image_shape)
        if streamed:
            data = X  # batches are copied to the device one at a time
        else:
            data = to_tensor(X, device, torch.float32).view(n_samples, *shape)
        if continuing:
            stack, state, generator, streams = self._continue(device, partial=partial)
            result = train(stack, data, config, generator, state, shape=shape, single_pass=partial)
        else:
            stack, state, result, streams = self._best_of_inits(
                specs, image_shape, device, data, config, shape, partial=partial
            )
        em_n_iter = 0
        if self._refits_top(stack) and not partial:
            seed = streams[0]["fit"]  # the factors' random start, from this fit's streams
            em_n_iter = self._refit_top(stack, data, shape, image_shape, seed=seed)
        self._set_fitted(stack, state, streams, specs, image_shape, device)
        self._record_training(result, partial=partial, continuing=continuing)
        if not partial or not continuing:
            self.em_n_iter_ = em_n_iter
        low, high = column_range(X)
        if continuing:
            low, high = np.minimum(low, self.data_min_), np.maximum(high, self.data_max_)
        self.data_min_, self.data_max_ = low, high
        return self

    def _refit_top(self, stack, data, shape: tuple[int, int], image_shape, seed: int = 0) -> int:
        """Refit ``stack``'s top layer by EM on ``data`` with this model's ``top_refit_*`` and
        ``top_factors`` settings (``seed``: the factors' random start); the number of EM
        steps."""
        results = refit_top(
            stack,
            data,
            shape=shape,
            max_iter=_EM_MAX_ITER,
            tol=self.tol,
            min_variance=self._refit_min_variance(image_shape),
            reg_variance=self.top_refit_reg_covar,
            shrinkage=self._refit_shrinkage(stack, image_shape),
            n_factors=self.top_factors,
            generator=torch.Generator().manual_seed(seed),
        )
        return sum(result.n_iter for result in results)

    def _check_top_factors(self, stack) -> None:
        """``top_factors`` needs the top-layer EM refit, and fewer factors than the top
        layer's input dimensions."""
        if self.top_factors is None:
            return
        if isinstance(self.top_factors, bool):
            raise TypeError(f"top_factors must be an int or None, got {self.top_factors!r}.")
        if not self._refits_top(stack):
            raise ValueError(
                "top_factors needs the top-layer EM refit: set top_refit='em' (top_refit="
                f"{self.top_refit!r} does not refit this stack's top layer)."
            )
        top = stack.top
        if self.top_factors >= top.input_shape[2]:
            raise ValueError(
                f"top_factors must be smaller than the top layer's input dimension "
                f"({top.input_shape[2]}), got {self.top_factors}."
            )

    def _refit_min_variance(self, image_shape: tuple[int, int, int]) -> float | None:
        """The variance floor of the top-layer refit of images of ``image_shape``."""
        if self.top_refit_min_variance != "auto":
            return self.top_refit_min_variance
        return _LARGE_IMAGE_FLOOR if is_large_image(image_shape) else _SMALL_IMAGE_FLOOR

    def _refit_shrinkage(self, stack, image_shape: tuple[int, int, int]) -> float:
        """The variance shrinkage of the top-layer refit of ``stack`` on images of
        ``image_shape``: ``"auto"`` shrinks only deep stacks."""
        if self.top_refit_shrinkage != "auto":
            return self.top_refit_shrinkage
        if not stack.is_deep:
            return 0.0
        return _LARGE_IMAGE_SHRINKAGE if is_large_image(image_shape) else _SMALL_IMAGE_SHRINKAGE

    def _refits_top(self, stack) -> bool:
        """Whether ``top_refit`` asks for the EM refit of ``stack``'s top layer."""
        if self.top_refit == "auto":
            return stack.is_deep
        return self.top_refit == "em"

    def _resolve_specs(self, image_shape, *, partial: bool, continuing: bool) -> tuple:
        """The layer specs of this fit; a continued fit must keep those of the previous one."""
        specs = resolve_layers(self.layers, image_shape, auto=self._auto_layers)
        if continuing and isinstance(self.layers, str):
            # A preset continues with the precision rates it was fitted with: that default
            # changed (models saved before resolved None to 10 in every GMM layer).
            chosen = [specs]
            if self.layers == "auto":  # earlier versions' "auto": C, and E for the detector
                chosen += [resolve_layers("auto", image_shape, auto=old) for old in _OLD_AUTO]
            fitted = _unset_precision_rates(self.layers_)
            if any(_unset_precision_rates(choice) == fitted for choice in chosen):
                specs = self.layers_
        if continuing and (
            self.layers_ != specs or self.module_.top.n_components != self.n_components
        ):
            raise ValueError(
                f"{'partial_fit' if partial else 'warm_start=True'} needs the same layers "
                "and n_components as the previous fit."
            )
        return specs

    def _training_config(
        self, specs: tuple, n_samples: int, stack, *, partial: bool, continuing: bool
    ) -> TrainingConfig:
        """The settings of :func:`~skdcgmm._training.train` for ``n_samples`` rows of a model
        shaped like ``stack`` (batch size, rates and schedule scale with it)."""
        n_train = n_samples
        if self.early_stopping and not partial:
            n_train -= math.ceil(self.validation_fraction * n_samples)
            if n_train < 1:
                raise ValueError(
                    f"validation_fraction={self.validation_fraction} leaves no training samples "
                    f"out of {n_samples}."
                )
        if self.batch_size == "auto":
            values = _log_score_values(stack)
            by_model = min(_MAX_BATCH, max(_MIN_BATCH, _BATCH_VALUES // values))
            batch_size = min(n_train, by_model, max(_MIN_BATCH, n_train // _MIN_STEPS))
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
        learning_rate = self.learning_rate
        if learning_rate == "auto":  # the linear scaling rule above the base batch
            learning_rate = _BASE_LEARNING_RATE * max(1.0, batch_size / _BASE_BATCH)
        final = self.learning_rate_final
        if final == "auto":
            final = learning_rate / _FINAL_RATE_DIVISOR
        max_iter, anneal_epochs = self.max_iter, None
        if max_iter == "auto":
            max_iter = _MAX_AUTO_EPOCHS
            if not partial:  # partial_fit plans over max_iter calls: it cannot know the data
                side = math.sqrt(max(layer.n_components for layer in stack.gmm_layers))
                anneal_epochs = _ANNEAL_SAMPLES_PER_SIDE * side / n_train
                max_iter = max(1, min(max_iter, math.ceil(2 * anneal_epochs)))
        return TrainingConfig(
            max_iter=max_iter,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_final=min(final, learning_rate),
            annealing=self.annealing,
            anneal_epochs=anneal_epochs,
            # A planned schedule that ran its course is no reason to warn.
            warn_unconverged=self.max_iter != "auto",
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

    def _continue(self, device, *, partial: bool):
        """``(stack, state, generator, (seeds, n_calls))`` to continue the fitted model from.

        The stack is a copy, so the old model and its random streams stay intact if training
        fails.
        """
        seeds, n_calls = self._seeds, dict(self._n_calls)
        generator = draw_generator(seeds, n_calls, "fit", torch.device("cpu"))
        stack = copy.deepcopy(self.module_).to(device)
        if isinstance(stack.top, FactorGMMLayer):  # SGD continues from its diagonal twin
            stack.layers[-1] = stack.top.diagonal()
        state = copy.deepcopy(self._training_state) if partial else None
        return stack, state, generator, (seeds, n_calls)

    def _best_of_inits(self, specs, image_shape, device, data, config, shape, *, partial: bool):
        """Train ``n_init`` new models from ``random_state``; keep the best by lower bound.

        Returns ``(stack, state, result, (seeds, n_calls))``. With several starts, one
        ``ConvergenceWarning`` is given, when the kept model did not converge. The first call
        of ``partial_fit`` makes one start and one pass.
        """
        rng = check_random_state(self.random_state)
        n_init = 1 if partial else self.n_init
        best = None
        for _ in range(n_init):
            generator = torch.Generator().manual_seed(int(rng.randint(MAX_SEED)))
            stack = build_stack(specs, image_shape, self.n_components, generator).to(device)
            state = new_state(stack, config)
            result = train(
                stack,
                data,
                config,
                generator,
                state,
                shape=shape,
                single_pass=partial,
                warn=n_init == 1,
            )
            if best is None or result.lower_bound > best[2].lower_bound:
                best = (stack, state, result)
        stack, state, result = best
        if n_init > 1 and config.warn_unconverged and not (result.converged or result.interrupted):
            warnings.warn(
                f"DeepConvGMM: the best of n_init={self.n_init} starts reached max_iter="
                f"{self.max_iter} without converging.",
                ConvergenceWarning,
                stacklevel=caller_stacklevel(),
            )
        # Seeds of the generators of later calls: new draws per call, reproducible per fit.
        seeds = {kind: int(rng.randint(MAX_SEED)) for kind in ("fit", "sample")}
        return stack, state, result, (seeds, {"fit": 0, "sample": 0})

    def _set_fitted(self, stack, state, streams, specs, image_shape, device) -> None:
        self.module_ = stack
        self._training_state = state
        self._seeds, self._n_calls = streams
        self.layers_ = specs
        self.image_shape_ = image_shape
        self.device_ = device

    def _record_training(self, result, *, partial: bool, continuing: bool) -> None:
        """``n_iter_``, ``history_``, ``loss_curve_``, convergence and validation attributes."""
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
        if result.loss_curve or not continuing:
            self.lower_bound_ = result.lower_bound
        if not partial:
            self.converged_ = result.converged
        elif not continuing:
            self.converged_ = False
        if self.early_stopping and not partial:
            self.validation_scores_ = result.history["validation_score"]
            self.best_validation_score_ = result.best_validation_score
        else:
            self.validation_scores_ = self.best_validation_score_ = None

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

    # ------------------------------------------------------------------ inference
    def _inference(self, X, fn) -> np.ndarray:
        """Validate ``X`` and apply ``fn(stack, x_chunk)`` over memory-bounded chunks."""
        check_is_fitted(self)
        X, image_shape = validate_images(self, X, reset=False)
        stack = self.module_
        dtype, budget = torch.float32, _INFERENCE_BYTES
        if self.device_.type == "cpu":
            # float64 on the CPU: results independent of how rows are batched.
            stack, dtype = copy.deepcopy(stack).double(), torch.float64
            budget = _CPU_INFERENCE_BYTES
            retain_freed_memory()  # also in a process that scores without having trained
        itemsize = torch.finfo(dtype).bits // 8
        # The largest activation, counted three times (input, log-scores, output of a layer).
        largest = largest_activation(image_shape, stack)
        chunk = max(1, min(X.shape[0], budget // (3 * itemsize * largest)))
        output = None  # filled chunk by chunk: no list of pieces to concatenate (2x memory)
        with torch.no_grad():
            for start in range(0, X.shape[0], chunk):
                rows = to_tensor(X[start : start + chunk], self.device_, dtype)
                rows = rows.view(rows.shape[0], *positions(image_shape))
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
        index = check_layer_index(self.transform_layer, len(self.module_.layers))
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

    def bic(self, X) -> float:
        """Bayesian information criterion of a flat model on ``X`` (lower is better).

        ``-2 * score(X) * n_samples + n_parameters * log(n_samples)``, as
        ``GaussianMixture.bic``, with ``n_parameters`` the means, variances and free mixing
        weights of the diagonal GMM. Defined for flat models only (one GMM layer over the
        whole image): a deep model's ``score_samples`` is the top layer's log-likelihood of
        the responsibilities below, not a density of the images, so information criteria
        computed from it would not compare models; a ``ValueError`` says so.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        bic : float
        """
        n_params, n = self._n_parameters("bic"), self._n_rows(X)
        return -2.0 * self.score(X) * n + n_params * math.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion of a flat model on ``X`` (lower is better).

        ``-2 * score(X) * n_samples + 2 * n_parameters``, as ``GaussianMixture.aic``; flat
        models only (see :meth:`bic`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        aic : float
        """
        n_params, n = self._n_parameters("aic"), self._n_rows(X)
        return -2.0 * self.score(X) * n + 2.0 * n_params

    def _n_parameters(self, caller: str) -> int:
        """Free parameters of a flat model: ``2 K D + K - 1`` (means, variances, weights)."""
        check_is_fitted(self)
        if isinstance(self.module_.top, FactorGMMLayer):
            raise ValueError(
                f"{caller}() counts the parameters of a diagonal flat model; this one has "
                "common factors (top_factors)."
            )
        if len(self.module_.gmm_layers) != 1 or self.module_.top.input_shape[:2] != (1, 1):
            raise ValueError(
                f"{caller}() needs a flat model (layers='flat'): for a deep model, "
                "score_samples is the top layer's log-likelihood of the responsibilities "
                "below, not the log-density of the images, so an information criterion "
                "computed from it does not compare models."
            )
        k, d = self.module_.top.n_components, self.module_.top.input_shape[2]
        return 2 * k * d + k - 1

    @staticmethod
    def _n_rows(X) -> int:
        return X.shape[0] if hasattr(X, "shape") else len(X)

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
    def precisions_cholesky_(self) -> np.ndarray:
        """Inverse standard deviations of the top GMM layer (``GaussianMixture``'s diagonal
        ``precisions_cholesky_``): the engine's own parameters."""
        return self._top_param("precisions")

    @property
    def weights_(self) -> np.ndarray:
        """Mixing weights of the top GMM layer, ``(n_components,)``."""
        check_is_fitted(self)
        w = self.module_.top.log_weights().detach().double().exp().cpu().numpy()
        return w[0] if w.shape[0] == 1 else w

    @property
    def _n_features_out(self) -> int:
        index = check_layer_index(self.transform_layer, len(self.module_.layers))
        return math.prod(self.module_.layers[index].output_shape)


def _log_score_values(stack) -> int:
    """Log-scores per image of the stack's GMM layers: positions x components x dimensions."""
    return sum(
        layer.n_positions * layer.n_components * layer.input_shape[2] for layer in stack.gmm_layers
    )


def _unset_precision_rates(specs: tuple) -> tuple:
    """``specs`` with every GMM's ``lr_precisions`` reset to its default (``None``)."""
    return tuple(
        dataclasses.replace(spec, lr_precisions=None) if isinstance(spec, GMM) else spec
        for spec in specs
    )
