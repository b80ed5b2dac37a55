"""Readable, frozen layer specifications and the named architectures.

A spec describes a layer without data: ``DeepConvGMM(layers=(GMM(),))`` builds the engine's
layers from it once the input shape is known. Specs are frozen dataclasses, so they are hashable,
picklable and compare by value (``clone`` and ``GridSearchCV`` treat them as plain parameters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .nn import DCGMMStack, GMMLayer

__all__ = ["GMM", "PRESETS", "build_stack", "resolve_layers"]


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
    lr_means, lr_precisions, lr_weights : float, default=(1.0, 10.0, 0.2)
        Learning-rate factors of the means, precisions and mixing logits (the paper's
        lambda values). The paper uses 0.1 for the precisions; with it they barely move from
        their initial (minimum) variance within a few epochs, so the default is 10, chosen by
        ``benchmarks/bench_flat_vs_sklearn.py`` (test log-likelihood on MNIST).
    sigma0 : float or None, default=None
        Initial annealing radius; ``None`` means ``0.25 * sqrt(2 K)``.
    """

    n_components: int | None = None
    shared: bool = True
    min_variance: float = 0.05
    mu_init: float = 0.1
    lr_means: float = 1.0
    lr_precisions: float = 10.0
    lr_weights: float = 0.2
    sigma0: float | None = None

    def validate(self, *, top: bool) -> None:
        k = self.n_components
        if k is None and not top:
            raise ValueError("Only the top GMM may leave n_components=None.")
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise ValueError(f"GMM n_components must be an int >= 1, got {k!r}.")
        for name in ("min_variance", "mu_init"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"GMM {name} must be a finite number >= 0, got {value!r}.")
        if not self.min_variance > 0:
            raise ValueError(f"GMM min_variance must be > 0, got {self.min_variance!r}.")
        for name in ("lr_means", "lr_precisions", "lr_weights"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"GMM {name} must be a finite number >= 0, got {value!r}.")
        if self.sigma0 is not None and not (
            isinstance(self.sigma0, (int, float)) and math.isfinite(self.sigma0) and self.sigma0 > 0
        ):
            raise ValueError(f"GMM sigma0 must be None or a number > 0, got {self.sigma0!r}.")

    def build(
        self, input_shape: tuple[int, int, int], n_components: int, generator: torch.Generator
    ) -> GMMLayer:
        return GMMLayer(
            input_shape,
            n_components,
            shared=self.shared,
            mu_init=self.mu_init,
            min_variance=self.min_variance,
            sigma0=self.sigma0,
            lr_factors=(self.lr_means, self.lr_precisions, self.lr_weights),
            generator=generator,
        )


#: Named architectures. ``"flat"`` is one GMM over the whole input; ``"auto"`` resolves to it
#: until convolutional presets exist.
PRESETS: dict[str, tuple] = {"flat": (GMM(),)}


def resolve_layers(layers: str | Sequence, n_features: int) -> tuple:
    """Turn ``layers`` (a preset name or a sequence of specs) into a validated spec tuple."""
    if isinstance(layers, str):
        name = "flat" if layers == "auto" else layers
        if name not in PRESETS:
            raise ValueError(
                f"Unknown layers preset {layers!r}; choose one of {[*sorted(PRESETS), 'auto']} "
                "or pass a sequence of layer specs."
            )
        specs = PRESETS[name]
    else:
        specs = tuple(layers)
        if not specs:
            raise ValueError("layers must contain at least one layer spec, got an empty sequence.")
    for i, spec in enumerate(specs):
        if not isinstance(spec, GMM):
            raise TypeError(
                f"layers[{i}] must be a layer spec such as skdcgmm.layers.GMM(), got {spec!r}."
            )
        spec.validate(top=i == len(specs) - 1)
    return specs


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
        k = n_components if i == len(specs) - 1 else spec.n_components
        module = spec.build(shape, k, generator)
        modules.append(module)
        shape = module.output_shape
    return DCGMMStack(modules)
