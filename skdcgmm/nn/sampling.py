"""Top-down generation from a :class:`DCGMMStack`: sampling, sharpening, variants (§8–§10).

Sampling starts at a GMM layer (the top one, or any one with a given control), draws a component
and a Gaussian vector at every position, and walks down: a Folding layer folds the patch vectors
back (averaging overlaps), a Pooling layer upsamples, a lower GMM layer reads what arrives as a
top-down control that selects its components. Folded-back maps are blurred by the averaging;
*sharpening* (§9) then moves each map by gradient ascent so that its patches are likely again
under a GMM layer above, with all parameters fixed. Sharpening towards the *drawn* vector
instead moves the generated input, once it has been walked down, until the input it gives the
start layer matches the vector drawn there, while its patches stay likely under the first GMM
layer: samples then keep what the start layer drew, with sharp patches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .folding import Folding
from .gmm import GMMLayer
from .pooling import Pooling

__all__ = [
    "SamplingOptions",
    "generate",
    "prototypes",
    "sharpen",
    "sharpen_to_drawn",
    "sharpening_target_index",
    "variants",
]


@dataclass(frozen=True)
class SamplingOptions:
    """How to walk down a stack (method §8–§10).

    Attributes
    ----------
    top_s : int or None
        Keep only the ``top_s`` most active components of every top-down control when
        selecting (the paper's S); ``None`` keeps all. The start layer draws from its mixing
        weights.
    exponent : float
        Selection probabilities are the top-down control raised to this power.
    noise_divisor : float
        Standard deviations are divided by it (1: the fitted Gaussians; the paper uses 5–20).
    start_noise_divisor : float or None
        ``noise_divisor`` of the layer sampling starts at (the top layer, or the root of
        variants); ``None`` uses ``noise_divisor``.
    floor_noise : bool
        Whether dimensions whose variance sits on its floor get noise.
    upsampling : {"dense", "sparse"}
        Top-down mode of pooling layers.
    sharpening_steps : int
        Gradient-ascent steps after every fold-back (0: off).
    sharpening_rate : float
        Initial step size of sharpening; adapted per sample (grown by 1.25 after an improving
        step, halved and the step undone otherwise), so no sample's objective ever decreases.
    reconstruction_weight : float
        Weight of the penalty ``mean (x - x0)^2`` that keeps a sharpened map near its
        folded-back start ``x0``. Without it, raising the likelihood of a patch GMM drives
        images towards the most likely patch (e.g. empty background); the default 1000 (the
        reference's Fashion-MNIST setting) balances the two terms on 28x28 images. Not used by
        ``sharpening_target="drawn"``.
    sharpening_target : {"next", "top", "drawn"}
        ``"next"`` and ``"top"``: after every fold-back, raise the annealed log-likelihood of
        the GMM layer directly above the folding layer (the reference's configuration) or of
        the top one. ``"drawn"``: once, after the walk down, raise the first GMM layer's
        annealed log-likelihood of the input's patches while pulling the input the start layer
        gets from it towards the vector drawn there (see ``match_weight``).
    match_weight : float
        Weight of the matching term of ``sharpening_target="drawn"``:
        ``mean 0.5 (s_k (h - v))^2`` over the start layer's positions and dimensions, for its
        input ``h``, drawn vector ``v`` and the drawn components' precisions ``s_k``.
    """

    top_s: int | None = None
    exponent: float = 1.0
    noise_divisor: float = 1.0
    start_noise_divisor: float | None = None
    floor_noise: bool = True
    upsampling: str = "dense"
    sharpening_steps: int = 0
    sharpening_rate: float = 0.1
    reconstruction_weight: float = 1000.0
    sharpening_target: str = "next"
    match_weight: float = 200.0

    @property
    def start_divisor(self) -> float:
        """The noise divisor of the layer sampling starts at."""
        return self.noise_divisor if self.start_noise_divisor is None else self.start_noise_divisor

    @property
    def sharpens_drawn(self) -> bool:
        return self.sharpening_steps > 0 and self.sharpening_target == "drawn"


@torch.no_grad()
def generate(
    stack,
    n_samples: int,
    options: SamplingOptions,
    generator: torch.Generator | None = None,
    *,
    components: Tensor | None = None,
    bounds: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Sample ``n_samples`` inputs top-down: ``(x (n, L0, D0), top components (n, L_top))``.

    ``components`` ``(n, L_top)`` fixes the top layer's components (conditional sampling);
    ``bounds`` ``(low, high)``, each broadcastable to ``(L0, D0)``, clip the generated inputs.
    """
    top, start = stack.top, len(stack.layers) - 1
    if components is None:  # the mixing weights select; top_s and exponent shape controls only
        components = top.sample_components(n_samples, None, generator)
    drawn = top.sample_vectors(
        components, generator, noise_divisor=options.start_divisor, floor_noise=options.floor_noise
    )
    x = _walk_down(stack, drawn, start, options, generator, bounds)
    if options.sharpens_drawn:
        x = sharpen_to_drawn(stack, x, start, components, drawn, options, bounds=bounds)
    return x, components


@torch.no_grad()
def variants(
    stack,
    x: Tensor,
    root: int,
    options: SamplingOptions,
    generator: torch.Generator | None = None,
    *,
    bounds: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Variants of inputs ``x`` ``(n, L0, D0)``: sample down from GMM layer ``root``.

    The responsibilities of ``x`` at layer ``root`` are the top-down control there (method §8,
    "variant generation"), so the variants keep what that layer recognised in ``x``.
    """
    layer = stack.layers[root]
    if not isinstance(layer, GMMLayer):
        raise ValueError(f"Variants start at a GMM layer; layer {root} is {type(layer).__name__}.")
    control = stack(x, upto=root)  # (n, L_root, K_root), every position active
    components = layer.sample_components(
        len(x), control, generator, top_s=options.top_s, exponent=options.exponent
    )
    drawn = layer.sample_vectors(
        components, generator, noise_divisor=options.start_divisor, floor_noise=options.floor_noise
    )
    x = _walk_down(stack, drawn, root, options, generator, bounds)
    if options.sharpens_drawn:
        x = sharpen_to_drawn(stack, x, root, components, drawn, options, bounds=bounds)
    return x


def sharpen(
    stack,
    x0: Tensor,
    start: int,
    target: int,
    options: SamplingOptions,
    *,
    bounds: tuple[Tensor | float, Tensor | float] = (0.0, 1.0),
    free: Tensor | None = None,
) -> Tensor:
    """Raise the annealed log-likelihood of GMM layer ``target`` by moving ``x0`` (method §9).

    ``x0`` is the input of layer ``start``. Per sample, ascend
    ``J(x) = mean_p l_target(F(x)) - w * mean (x - x0)^2`` for ``options.sharpening_steps``
    steps, keeping ``x`` inside ``bounds`` and changing only where ``free`` (broadcastable to
    ``x0``) is true. Steps that would lower a sample's ``J`` are undone and its step size
    halved, so ``J`` never decreases.
    """
    weight = options.reconstruction_weight
    x0 = x0.detach()

    def objective(x: Tensor) -> Tensor:
        h = x
        for layer in stack.layers[start:target]:
            h = layer(h)
        gmm = stack.layers[target]
        j = gmm.annealed_log_likelihood(gmm.log_scores(h)).mean(dim=1)  # (n,)
        return j - weight * (x - x0).pow(2).flatten(1).mean(dim=1)

    return _ascend(objective, x0, options, bounds, free)


def sharpen_to_drawn(
    stack,
    x0: Tensor,
    start: int,
    components: Tensor,
    drawn: Tensor,
    options: SamplingOptions,
    *,
    bounds: tuple[Tensor | float, Tensor | float] | None = None,
) -> Tensor:
    """Move the generated inputs ``x0`` ``(n, L0, D0)`` towards what GMM layer ``start`` drew.

    Per sample, ascend ``J(x) = mean_p l_first(x) - w * mean 0.5 (s_k (h(x) - v))^2`` for
    ``options.sharpening_steps`` steps: ``l_first`` is the annealed log-likelihood of the first
    GMM layer at every position, ``h(x)`` the input of layer ``start``, ``v`` ``(n, L, D)`` the
    vectors ``drawn`` there from ``components`` ``(n, L)`` with precisions ``s_k``, and ``w`` is
    ``options.match_weight``. The input stays inside ``bounds`` (default: unbounded).
    """
    layers = stack.layers
    first = next(i for i, layer in enumerate(layers) if isinstance(layer, GMMLayer))
    _, precision = layers[start].component_parameters(components)
    drawn, weight = drawn.detach(), options.match_weight

    def objective(x: Tensor) -> Tensor:
        j, h = 0.0, x
        for i, layer in enumerate(layers[:start]):
            if i == first:  # raise the likelihood of the patches, pass responsibilities up
                scores = layer.log_scores(h)
                j = layer.annealed_log_likelihood(scores).mean(dim=1)  # (n,)
                h = layer.responsibilities(scores)
            else:
                h = layer(h)
        mismatch = ((h - drawn) * precision).pow(2).flatten(1).mean(dim=1)  # (n,)
        return j - weight * 0.5 * mismatch

    return _ascend(objective, x0.detach(), options, bounds or (-torch.inf, torch.inf), None)


def _ascend(objective, x0: Tensor, options: SamplingOptions, bounds, free) -> Tensor:
    """Per-sample gradient ascent on ``objective(x) -> (n,)`` from ``x0`` (inside ``bounds``).

    Steps that would lower a sample's objective are undone and its step size halved (grown by
    1.25 otherwise), so no sample's objective ever decreases; only ``free`` entries move.
    """
    mask = None if free is None else free.to(x0.dtype).expand_as(x0)

    def value_and_gradient(x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            j = objective(x)
            (grad,) = torch.autograd.grad(j.sum(), x)
        return j.detach(), grad

    x = _clip(x0, bounds) if mask is None else torch.where(mask > 0, _clip(x0, bounds), x0)
    j, grad = value_and_gradient(x)
    shape = (-1,) + (1,) * (x.dim() - 1)  # per-sample scalars broadcast over the sample
    rate = torch.full_like(j, options.sharpening_rate).view(shape)
    for _ in range(options.sharpening_steps):
        step = rate * grad if mask is None else rate * grad * mask
        candidate = _clip(x + step, bounds)
        j_new, grad_new = value_and_gradient(candidate)
        better = j_new >= j  # (n,)
        j = torch.where(better, j_new, j)
        better = better.view(shape)
        x = torch.where(better, candidate, x)
        grad = torch.where(better, grad_new, grad)
        rate = torch.where(better, rate * 1.25, rate * 0.5)
    return x


def _walk_down(
    stack,
    x: Tensor,
    start: int,
    options: SamplingOptions,
    generator: torch.Generator | None,
    bounds: tuple[Tensor, Tensor] | None,
) -> Tensor:
    """Walk the output ``x`` of sampling at layer ``start`` down to the input ``(n, L0, D0)``."""
    layers = stack.layers
    for i in range(start - 1, -1, -1):
        layer = layers[i]
        if isinstance(layer, GMMLayer):
            x = layer.topdown(x, generator, **_gmm_options(options))
        elif isinstance(layer, Pooling):
            x = layer.topdown(x, generator, upsampling=options.upsampling)
        elif isinstance(layer, Folding):
            x = layer.topdown(x, generator)
            if options.sharpening_steps > 0 and not options.sharpens_drawn:
                target = sharpening_target_index(stack, i, options.sharpening_target)
                # Images stay inside the data range, maps of responsibilities inside [0, 1].
                level = (bounds or (-torch.inf, torch.inf)) if i == 0 else (0.0, 1.0)
                x = sharpen(stack, x, i, target, options, bounds=level)
        else:
            raise NotImplementedError(
                f"Top-down sampling through {type(layer).__name__} is not available."
            )
    return x if bounds is None else _clip(x, bounds)


def sharpening_target_index(stack, index: int, target: str) -> int:
    """Index of the GMM layer that sharpens the input of layer ``index``.

    ``"drawn"`` (whose matching needs a drawn vector) sharpens like ``"next"`` here, e.g. when
    in-painting finally sharpens the filled pixels.
    """
    if target == "top":
        return len(stack.layers) - 1
    return next(
        j for j in range(index + 1, len(stack.layers)) if isinstance(stack.layers[j], GMMLayer)
    )


def _gmm_options(options: SamplingOptions) -> dict:
    return {
        "top_s": options.top_s,
        "exponent": options.exponent,
        "noise_divisor": options.noise_divisor,
        "floor_noise": options.floor_noise,
    }


def _clip(x: Tensor, bounds: tuple[Tensor | float, Tensor | float]) -> Tensor:
    """``x`` clipped elementwise into ``[low, high]`` (scalars or broadcastable tensors)."""
    low, high = (torch.as_tensor(b, dtype=x.dtype, device=x.device) for b in bounds)
    return torch.minimum(torch.maximum(x, low), high)


@torch.no_grad()
def prototypes(stack, index: int) -> Tensor:
    """What every component of GMM layer ``index`` stands for, in input space: ``(K, h, w, C)``.

    The first GMM layer on a folding of the input shows its means as patches. A higher layer's
    component ``k`` is rendered by placing its mean at every position of the layer, walking
    down without noise and with the most active component chosen at every lower position, and
    cropping the receptive field ``h x w`` of one position (the whole input for the top layer).
    """
    layers = stack.layers
    layer = layers[index]
    if not isinstance(layer, GMMLayer):
        raise ValueError(f"Layer {index} is a {type(layer).__name__}, not a GMM layer.")
    k = layer.n_components
    h = w = 1
    for lower in reversed(layers[:index]):
        if isinstance(lower, Folding | Pooling):
            size = lower.patch if isinstance(lower, Folding) else lower.kernel
            h, w = (h - 1) * lower.stride[0] + size[0], (w - 1) * lower.stride[1] + size[1]
    height, width, channels = stack.input_shape
    if index == 1 and isinstance(layers[0], Folding):  # means are patches of the input
        means = layer.means  # (P, K, D)
        return means[means.shape[0] // 2].reshape(k, h, w, channels)
    components = torch.arange(k, device=layer.means.device).unsqueeze(1)  # (K, 1)
    components = components.expand(k, layer.n_positions)  # (K, L)
    options = SamplingOptions(top_s=1, noise_divisor=torch.inf, floor_noise=False)
    x = layer.sample_vectors(components, noise_divisor=torch.inf, floor_noise=False)
    images = _walk_down(stack, x, index, options, None, None).view(k, height, width, channels)
    return images[:, : min(h, height), : min(w, width)]
