"""The GMM layer: a diagonal Gaussian mixture over the vectors at every position of its input.

Parameters are shared over positions (convolutional mode, P = 1) or private to each position
(P = L). The layer is trained by SGD on the annealed max-component log-likelihood
(method §2.3–2.9); its output to the next layer is the responsibilities (§2.4).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .functional import (
    log_gaussian_diag,
    log_gaussian_diag_patches,
    log_normaliser,
    smoothing_kernel,
    toroidal_sq_distances,
)

__all__ = ["GMMLayer", "training_responsibilities"]

#: Means closer to 0 than this are set to 0 by :meth:`GMMLayer.project_`.
_MEAN_FLOOR = 1e-20
#: Training responsibilities below this are 0, and the log-score gap below the maximum that
#: is floored (exp(-35) = 6.3e-16).
_RESPONSIBILITY_FLOOR = 1e-15
_RESPONSIBILITY_LOG_FLOOR = 35.0


class GMMLayer(nn.Module):
    """Diagonal GMM over the ``D``-vectors at ``L = H * W`` positions.

    Parameters
    ----------
    input_shape : tuple of int
        ``(H, W, D)``: positions on a ``H x W`` grid, each holding a ``D``-vector.
    n_components : int
        Number of components ``K``, laid out on the most square torus grid for annealing.
    shared : bool, default=True
        Share the parameters over all positions (convolutional mode); otherwise one GMM per
        position.
    mu_init : float, default=0.1
        Means start uniform in ``[-mu_init, mu_init]``.
    min_variance : float, default=0.05
        Hard lower bound of every variance. Precisions start at its inverse (method §2.9).
    max_variance : float, default=1e6
        Upper bound of every variance (keeps precisions positive, so no log of zero).
    sigma0 : float or None, default=None
        Initial annealing radius; ``None`` gives ``0.25 * sqrt(2 K)`` (method §2.2).
    lr_factors : tuple of float, default=(1.0, 0.1, 0.2)
        Learning-rate factors (lambda) for means, precisions and mixing logits (method §2.8).
    generator : torch.Generator or None
        Random source for the initial means.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        n_components: int,
        *,
        shared: bool = True,
        mu_init: float = 0.1,
        min_variance: float = 0.05,
        max_variance: float = 1e6,
        sigma0: float | None = None,
        lr_factors: tuple[float, float, float] = (1.0, 0.1, 0.2),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        height, width, dim = (int(v) for v in input_shape)
        if min(height, width, dim) < 1:
            raise ValueError(f"input_shape must be positive, got {tuple(input_shape)}.")
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}.")
        if not 0 < min_variance < max_variance:
            raise ValueError(
                f"Need 0 < min_variance < max_variance, got {min_variance} and {max_variance}."
            )
        self.input_shape = (height, width, dim)
        self.n_components = int(n_components)
        self.shared = bool(shared)
        self.lr_factors = tuple(float(f) for f in lr_factors)
        self.mu_init = float(mu_init)
        self.precision_max = 1.0 / math.sqrt(min_variance)
        self.precision_min = 1.0 / math.sqrt(max_variance)
        self.sigma0 = 0.25 * math.sqrt(2 * n_components) if sigma0 is None else float(sigma0)

        n_pos = 1 if shared else height * width
        k = self.n_components
        means = (torch.rand(n_pos, k, dim, generator=generator) * 2.0 - 1.0) * mu_init
        self.means = nn.Parameter(means)  # (P, K, D)
        self.precisions = nn.Parameter(torch.full((n_pos, k, dim), self.precision_max))  # (P, K, D)
        self.logits = nn.Parameter(torch.zeros(n_pos, k))  # (P, K)
        self.register_buffer("sq_distances", toroidal_sq_distances(k).float())  # (K, K)
        self.register_buffer("sigma", torch.tensor(self.sigma0))
        self.register_buffer("kernel", smoothing_kernel(self.sq_distances, self.sigma0))  # (K, K)
        # Host-side mirror of the sigma buffer, so that set_sigma never reads the device, and
        # whether G(sigma) is the identity: a bool, which torch.compile guards on as such (a
        # float read inside a compiled region would recompile it at every new sigma).
        self._sigma_host: float | None = self.sigma0
        self._kernel_identity = _is_identity(self.sigma0)
        self.register_load_state_dict_post_hook(_forget_sigma_host)

    # ------------------------------------------------------------------ geometry
    @property
    def n_positions(self) -> int:
        return self.input_shape[0] * self.input_shape[1]

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (self.input_shape[0], self.input_shape[1], self.n_components)

    def extra_repr(self) -> str:
        mode = "shared" if self.shared else "per-position"
        return f"input_shape={self.input_shape}, n_components={self.n_components}, {mode}"

    # ------------------------------------------------------------------ parameters
    def log_weights(self) -> Tensor:
        """Log mixing weights ``(P, K)``, normalised over K at every position."""
        return torch.log_softmax(self.logits, dim=-1)

    def set_sigma(self, sigma: float) -> None:
        """Set the annealing radius and rebuild the smoothing kernel ``G(sigma)``."""
        sigma = float(sigma)
        if self._sigma_host is None:  # after loading a state dict: read the buffer once
            self._sigma_host = float(self.sigma)
        if sigma != self._sigma_host:
            self.sigma.fill_(sigma)
            self.kernel.copy_(smoothing_kernel(self.sq_distances, sigma))
            self._sigma_host = sigma
        self._kernel_identity = _is_identity(self._sigma_host)

    @property
    def kernel_is_identity(self) -> bool:
        """Whether ``G(sigma)`` is the identity: neighbours at grid distance 1 get weight
        ``exp(-1 / (2 sigma^2)) <= exp(-110)``, below the smallest float32 (0 exactly).

        ``False`` from loading a state dict until the next :meth:`set_sigma` (the smoothing
        matmul with the loaded kernel is then computed, which is exact either way)."""
        return self._kernel_identity

    def param_groups(self, learning_rate: float) -> list[dict]:
        """Optimiser parameter groups with the per-parameter learning-rate factors.

        In per-position mode the rate is multiplied by ``L``, so each position's GMM gets its own
        batch-mean gradient (method §2.8).
        """
        mult = 1.0 if self.shared else float(self.n_positions)
        params = (self.means, self.precisions, self.logits)
        return [
            {"params": [p], "lr": learning_rate * f * mult, "factor": f * mult}
            for p, f in zip(params, self.lr_factors)
        ]

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp the precisions into their bounds after an update (method §2.9).

        Means within 1e-20 of 0 are set to 0: means of layers above the first decay
        geometrically towards the zeros of the responsibilities they model and would otherwise
        reach float32 denormals, whose arithmetic is 10-30 times slower on CPUs.
        """
        self.precisions.clamp_(self.precision_min, self.precision_max)
        self.means.masked_fill_(self.means.abs() < _MEAN_FLOOR, 0.0)

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: Tensor) -> None:
        expected = (self.n_positions, self.input_shape[2])
        if x.dim() != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"GMMLayer expects input of shape (N, {expected[0]}, {expected[1]}), "
                f"got {tuple(x.shape)}."
            )

    def log_scores(self, x: Tensor) -> Tensor:
        """``log pi_k + log N(x | mu_k, s_k^-2)`` without ``c_D``: ``(N, L, D) -> (N, L, K)``."""
        self._check_input(x)
        return self._log_scores(x)

    def _log_scores(self, x: Tensor) -> Tensor:
        return log_gaussian_diag(x, self.means, self.precisions, self.log_weights())

    def log_scores_of_patches(self, x: Tensor, folding) -> Tensor:
        """``log_scores(folding(x))`` of a shared layer, by convolution (no patch tensor)."""
        if not self.shared:
            raise ValueError("log_scores_of_patches needs parameters shared over positions.")
        return log_gaussian_diag_patches(
            x, folding.input_shape, folding.patch, folding.stride,
            self.means, self.precisions, self.log_weights(),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """Responsibilities ``(N, L, K)``: the posterior over components at every position."""
        return self.responsibilities(self.log_scores(x))

    @staticmethod
    def responsibilities(log_scores: Tensor) -> Tensor:
        """Posterior over components from log-scores: ``softmax`` over K (method §2.4)."""
        if log_scores.dtype == torch.float64:
            # Written out: torch's float64 softmax over a short last axis (K = 25) is up to
            # 2x slower on CPUs (inference runs in float64 there); its float32 one is faster.
            resp = (log_scores - log_scores.amax(dim=-1, keepdim=True)).exp()
            return resp / resp.sum(dim=-1, keepdim=True)
        return torch.softmax(log_scores, dim=-1)

    def annealed_loss(self, log_scores: Tensor) -> Tensor:
        """Mean annealed max-component log-likelihood (method §2.5), to be maximised.

        ``mean_{n,l} max_k sum_j G_kj log_score[n, l, j] + c_D``.
        """
        return self.annealed_log_likelihood(log_scores).mean()

    def annealed_log_likelihood(self, log_scores: Tensor) -> Tensor:
        """Annealed max-component log-likelihood at every sample and position: ``(N, L)``."""
        return self._annealed_max(log_scores) + log_normaliser(self.input_shape[2])  # (N, L)

    def _annealed_max(self, log_scores: Tensor) -> Tensor:
        """``max_k sum_j G_kj log_score[..., j]``: ``(N, L, K) -> (N, L)``."""
        # Once annealed, G is the identity: skip its matmul (and that of its gradient).
        smoothed = log_scores if self.kernel_is_identity else log_scores @ self.kernel.T
        # max with indices: its gradient is a scatter at the winners, about twice as fast as
        # amax's (which compares every entry with the max to share the gradient among ties).
        return smoothed.max(dim=-1).values

    def training_outputs(
        self, log_scores: Tensor, with_responsibilities: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """The annealed loss (for autograd) and the detached responsibilities for the layer above.

        Both come from the same log-scores, and once annealing has ended they share one max
        over K. The responsibilities are those of :meth:`responsibilities` except that values
        below 1e-15 are exactly 0 (see :func:`training_responsibilities`).
        """
        best = self._annealed_max(log_scores)  # (N, L)
        loss = best.mean() + log_normaliser(self.input_shape[2])
        if not with_responsibilities:  # the top layer: nothing above reads them
            return loss, None
        peak = best if self.kernel_is_identity else None
        return loss, training_responsibilities(log_scores, peak)  # detached there

    def log_likelihood(self, x: Tensor) -> Tensor:
        """Exact log-likelihood ``log sum_k pi_k N(x | mu_k, .)`` per position: ``(N, L)``."""
        return torch.logsumexp(self.log_scores(x), dim=-1) + log_normaliser(self.input_shape[2])

    # ------------------------------------------------------------------ sampling
    def sample_components(
        self,
        n_samples: int,
        control: Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        top_s: int | None = None,
        exponent: float = 1.0,
    ) -> Tensor:
        """Draw one component per sample and position: ``(n, L)`` ints (method §8).

        Selection probabilities are the mixing weights, or ``control`` ``(n, L, K)`` where given
        (e.g. top-down responsibilities; values are clipped to ``[1e-6, inf)``), raised to
        ``exponent``; with ``top_s``, only the ``top_s`` largest entries of every position can be
        drawn (ties keep more).
        """
        n_pos, k = self.n_positions, self.n_components
        if control is None:
            probs = self.log_weights().exp().expand(n_pos, k)  # (L, K)
            probs = probs.unsqueeze(0).expand(n_samples, n_pos, k)  # (n, L, K)
        else:
            if tuple(control.shape) != (n_samples, n_pos, k):
                raise ValueError(
                    f"control must have shape {(n_samples, n_pos, k)}, got {tuple(control.shape)}."
                )
            probs = control.clamp_min(1e-6)
        if exponent != 1.0:
            probs = probs**exponent
        if top_s is not None and top_s < k:
            kth = probs.topk(top_s, dim=-1).values[..., -1:]  # (n, L, 1)
            probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
        flat = torch.multinomial(probs.reshape(-1, k), 1, generator=generator)  # (n*L, 1)
        return flat.view(n_samples, n_pos)

    def component_parameters(self, components: Tensor) -> tuple[Tensor, Tensor]:
        """Means and precisions of the given components ``(n, L)``: ``(n, L, D)`` each."""
        n, n_pos = components.shape
        pos = (
            torch.zeros_like(components)
            if self.shared
            else torch.arange(n_pos, device=components.device).expand(n, n_pos)
        )
        return self.means[pos, components], self.precisions[pos, components]

    def sample_vectors(
        self,
        components: Tensor,
        generator: torch.Generator | None = None,
        *,
        noise_divisor: float = 1.0,
        floor_noise: bool = True,
    ) -> Tensor:
        """Draw ``x ~ N(mu_k, diag(s_k^-2) / noise_divisor^2)`` for components ``(n, L)``.

        With ``floor_noise=False``, dimensions whose variance sits on the ``min_variance`` floor
        (never learned, e.g. constant background pixels) are drawn without noise, as in the
        reference sampler. Returns ``(n, L, D)``.
        """
        mu, precision = self.component_parameters(components)  # (n, L, D) each
        std = 1.0 / (precision * noise_divisor)
        if not floor_noise:
            std = torch.where(precision >= self.precision_max * (1 - 1e-6), 0.0, std)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + std * noise

    def topdown(
        self,
        control: Tensor,
        generator: torch.Generator | None = None,
        *,
        top_s: int | None = None,
        exponent: float = 1.0,
        noise_divisor: float = 1.0,
        floor_noise: bool = True,
    ) -> Tensor:
        """Sample this layer's input from a top-down control ``(n, L, K)`` (method §8).

        The control (e.g. responsibilities folded back from the layer above) selects one
        component per position, whose Gaussian is then sampled: ``(n, L, K) -> (n, L, D)``.
        Positions whose control sums to at most 0 (the "do not sample here" marker of sparse
        upsampling) are set to 0.
        """
        components = self.sample_components(
            control.shape[0], control, generator, top_s=top_s, exponent=exponent
        )
        x = self.sample_vectors(
            components, generator, noise_divisor=noise_divisor, floor_noise=floor_noise
        )
        active = control.sum(dim=-1, keepdim=True) > 0  # (n, L, 1)
        return torch.where(active, x, torch.zeros_like(x))


def training_responsibilities(scores: Tensor, peak: Tensor | None = None) -> Tensor:
    """Softmax over K of ``scores`` ``(N, L, K)`` with every value below ~1e-15 exactly 0.

    Scores more than 35 below their position's maximum ``peak`` ``(N, L)`` (computed when not
    given) are raised to that floor before the softmax, and their responsibility (at most
    1e-15) is then set to 0. Float32 denormals (below 1.2e-38) make CPU arithmetic 10-30
    times slower; the floor keeps them out of the softmax and out of the layer above, which
    squares these values (1e-15 squared is still a normal float, 1e-20 squared is not).
    ``torch.set_flush_denormal`` is no substitute: it reaches only the calling thread, not
    torch's worker threads. The result is detached from ``scores`` (the layer above trains on
    detached inputs).
    """
    scores = scores.detach()
    peak = scores.amax(dim=-1) if peak is None else peak.detach()
    resp = _floored_softmax(scores, peak, written_out=scores.device.type == "cpu")
    return torch.nn.functional.threshold(resp, _RESPONSIBILITY_FLOOR, 0.0, inplace=True)


def _floored_softmax(scores: Tensor, peak: Tensor, *, written_out: bool) -> Tensor:
    """Softmax over K of ``max(scores, peak - 35)``, two ways with the same result.

    Written out, in place on one buffer (the CPU's way: 1.4x faster on a 2-core CPU than
    ``torch.maximum`` followed by ``torch.softmax`` over a short last axis, K = 25), or as
    ``torch.softmax``, one fused kernel on GPUs.
    """
    if written_out:
        resp = (scores - peak.unsqueeze(-1)).clamp_min_(-_RESPONSIBILITY_LOG_FLOOR).exp_()
        return resp.div_(resp.sum(dim=-1, keepdim=True))
    floored = torch.maximum(scores, (peak - _RESPONSIBILITY_LOG_FLOOR).unsqueeze(-1))
    return torch.softmax(floored, dim=-1)


def _is_identity(sigma: float) -> bool:
    """Whether ``G(sigma)`` is the identity (see :attr:`GMMLayer.kernel_is_identity`)."""
    return 2.0 * 110.0 * sigma**2 <= 1.0


def _forget_sigma_host(module: GMMLayer, incompatible_keys) -> None:
    module._sigma_host = None  # the loaded sigma buffer may differ from the mirror
    module._kernel_identity = False
