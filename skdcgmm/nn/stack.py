"""A stack of DCGMM layers: forward with detached inputs per layer, and top-down sampling.

Layers communicate in one layout, ``(N, L, D)`` with ``L = H * W`` positions, and every layer
knows its ``input_shape`` and ``output_shape`` ``(H, W, D)`` from construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .folding import Folding
from .gmm import GMMLayer
from .sampling import SamplingOptions, generate

__all__ = ["DCGMMStack"]


def _fusable(layer: nn.Module, following: nn.Module | None) -> bool:
    """Whether ``layer`` is a Folding into a shared GMM, which scores its patches directly.

    Whole-map foldings are a plain reshape already and stay as they are.
    """
    return (
        isinstance(layer, Folding)
        and isinstance(following, GMMLayer)
        and following.shared
        and layer.patch != tuple(layer.input_shape[:2])
    )


class DCGMMStack(nn.Module):
    """Layers applied in order; each GMM layer trains on its own loss (method §7).

    Parameters
    ----------
    layers : sequence of nn.Module
        Layers with matching shapes: ``layers[i].output_shape == layers[i + 1].input_shape``.
        The last layer must be a :class:`GMMLayer`.
    """

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        if not layers:
            raise ValueError("A DCGMMStack needs at least one layer.")
        for lower, upper in zip(layers[:-1], layers[1:]):
            if tuple(lower.output_shape) != tuple(upper.input_shape):
                raise ValueError(
                    f"Layer shapes do not chain: {type(lower).__name__} outputs "
                    f"{lower.output_shape} but {type(upper).__name__} expects {upper.input_shape}."
                )
        if not isinstance(layers[-1], GMMLayer):
            raise ValueError(f"The top layer must be a GMMLayer, got {type(layers[-1]).__name__}.")
        self.layers = nn.ModuleList(layers)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.layers[0].input_shape)

    @property
    def gmm_layers(self) -> list[GMMLayer]:
        return [layer for layer in self.layers if isinstance(layer, GMMLayer)]

    @property
    def is_deep(self) -> bool:
        """Whether the stack has more than one GMM layer (``False``: a flat mixture)."""
        return len(self.gmm_layers) > 1

    @property
    def top(self) -> GMMLayer:
        return self.layers[-1]

    def forward(self, x: Tensor, upto: int | None = None) -> Tensor:
        """Output of layer ``upto`` (default: the top layer) for input ``(N, L0, D0)``."""
        stop = len(self.layers) if upto is None else upto % len(self.layers) + 1
        for layer in self.layers[:stop]:
            x = layer(x)
        return x

    def training_losses(self, x: Tensor) -> list[Tensor]:
        """Annealed loss of every GMM layer, each computed on a detached input (method §7).

        The responsibilities passed upward come from the same log-scores as the loss, so every
        layer costs one log-score evaluation per step.
        """
        losses, folding = [], None
        layers = list(self.layers)
        for layer, following in zip(layers, [*layers[1:], None]):
            if _fusable(layer, following):
                folding = layer  # the next GMM layer scores this folding's patches itself
                continue
            x = x.detach()
            if isinstance(layer, GMMLayer):
                if folding is None:
                    scores = layer.log_scores(x)  # (N, L, K)
                else:  # by convolution of the map: no (N, L, pH*pW*C) patch tensor
                    scores, folding = layer.log_scores_of_patches(x, folding), None
                loss, x = layer.training_outputs(
                    scores, with_responsibilities=following is not None
                )
                losses.append(loss)
            else:
                x = layer(x)
        return losses

    @torch.no_grad()
    def diverged_layers(self, low: float, high: float, margin: float = 10.0) -> list[int]:
        """Indices of GMM layers whose means ran away from their inputs' range.

        SGD steps that overshoot (too large a learning rate) make means oscillate with growing
        amplitude. The first GMM layer sees inputs in ``[low, high]`` (folding keeps values),
        higher ones responsibilities in ``[0, 1]``; a mean further than ``margin`` spans
        outside that range (widened by the initial means) has diverged.
        """
        bad, first = [], True
        for i, layer in enumerate(self.layers):
            if isinstance(layer, GMMLayer):
                lo, hi = (low, high) if first else (0.0, 1.0)
                first = False
                init = float(layer.mu_init)
                lo, hi = min(lo, -init), max(hi, init)
                span = hi - lo
                means = layer.means
                if (means < lo - margin * span).any() or (means > hi + margin * span).any():
                    bad.append(i)
        return bad

    def top_input(self, x: Tensor) -> Tensor:
        """The input of the top GMM layer for input ``x``."""
        for layer in self.layers[:-1]:
            x = layer(x)
        return x

    def log_likelihood(self, x: Tensor) -> Tensor:
        """Exact top-layer log-likelihood, averaged over its positions: ``(N,)``."""
        return self.top.log_likelihood(self.top_input(x)).mean(dim=1)

    def sample(
        self,
        n_samples: int,
        generator: torch.Generator | None = None,
        components: Tensor | None = None,
        options: SamplingOptions | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n_samples`` top-down: ``(x (n, L0, D0), top components (n, L_top))``.

        ``components`` ``(n, L_top)`` fixes the top-layer components (conditional sampling);
        ``options`` configure selection, noise and sharpening (see :mod:`.sampling`).
        """
        options = SamplingOptions() if options is None else options
        return generate(self, n_samples, options, generator, components=components)
