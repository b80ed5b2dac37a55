"""Pooling over the positions of a GMM layer's responsibilities (method §5).

Windows may hang over the border (``ceil_mode``); out-of-grid entries are ignored. Outputs are
not renormalised. Top-down, every input position receives the value of the pooled cell it
belongs to (dense nearest-neighbour upsampling).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Pooling", "pooled_size", "pooling_output_shape"]


def pooled_size(size: int, kernel: int, stride: int) -> int:
    """Output length of a ``ceil_mode`` pooling (PyTorch's rule: the last window starts inside)."""
    if kernel < 1 or stride < 1:
        raise ValueError(f"Pooling kernel and stride must be >= 1, got {kernel} and {stride}.")
    if kernel > size:
        raise ValueError(f"Pooling kernel {kernel} is larger than its input size {size}.")
    out = math.ceil((size - kernel) / stride) + 1
    if (out - 1) * stride >= size:
        out -= 1
    return out


def pooling_output_shape(
    input_shape: tuple[int, int, int], kernel: tuple[int, int], stride: tuple[int, int]
) -> tuple[int, int, int]:
    """``(H', W', K)`` of a ``ceil_mode`` pooling of a ``(H, W, K)`` map."""
    h, w, k = input_shape
    return (pooled_size(h, kernel[0], stride[0]), pooled_size(w, kernel[1], stride[1]), k)


class Pooling(nn.Module):
    """Max or average pooling of ``(N, H*W, K)`` maps.

    Parameters
    ----------
    input_shape : tuple of int
        ``(H, W, K)``.
    kernel, stride : tuple of int
        Window size and step ``(kY, kX)``, ``(sY, sX)``.
    mode : {"max", "avg"}
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        kernel: tuple[int, int],
        stride: tuple[int, int],
        mode: str = "max",
    ) -> None:
        super().__init__()
        if mode not in ("max", "avg"):
            raise ValueError(f"Pooling mode must be 'max' or 'avg', got {mode!r}.")
        self.input_shape = tuple(int(v) for v in input_shape)
        self.kernel = tuple(int(v) for v in kernel)
        self.stride = tuple(int(v) for v in stride)
        self.mode = mode
        self.output_shape = pooling_output_shape(self.input_shape, self.kernel, self.stride)

    def extra_repr(self) -> str:
        shapes = f"input_shape={self.input_shape}, kernel={self.kernel}, stride={self.stride}"
        return f"{shapes}, {self.mode}"

    def forward(self, x: Tensor) -> Tensor:
        h, w, k = self.input_shape
        if x.dim() != 3 or tuple(x.shape[1:]) != (h * w, k):
            raise ValueError(f"Pooling expects shape (N, {h * w}, {k}), got {tuple(x.shape)}.")
        # (N, K, H, W) as a view of x (channels-last memory when x is contiguous, the fast
        # layout for pooling); the output is returned as an (N, H'*W', K) view, no copy.
        img = x.transpose(1, 2).reshape(x.shape[0], k, h, w)
        if self.mode == "max":
            out = F.max_pool2d(img, self.kernel, self.stride, ceil_mode=True)
        else:
            out = F.avg_pool2d(img, self.kernel, self.stride, ceil_mode=True)
        return out.flatten(2).transpose(1, 2)  # (N, H'*W', K)

    def topdown(
        self, x: Tensor, generator: torch.Generator | None = None, *, upsampling: str = "dense"
    ) -> Tensor:
        """Upsample ``(n, H'*W', K) -> (n, H*W, K)``: positions take their cell's value (§5).

        ``"dense"`` copies the value to every position of the cell; ``"sparse"`` copies it to
        one randomly chosen position per cell and its negation to the others, which the GMM
        layer below reads as "do not sample here".
        """
        (h, w, k), (ho, wo, _) = self.input_shape, self.output_shape
        n = x.shape[0]
        rows = torch.clamp(torch.arange(h, device=x.device) // self.stride[0], max=ho - 1)
        cols = torch.clamp(torch.arange(w, device=x.device) // self.stride[1], max=wo - 1)
        dense = x.view(n, ho, wo, k)[:, rows][:, :, cols].reshape(n, h * w, k)  # (n, H*W, K)
        if upsampling == "dense":
            return dense
        if upsampling != "sparse":
            raise ValueError(f"upsampling must be 'dense' or 'sparse', got {upsampling!r}.")
        cell = (rows[:, None] * wo + cols[None, :]).reshape(1, h * w).expand(n, -1)  # (n, H*W)
        u = torch.rand(n, h * w, generator=generator, device=x.device)  # (n, H*W)
        best = torch.full((n, ho * wo), -1.0, device=x.device).scatter_reduce(
            1, cell, u, reduce="amax"
        )  # (n, H'*W'): the largest draw of every cell picks its position
        sign = torch.where(u == best.gather(1, cell), 1.0, -1.0).to(dense.dtype)  # (n, H*W)
        return dense * sign.unsqueeze(-1)
