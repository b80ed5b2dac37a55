"""Device resolution and numpy <-> torch conversion for the estimator."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["resolve_device", "to_tensor"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise check the named device exists."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<i>', got {device!r}."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but CUDA is not available.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but only {torch.cuda.device_count()} CUDA "
                "device(s) exist."
            )
    elif resolved.type != "cpu":
        raise ValueError(f"device must be a CPU or CUDA device, got {device!r}.")
    return resolved


def to_tensor(X: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Copy ``X`` into a new tensor on ``device`` (never shares memory with the caller's array)."""
    return torch.tensor(np.asarray(X), dtype=dtype, device=device)
