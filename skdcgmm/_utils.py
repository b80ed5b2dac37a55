"""Device resolution, numpy <-> torch conversion, random streams and CPU memory-allocator tuning."""

from __future__ import annotations

import ctypes
import functools
import os
import sys

import numpy as np
import torch

__all__ = [
    "MAX_SEED",
    "caller_stacklevel",
    "draw_generator",
    "resolve_device",
    "retain_freed_memory",
    "to_tensor",
]

#: Seeds are drawn below this bound (what ``RandomState.randint`` accepts on every platform).
MAX_SEED = 2**31 - 1

#: Folder of this package: frames from its files are skipped by :func:`caller_stacklevel`.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: glibc ``mallopt`` parameters and the values :func:`retain_freed_memory` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 2**20  # glibc's own ceiling for its dynamic threshold
_TRIM_THRESHOLD = 256 * 2**20
#: Environment variables by which a user tunes glibc's malloc (we then leave it alone).
_USER_MALLOC_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


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


def draw_generator(seeds: dict, n_calls: dict, kind: str, device) -> torch.Generator:
    """The generator of the next ``kind`` call of a fitted estimator; counts it in ``n_calls``.

    ``seeds[kind]`` is drawn once per fit from its ``random_state``; every later call of the
    same kind (continued fits, sampling) gets a new, reproducible stream.
    """
    seed = (seeds[kind] + 7919 * n_calls[kind]) % MAX_SEED
    n_calls[kind] += 1
    return torch.Generator(device=device).manual_seed(seed)


@functools.cache
def retain_freed_memory() -> bool:
    """Let glibc's ``malloc`` keep freed blocks of up to 32 MiB for reuse (once per process).

    A CPU training step allocates and frees tensors of a few MiB. By default glibc serves
    them with fresh ``mmap`` pages or hands freed heap memory back to the system soon after,
    so every step pays page faults to zero new memory: measured on a 2-core machine, preset C
    trained at 7.2k images/s in a fresh process and at 11.5k once the allocator kept its
    memory. Setting ``M_MMAP_THRESHOLD`` to 32 MiB and ``M_TRIM_THRESHOLD`` to 256 MiB keeps
    freed memory in the heap for the next step (PyTorch's CPU tuning guide recommends
    jemalloc or tcmalloc for the same reason).

    Linux with glibc only, and not when the user configured malloc through its environment
    variables or sets ``SKDCGMM_TUNE_MALLOC=0``. Returns whether the setting was applied.
    """
    if not sys.platform.startswith("linux") or os.environ.get("SKDCGMM_TUNE_MALLOC") == "0":
        return False
    if any(name in os.environ for name in _USER_MALLOC_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


def caller_stacklevel() -> int:
    """``stacklevel`` for a warning raised by the calling function: the first frame outside
    this package, whatever the call path (``fit``, ``partial_fit``, the outlier detector).
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level
