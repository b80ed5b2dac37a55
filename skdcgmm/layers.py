"""Readable, frozen layer specifications and the named architectures.

A spec describes a layer without data: ``DeepConvGMM(layers=(GMM(),))`` builds the engine's
layers from it once the input shape is known. Specs are frozen dataclasses, so they are hashable,
picklable and compare by value (``clone`` and ``GridSearchCV`` treat them as plain parameters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import torch

from .nn import DCGMMStack, Folding, GMMLayer, Pooling
from .nn.folding import folding_output_shape
from .nn.pooling import pooling_output_shape

__all__ = ["GMM", "PRESETS", "Fold", "Pool", "build_stack", "resolve_layers"]


def _is_int(value) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """A finite real number (Python or numpy), not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _pair(value, name: str) -> tuple[int, int] | None:
    """``int`` or ``(int, int)`` (or None) -> ``(int, int)`` (or None), validated."""
    if value is None:
        return None
    pair = (value, value) if _is_int(value) else value
    if (
        not isinstance(pair, tuple | list)
        or len(pair) != 2
        or not all(_is_int(v) and v >= 1 for v in pair)
    ):
        raise ValueError(f"{name} must be an int >= 1 or a pair of them, got {value!r}.")
    return (int(pair[0]), int(pair[1]))


@dataclass(frozen=True)
class Fold:
    """Patch extraction: the convolution of a DCGMM.

    Parameters
    ----------
    patch : int, (int, int) or None, default=None
        Patch height and width. ``None`` takes the whole input map as one patch (use it before
        the top GMM). A patch larger than its map is an error, except in named presets, which
        are adapted to the image size.
    stride : int, (int, int) or None, default=None
        Step between patches; ``None`` means non-overlapping (stride = patch).
    """

    patch: int | tuple[int, int] | None = None
    stride: int | tuple[int, int] | None = None

    def validate(self, *, top: bool = False) -> None:
        _pair(self.patch, "Fold patch")
        _pair(self.stride, "Fold stride")

    def build(self, input_shape: tuple[int, int, int], n_components, generator) -> Folding:
        patch = _pair(self.patch, "Fold patch") or tuple(input_shape[:2])
        stride = _pair(self.stride, "Fold stride") or patch
        return Folding(input_shape, patch, stride)

    def adapt(self, input_shape: tuple[int, int, int]) -> Fold:
        """This spec with patch and stride shrunk to fit a ``(H, W, C)`` map."""
        h, w, _ = input_shape
        patch = _pair(self.patch, "Fold patch") or (h, w)
        patch = (min(patch[0], h), min(patch[1], w))
        stride = _pair(self.stride, "Fold stride") or patch
        return Fold(patch, (min(stride[0], h), min(stride[1], w)))


@dataclass(frozen=True)
class Pool:
    """Max (or average) pooling of a GMM layer's responsibilities over positions.

    Parameters
    ----------
    kernel : int or (int, int), default=2
        Window size (no larger than the map, except in presets, which shrink it).
    stride : int, (int, int) or None, default=None
        Step between windows; ``None`` means the kernel size.
    mode : {"max", "avg"}, default="max"
    """

    kernel: int | tuple[int, int] = 2
    stride: int | tuple[int, int] | None = None
    mode: str = "max"

    def validate(self, *, top: bool = False) -> None:
        _pair(self.kernel, "Pool kernel")
        _pair(self.stride, "Pool stride")
        if self.mode not in ("max", "avg"):
            raise ValueError(f"Pool mode must be 'max' or 'avg', got {self.mode!r}.")

    def build(self, input_shape: tuple[int, int, int], n_components, generator) -> Pooling:
        kernel = _pair(self.kernel, "Pool kernel")
        stride = _pair(self.stride, "Pool stride") or kernel
        return Pooling(input_shape, kernel, stride, self.mode)

    def adapt(self, input_shape: tuple[int, int, int]) -> Pool:
        """This spec with the window shrunk to fit a ``(H, W, K)`` map."""
        h, w, _ = input_shape
        kernel = _pair(self.kernel, "Pool kernel")
        stride = _pair(self.stride, "Pool stride") or kernel
        return Pool((min(kernel[0], h), min(kernel[1], w)), stride, self.mode)


@dataclass(frozen=True)
class GMM:
    """A diagonal GMM layer.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of components. ``None`` is only allowed for the top layer, which takes the
        estimator's ``n_components``.
    shared : bool, default=True
        Share the parameters over all positions (convolutional mode) or not (one GMM per
        position).
    min_variance : float, default=0.05
        Hard lower bound of every variance, in squared data units (0.05 for pixels in
        ``[0, 1]`` as in the paper); precisions start at its inverse.
    mu_init : float, default=0.1
        Means are initialised uniformly in ``[-mu_init, mu_init]``.
    lr_means, lr_weights : float, default=(1.0, 0.2)
        Learning-rate factors of the means and mixing logits (the paper's lambda values).
    lr_precisions : float or None, default=None
        Learning-rate factor of the precisions. ``None`` picks by position: 10 for the first
        GMM layer, which reads the input (with the paper's 0.1 its variances barely move from
        their initial minimum within a few epochs; 10 was chosen by
        ``benchmarks/bench_flat_vs_sklearn.py``, test log-likelihood on MNIST), and the
        paper's 0.1 for higher layers, which read responsibilities: there, fast-growing
        variances let a few components win every input (MNIST, preset C, 100 top components:
        34 in use with 10, 89 with 1, 100 with 0.1), which spoils sampling and clustering.
    sigma0 : float or None, default=None
        Initial annealing radius; ``None`` means ``0.25 * sqrt(2 K)``.
    wait : float in [0, 1), default=0.0
        Fraction of the planned training steps during which the layer stays frozen (it still
        forwards), so that higher layers start on settled inputs (method §2.11).
    """

    n_components: int | None = None
    shared: bool = True
    min_variance: float = 0.05
    mu_init: float = 0.1
    lr_means: float = 1.0
    lr_precisions: float | None = None
    lr_weights: float = 0.2
    sigma0: float | None = None
    wait: float = 0.0

    def validate(self, *, top: bool = False) -> None:
        k = self.n_components
        if k is None and not top:
            raise ValueError("Only the top GMM may leave n_components=None.")
        if k is not None and not (_is_int(k) and k >= 1):
            raise ValueError(f"GMM n_components must be an int >= 1, got {k!r}.")
        for name in ("min_variance", "mu_init"):
            value = getattr(self, name)
            if not (_is_number(value) and value >= 0):
                raise ValueError(f"GMM {name} must be a finite number >= 0, got {value!r}.")
        if not self.min_variance > 0:
            raise ValueError(f"GMM min_variance must be > 0, got {self.min_variance!r}.")
        for name in ("lr_means", "lr_precisions", "lr_weights"):
            value = getattr(self, name)
            if name == "lr_precisions" and value is None:
                continue  # chosen by the layer's position at build time
            if not (_is_number(value) and value >= 0):
                what = "a finite number >= 0"
                what = f"None or {what}" if name == "lr_precisions" else what
                raise ValueError(f"GMM {name} must be {what}, got {value!r}.")
        if self.sigma0 is not None and not (_is_number(self.sigma0) and self.sigma0 > 0):
            raise ValueError(f"GMM sigma0 must be None or a number > 0, got {self.sigma0!r}.")
        if not (_is_number(self.wait) and 0 <= self.wait < 1):
            raise ValueError(f"GMM wait must be a number in [0, 1), got {self.wait!r}.")

    def adapt(self, input_shape: tuple[int, int, int]) -> GMM:
        return self

    def precision_rate(self, on_input: bool) -> float:
        """The precisions' learning-rate factor of this layer, resolving ``None`` by position."""
        if self.lr_precisions is not None:
            return self.lr_precisions
        return 10.0 if on_input else 0.1

    def build(
        self,
        input_shape: tuple[int, int, int],
        n_components: int,
        generator: torch.Generator,
        *,
        on_input: bool = True,
    ) -> GMMLayer:
        """The engine layer; ``on_input`` tells whether it is the first GMM layer of its stack."""
        return GMMLayer(
            input_shape,
            n_components,
            shared=self.shared,
            mu_init=self.mu_init,
            min_variance=self.min_variance,
            sigma0=self.sigma0,
            lr_factors=(self.lr_means, self.precision_rate(on_input), self.lr_weights),
            generator=generator,
        )


#: Named architectures (method §13), adapted to the input: ``Fold()`` before the top GMM covers
#: the whole remaining map and patches larger than a map shrink to it. The top GMM takes the
#: estimator's ``n_components``. ``"flat"`` (= ``"A"``) is one GMM over the whole input (any data).
PRESETS: dict[str, tuple] = {
    "flat": (Fold(), GMM()),
    "A": (Fold(), GMM()),
    "B": (Fold(8, 2), GMM(49), Fold(), GMM(wait=0.1)),
    "C": (Fold(8, 1), GMM(25), Pool(2), Fold(), GMM(wait=0.1)),
    # Not the paper's: "C" with 49 first-layer components, DeepConvGMM's "auto" for 16x16 and
    # up (README, "Extensions").
    "C49": (Fold(8, 1), GMM(49), Pool(2), Fold(), GMM(wait=0.1)),
    "D": (
        Fold(3, 1),
        GMM(25),
        Pool(2),
        Fold(4, 1),
        GMM(25, wait=0.1),
        Pool(2),
        Fold(),
        GMM(wait=0.2),
    ),
    "E": (Fold(3, 1), GMM(25), Fold(4, 2), GMM(25, wait=0.1), Fold(), GMM(wait=0.2)),
    "F": (
        Fold(3, 1),
        GMM(25, lr_weights=0.0),
        Fold(4, 2),
        GMM(25, lr_weights=0.0, wait=0.1),
        Fold(4, 2),
        GMM(25, lr_weights=0.0, wait=0.2),
        Fold(),
        GMM(lr_weights=0.0, wait=0.3),
    ),
    # G with the reference's stride typo fixed (third pooling 2x2, stride 2 in both axes).
    "G": (
        Fold(3, 1),
        GMM(25, lr_weights=0.0),
        Pool(2),
        Fold(3, 1),
        GMM(25, lr_weights=0.0, wait=0.1),
        Pool(2),
        Fold(3, 1),
        GMM(25, lr_weights=0.0, wait=0.2),
        Pool(2, 2),
        Fold(),
        GMM(lr_weights=0.0, wait=0.3),
    ),
}
#: ``layers="auto"``: ``"C49"`` (``resolve_layers``'s ``auto``) for images of at least 16x16, this
#: stack for 8x8 up to 16x16 (8x8 patches would cover such images whole), ``"flat"`` below 8x8
#: and for tabular data.
SMALL_IMAGE_LAYERS = (Fold(3, 1), GMM(25), Pool(2), Fold(), GMM(wait=0.1))
#: The smallest side of the images that ``layers="auto"`` gives the preset ``auto``.
LARGE_IMAGE_SIDE = 16
_SPEC_TYPES = (Fold, GMM, Pool)


def is_large_image(image_shape: tuple[int, int, int]) -> bool:
    """Whether both sides of ``image_shape`` reach ``LARGE_IMAGE_SIDE`` (the ``auto`` preset's)."""
    return min(image_shape[:2]) >= LARGE_IMAGE_SIDE


def resolve_layers(
    layers: str | Sequence, image_shape: tuple[int, int, int], auto: str = "C49"
) -> tuple:
    """Turn ``layers`` (a preset name or a sequence of specs) into a validated spec tuple.

    ``auto`` is the preset that ``layers="auto"`` gives images of at least 16x16.
    """
    if isinstance(layers, str):
        name, side = layers, min(image_shape[:2])
        if layers == "auto":
            name = auto if is_large_image(image_shape) else "small" if side >= 8 else "flat"
        if name != "small" and name not in PRESETS:
            raise ValueError(
                f"Unknown layers preset {layers!r}; choose one of {[*sorted(PRESETS), 'auto']} "
                "or pass a sequence of layer specs."
            )
        return _adapt(SMALL_IMAGE_LAYERS if name == "small" else PRESETS[name], image_shape)
    else:
        specs = tuple(layers)
        if not specs:
            raise ValueError("layers must contain at least one layer spec, got an empty sequence.")
    if not isinstance(specs[-1], GMM):
        raise ValueError(f"The last layer must be a GMM spec, got {specs[-1]!r}.")
    for i, spec in enumerate(specs):
        if not isinstance(spec, _SPEC_TYPES):
            raise TypeError(
                f"layers[{i}] must be a layer spec (skdcgmm.layers.Fold, GMM or Pool), "
                f"got {spec!r}."
            )
        spec.validate(top=i == len(specs) - 1)
    return specs


def _adapt(specs: tuple, image_shape: tuple[int, int, int]) -> tuple:
    """Concrete specs of a preset for images of ``image_shape``: every window fits its map."""
    adapted, shape = [], tuple(image_shape)
    for spec in specs:
        spec = spec.adapt(shape)
        adapted.append(spec)
        if isinstance(spec, Fold):
            shape = folding_output_shape(shape, spec.patch, spec.stride)
        elif isinstance(spec, Pool):
            shape = pooling_output_shape(shape, spec.kernel, spec.stride)
        else:
            shape = (shape[0], shape[1], spec.n_components or 1)
    return tuple(adapted)


def build_stack(
    specs: Sequence,
    input_shape: tuple[int, int, int],
    n_components: int,
    generator: torch.Generator,
) -> DCGMMStack:
    """Build the engine's stack from specs; the top GMM gets ``n_components``."""
    top = specs[-1]
    if top.n_components is not None and top.n_components != n_components:
        raise ValueError(
            f"The top GMM spec has n_components={top.n_components} but the estimator has "
            f"n_components={n_components}; leave the top spec's n_components as None."
        )
    modules, shape = [], tuple(input_shape)
    for i, spec in enumerate(specs):
        k = n_components if i == len(specs) - 1 else getattr(spec, "n_components", None)
        try:
            if isinstance(spec, GMM):
                on_input = not any(isinstance(m, GMMLayer) for m in modules)
                module = spec.build(shape, k, generator, on_input=on_input)
            else:
                module = spec.build(shape, k, generator)
        except ValueError as exc:
            raise ValueError(
                f"layers[{i}] = {spec!r} does not fit its input {shape}: {exc}"
            ) from exc
        modules.append(module)
        shape = module.output_shape
    if shape[:2] != (1, 1):
        raise ValueError(
            f"The top GMM sees a {shape[0]}x{shape[1]} map; it must see one position so that "
            "every image gets one cluster. End the layers with Fold() (the whole map) before it."
        )
    return DCGMMStack(modules)
