"""Pure tensor kernels of the DCGMM engine (torch only).

Tensor letters: N batch, L positions, D vector dimension, K components, P parameter positions
(1 when the parameters are shared over positions, L otherwise).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "grid_shape",
    "log_gaussian_diag",
    "log_gaussian_diag_patches",
    "log_normaliser",
    "smoothing_kernel",
    "toroidal_sq_distances",
]


def log_normaliser(n_features: int) -> float:
    """The constant ``c_D = -D/2 * log(2 pi)`` of a ``D``-dimensional Gaussian."""
    return -0.5 * n_features * math.log(2.0 * math.pi)


def log_gaussian_diag(x: Tensor, means: Tensor, precisions: Tensor, log_weights: Tensor) -> Tensor:
    """Weighted diagonal-Gaussian log-scores without the constant ``c_D``.

    ``out[n, l, k] = log pi_k + sum_d log s_kd - 0.5 * sum_d s_kd^2 (x_nld - mu_kd)^2``, where
    ``s`` are the square roots of the precisions (inverse standard deviations). The quadratic form
    is expanded into matmuls, so the ``(N, L, K, D)`` tensor of differences is never built.

    Parameters
    ----------
    x : Tensor of shape (N, L, D)
    means : Tensor of shape (P, K, D), P in {1, L}
    precisions : Tensor of shape (P, K, D)
        Square roots of the diagonal precisions, strictly positive.
    log_weights : Tensor of shape (P, K)
        Log mixing weights (normalised over K for every position).

    Returns
    -------
    Tensor of shape (N, L, K)
    """
    prec_sq = precisions * precisions  # (P, K, D)
    # Per-component constant: log pi + sum_d log s - 0.5 * sum_d mu^2 s^2.
    const = (
        log_weights + torch.log(precisions).sum(-1) - 0.5 * (means * means * prec_sq).sum(-1)
    )  # (P, K)
    # x^2 @ (-0.5 s^2)^T + x @ (mu s^2)^T + const: two matmuls accumulating into one output
    # (no concatenated [x^2, x] copy, the constant added by the first matmul).
    square, linear = -0.5 * prec_sq, means * prec_sq  # (P, K, D)
    if means.shape[0] == 1:  # shared parameters: big matmuls over all N*L vectors
        flat = x.reshape(-1, x.shape[-1])  # (N*L, D)
        quad = torch.addmm(const, flat * flat, square[0].T)
        quad = torch.addmm(quad, flat, linear[0].T)
        return quad.view(*x.shape[:-1], -1)  # (N, L, K)
    # One GMM per position: batched over L.
    xt = x.transpose(0, 1)  # (L, N, D)
    quad = torch.baddbmm(const.unsqueeze(1), xt * xt, square.transpose(1, 2))
    quad = torch.baddbmm(quad, xt, linear.transpose(1, 2))  # (L, N, K)
    return quad.transpose(0, 1)  # (N, L, K)


def log_gaussian_diag_patches(
    x: Tensor,
    input_shape: tuple[int, int, int],
    patch: tuple[int, int],
    stride: tuple[int, int],
    means: Tensor,
    precisions: Tensor,
    log_weights: Tensor,
) -> Tensor:
    """:func:`log_gaussian_diag` of every patch of ``x``, without extracting the patches.

    Equal to ``log_gaussian_diag(fold(x), ...)`` for a folding with ``patch`` and ``stride``
    (valid padding) followed by a GMM shared over positions, computed as one convolution of
    the map stacked with its square, ``[x^2, x]``, with the ``K`` filters
    ``[-0.5 s^2, mu s^2]``: the ``(N, L, pH * pW * C)`` patch tensor is never built, forward
    or backward.

    Parameters
    ----------
    x : Tensor of shape (N, H * W, C)
    input_shape : (H, W, C)
    patch, stride : (pH, pW), (sY, sX)
    means, precisions : Tensor of shape (1, K, pH * pW * C)
        Patch vectors ordered (patch row, patch column, channel), as :class:`Folding` makes.
    log_weights : Tensor of shape (1, K)

    Returns
    -------
    Tensor of shape (N, L, K), ``L = H' * W'``
    """
    (h, w, c), (ph, pw) = input_shape, patch
    k = means.shape[1]
    prec_sq = precisions[0] * precisions[0]  # (K, D)
    const = (
        log_weights[0] + torch.log(precisions[0]).sum(-1) - 0.5 * (means[0] ** 2 * prec_sq).sum(-1)
    )  # (K,)

    # Map and filters in channels-last memory (channels [x^2, x] and [-0.5 s^2, mu s^2]): the output
    # is then channels-last too, the fastest layout for eager convolution, its gradient and the
    # pooling above, and (N, L, K) in memory. Inside torch.compile, a single-channel map (grey
    # images) is convolved channels-first instead: the fused kernels that follow (max, softmax
    # over K) then vectorise along positions rather than along a short K, about twice as fast on
    # CPUs. With more channels, channels-last stays faster (measured on a 2-core CPU: preset E's
    # second layer, 25 channels, and preset C on RGB images train 1.2-1.7x and 1.4x slower
    # channels-first).
    n = x.shape[0]
    img = torch.cat([x * x, x], dim=-1).view(n, h, w, 2 * c).permute(0, 3, 1, 2)
    filters = torch.cat(
        [(-0.5 * prec_sq).view(k, ph, pw, c), (means[0] * prec_sq).view(k, ph, pw, c)], dim=-1
    ).permute(0, 3, 1, 2)
    if c == 1 and _compiling():
        img, filters = img.contiguous(), filters.contiguous()
    quad = torch.nn.functional.conv2d(img, filters, const, stride=stride)
    return quad.flatten(2).transpose(1, 2)  # (N, L, K)


def _compiling() -> bool:
    """Whether torch.compile is tracing the call (always ``False`` before torch 2.3)."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling is not None and is_compiling())


def grid_shape(n_components: int) -> tuple[int, int]:
    """The most square ``rows x cols`` grid with ``rows * cols == n_components`` (rows <= cols)."""
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}.")
    rows = math.isqrt(n_components)
    while n_components % rows:
        rows -= 1
    return rows, n_components // rows


def toroidal_sq_distances(n_components: int) -> Tensor:
    """Squared distances ``(K, K)`` between components laid row-major on a torus grid."""
    rows, cols = grid_shape(n_components)
    k = torch.arange(n_components)
    r, c = k // cols, k % cols  # (K,)
    dr = (r[:, None] - r[None, :]).abs()
    dc = (c[:, None] - c[None, :]).abs()
    dr = torch.minimum(dr, rows - dr)  # periodic boundaries
    dc = torch.minimum(dc, cols - dc)
    return (dr * dr + dc * dc).to(torch.float64)  # (K, K)


def smoothing_kernel(sq_distances: Tensor, sigma: float) -> Tensor:
    """Row-normalised Gaussian neighbourhood ``G(sigma)`` over the component grid.

    ``G_kj = exp(-d2_kj / (2 sigma^2)) / sum_j' exp(-d2_kj' / (2 sigma^2))``, computed as a
    softmax so it stays exact (the identity) at tiny ``sigma``.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}.")
    kernel = torch.softmax(-sq_distances / (2.0 * sigma * sigma), dim=1)
    # Weights below 1e-20 are set to 0 (rows renormalised; a change of at most K * 1e-20):
    # while sigma shrinks they would pass through denormal floats, whose arithmetic makes the
    # smoothing matmul and every gradient computed from it several times slower on CPUs.
    kernel = torch.where(kernel < _KERNEL_FLOOR, torch.zeros_like(kernel), kernel)
    return kernel / kernel.sum(dim=1, keepdim=True)


#: Smallest smoothing weight kept (far above the float32 denormal range, ~1e-38).
_KERNEL_FLOOR = 1e-20
