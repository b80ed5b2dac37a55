"""Folding: patch extraction (the "convolution" of a DCGMM, method §4).

Input ``(N, H*W, C)`` on an ``H x W`` grid; output ``(N, H'*W', pH*pW*C)`` with valid padding,
``H' = (H - pH) // sY + 1`` and ``W' = (W - pW) // sX + 1``. Every patch is flattened row-major
over (patch row, patch column, channel), channel fastest (the reference's order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Folding", "folding_output_shape"]


def folding_output_shape(
    input_shape: tuple[int, int, int], patch: tuple[int, int], stride: tuple[int, int]
) -> tuple[int, int, int]:
    """``(H', W', D')`` of a folding, or ``ValueError`` when the patch does not fit."""
    (h, w, c), (ph, pw), (sy, sx) = input_shape, patch, stride
    if min(ph, pw, sy, sx) < 1:
        raise ValueError(f"Patch size and stride must be >= 1, got patch={patch}, stride={stride}.")
    if ph > h or pw > w:
        raise ValueError(f"Patch {ph}x{pw} is larger than its {h}x{w} input.")
    return ((h - ph) // sy + 1, (w - pw) // sx + 1, ph * pw * c)


class Folding(nn.Module):
    """Extract patches of size ``patch`` every ``stride`` pixels.

    Parameters
    ----------
    input_shape : tuple of int
        ``(H, W, C)``.
    patch : tuple of int
        ``(pH, pW)``.
    stride : tuple of int
        ``(sY, sX)``.
    """

    def __init__(
        self, input_shape: tuple[int, int, int], patch: tuple[int, int], stride: tuple[int, int]
    ) -> None:
        super().__init__()
        self.input_shape = tuple(int(v) for v in input_shape)
        self.patch = tuple(int(v) for v in patch)
        self.stride = tuple(int(v) for v in stride)
        self.output_shape = folding_output_shape(self.input_shape, self.patch, self.stride)

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}, patch={self.patch}, stride={self.stride}"

    def _check(self, x: Tensor, shape: tuple[int, int, int]) -> None:
        expected = (shape[0] * shape[1], shape[2])
        if x.dim() != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"Folding expects shape (N, *{expected}), got {tuple(x.shape)}.")

    def forward(self, x: Tensor) -> Tensor:
        self._check(x, self.input_shape)
        return self._fold(x)

    def _fold(self, x: Tensor) -> Tensor:
        (h, w, c), (ph, pw) = self.input_shape, self.patch
        n = x.shape[0]
        if (ph, pw) == (h, w):  # the whole input is one patch: a reshape
            return x.reshape(n, 1, h * w * c)
        (sy, sx) = self.stride
        # Strided views (no copy) of every patch, then one gather into (N, L, D): faster than
        # F.unfold's im2col, and already in the (patch row, patch column, channel) order.
        patches = x.reshape(n, h, w, c).unfold(1, ph, sy).unfold(2, pw, sx)  # (N,H',W',C,pH,pW)
        return patches.permute(0, 1, 2, 4, 5, 3).reshape(n, -1, ph * pw * c)  # (N, L, D)

    def topdown(self, patches: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Fold patch vectors back into the input grid, averaging where patches overlap.

        ``(n, H'*W', pH*pW*C) -> (n, H*W, C)``; pixels no patch covers are 0.
        """
        self._check(patches, self.output_shape)
        (h, w, c), (ph, pw) = self.input_shape, self.patch
        n = patches.shape[0]
        cols = patches.view(n, -1, ph * pw, c).permute(0, 3, 2, 1)  # (n, C, pH*pW, L)
        cols = cols.reshape(n, c * ph * pw, -1)
        summed = F.fold(cols, (h, w), (ph, pw), stride=self.stride)  # (n, C, H, W)
        ones = torch.ones(1, ph * pw, cols.shape[-1], dtype=cols.dtype, device=cols.device)
        coverage = F.fold(ones, (h, w), (ph, pw), stride=self.stride).clamp_min(1.0)  # (1,1,H,W)
        return (summed / coverage).permute(0, 2, 3, 1).reshape(n, h * w, c)
