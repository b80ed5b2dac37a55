"""The sampling face of the estimator: :meth:`sample`, :meth:`generate_variants`, :meth:`inpaint`.

:class:`SamplingMixin` validates the sampling keywords, converts images to and from the
engine's layout and delegates the walk down the stack to :mod:`skdcgmm.nn.sampling` in
memory-bounded chunks, with the random stream of the fitted estimator.
"""

from __future__ import annotations

import dataclasses
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted

from ._input import check_layer_index, largest_activation, positions, to_rows, validate_images
from ._utils import draw_generator, to_tensor
from .nn import GMMLayer, SamplingOptions
from .nn.sampling import generate, sharpen, sharpening_target_index, variants

__all__ = ["SAMPLERS", "SamplingMixin"]

#: Bytes of activations of a top-down sampling pass (and of sharpening's graph) on any device.
_SAMPLING_BYTES = 256 * 2**20


class SamplingMixin:
    """Top-down generation for a fitted :class:`~skdcgmm.DeepConvGMM` (method §8–§10).

    Needs the fitted attributes ``module_``, ``image_shape_``, ``device_``, ``data_min_``,
    ``data_max_`` and the random streams ``_seeds`` / ``_n_calls`` set by ``fit``.
    """

    def sample(self, n_samples: int = 1, *, components=None, sampler="auto", **options):
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
        sampler : {"auto", "drawn", "paper", "exact"}, default="auto"
            A set of option values (below) that the keywords given in ``options`` override:

            - ``"exact"``: the option defaults below, which sample the fitted Gaussians of
              every layer as they are, like ``GaussianMixture.sample``.
            - ``"paper"``: the reference's sampler, near the means (``noise_divisor=20,
              floor_noise=False``); add ``sharpening_steps`` for its sharpening (§9).
            - ``"drawn"``: near the means below the top layer (``noise_divisor=20``), the top
              layer's Gaussian sampled as fitted (``start_noise_divisor=1``), then
              sharpening that pulls the image's first-layer map hard towards the drawn
              vector (``sharpening_steps=30, sharpening_target="drawn",
              match_weight=10000``): the best NDB/K of the deep presets measured (NDB/K
              0.71 on MNIST and 0.70 on Fashion-MNIST for ``DeepConvGMM(25)`` fitted to
              20,000 images, against 0.76 and 0.85 for ``GaussianMixture(25)``;
              ``bench_defaults.py``), at about 1 % of the plain sampler's speed.
            - ``"auto"``: ``"drawn"`` for deep stacks and ``"exact"`` for flat models.
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
        opts, bounds = self._sampling_setup(options, "sample", sampler)
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
            rows.append(to_rows(x))
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
        X, _ = validate_images(self, X, reset=False)
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
        X, _ = validate_images(self, X, reset=False, allow_nan=True)
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
    def _sampling_setup(self, options: dict, caller: str, sampler: str = "exact"):
        """Check the fit, validate sampling keywords: ``(engine options, clip bounds or None)``.

        ``options`` override the values of the named ``sampler`` (see :meth:`sample`).
        """
        check_is_fitted(self)
        if sampler not in SAMPLERS and sampler != "auto":
            raise ValueError(
                f"{caller}() got sampler={sampler!r}; choose one of {['auto', *sorted(SAMPLERS)]}."
            )
        if sampler == "auto":
            sampler = "drawn" if self.module_.is_deep else "exact"
        opts, clip = _sampling_options(options, caller)
        opts = dataclasses.replace(SamplingOptions(**SAMPLERS[sampler]), **_given(opts, options))
        return opts, self._bounds() if clip else None

    def _next_generator(self, kind: str = "sample", device=None) -> torch.Generator:
        """A generator for the next ``kind`` call ("fit": continued fits, "sample": sampling).

        New draws per call, reproducible per ``random_state`` and fit.
        """
        device = self.device_ if device is None else device
        return draw_generator(self._seeds, self._n_calls, kind, device)

    def _bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training data's per-feature range in the engine's layout ``(L0, D0)``."""
        shape = positions(self.image_shape_)
        low, high = (
            torch.as_tensor(v, dtype=torch.float32, device=self.device_).view(shape)
            for v in (self.data_min_, self.data_max_)
        )
        return low, high

    def _sampling_chunk(self) -> int:
        """Images per top-down pass, bounding activations (and sharpening's graph)."""
        largest = largest_activation(self.image_shape_, self.module_)
        return max(1, _SAMPLING_BYTES // (8 * 4 * largest))

    def _gmm_layer_index(self, layer: int) -> int:
        index = check_layer_index(layer, len(self.module_.layers), "layer")
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
            yield rows.view(rows.shape[0], *positions(self.image_shape_))

    def _variants(self, X, root, opts, bounds) -> np.ndarray:
        generator = self._next_generator()
        chunks = self._chunks(X)
        return np.concatenate(
            [
                to_rows(variants(self.module_, x, root, opts, generator, bounds=bounds))
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
                to_rows(sharpen(stack, x, 0, target, opts, bounds=level, free=free > 0))
                for x, free in chunks
            ]
        )


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


#: Named sets of sampling options (``sample(sampler=...)``); keywords given override them.
#: "drawn" measured best for the deep presets (NDB/K, ``benchmarks/bench_sampling.py``).
SAMPLERS: dict[str, dict] = {
    "exact": {},
    "paper": {"noise_divisor": 20.0, "floor_noise": False},
    "drawn": {
        "noise_divisor": 20.0,
        "start_noise_divisor": 1.0,
        "sharpening_steps": 30,
        "sharpening_target": "drawn",
        "match_weight": 10_000.0,
    },
}


def _given(opts: SamplingOptions, options: dict) -> dict:
    """The engine options among the keywords the caller gave, validated (no ``clip``)."""
    return {name: getattr(opts, name) for name in options if name != "clip"}


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
