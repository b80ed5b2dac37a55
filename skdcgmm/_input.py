"""Input validation and the engine's layout of images: rows in, ``(N, L0, D0)`` tensors out.

Functions shared by the estimator's fitting, inference and sampling faces: ``X`` validated into
rows with an image shape ``(H, W, C)``, the per-feature range of the data, layer indices, and
the sizes that bound memory.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np
import torch
from sklearn.utils.validation import validate_data

__all__ = [
    "as_hwc",
    "check_layer_index",
    "column_range",
    "largest_activation",
    "positions",
    "to_rows",
    "validate_images",
]


def validate_images(
    estimator, X, *, reset: bool, allow_nan: bool = False
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Validate ``X`` as rows for ``estimator``; return them with the image shape ``(H, W, C)``.

    ``reset=True`` (fitting) sets ``n_features_in_`` and reads the image shape from
    ``estimator.image_shape`` or ``X``; otherwise ``X`` must match the fitted
    ``image_shape_``. A ``np.memmap`` keeps its dtype and is not copied: callers convert it
    chunk by chunk.
    """
    nd_shape = None
    dtype = "numeric" if isinstance(X, np.memmap) else [np.float64, np.float32]
    if not hasattr(X, "ndim"):  # nested lists of images (sparse matrices have ndim)
        X = np.asarray(X)
    ndim = X.ndim
    if ndim > 4:
        raise ValueError(
            "X must be 2-D (n_samples, n_features) or hold images (n_samples, H, W[, C]), "
            f"got a {ndim}-D array of shape {tuple(X.shape)}."
        )
    if ndim in (3, 4) and hasattr(X, "reshape"):
        nd_shape = tuple(int(v) for v in X.shape[1:])
        X = X.reshape(X.shape[0], math.prod(nd_shape))  # not -1: X may hold 0 images
    finite = "allow-nan" if allow_nan else True
    X = validate_data(estimator, X, dtype=dtype, reset=reset, ensure_all_finite=finite)
    n_features = X.shape[1]
    if not reset:
        image_shape = estimator.image_shape_
        if nd_shape is not None and as_hwc(nd_shape) != image_shape:
            raise ValueError(
                f"X has images of shape {nd_shape}, but {type(estimator).__name__} was fitted "
                f"on images of shape {image_shape}."
            )
        return X, image_shape
    if estimator.image_shape is not None:
        image_shape = as_hwc(estimator.image_shape, "image_shape")
        if nd_shape is not None and as_hwc(nd_shape) != image_shape:
            raise ValueError(
                f"image_shape={estimator.image_shape} does not match X's images of shape "
                f"{nd_shape}."
            )
    elif nd_shape is not None:
        image_shape = as_hwc(nd_shape)
    else:
        side = math.isqrt(n_features)
        image_shape = (side, side, 1) if side * side == n_features else (1, 1, n_features)
    if math.prod(image_shape) != n_features:
        raise ValueError(
            f"image_shape={estimator.image_shape} has {math.prod(image_shape)} pixel values but X "
            f"has {n_features} features."
        )
    return X, image_shape


def as_hwc(shape, name: str = "image shape") -> tuple[int, int, int]:
    """``(H, W)`` or ``(H, W, C)`` -> ``(H, W, C)``, validated."""
    shape = tuple(shape)
    if len(shape) not in (2, 3) or not all(
        isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in shape
    ):
        raise ValueError(f"{name} must be (H, W) or (H, W, C) with positive ints, got {shape!r}.")
    return tuple(int(v) for v in shape) + ((1,) if len(shape) == 2 else ())


def column_range(X: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature minimum and maximum as float64, read in chunks (memory maps stay on disk)."""
    low = np.full(X.shape[1], np.inf)
    high = np.full(X.shape[1], -np.inf)
    for start in range(0, X.shape[0], chunk):
        rows = X[start : start + chunk]
        low = np.minimum(low, rows.min(axis=0))
        high = np.maximum(high, rows.max(axis=0))
    return low, high


def to_rows(x: torch.Tensor) -> np.ndarray:
    """Engine images ``(n, L0, D0)`` as float64 numpy rows ``(n, L0 * D0)``."""
    return x.detach().reshape(x.shape[0], -1).double().cpu().numpy()


def largest_activation(image_shape: tuple[int, int, int], stack) -> int:
    """Values per image of the largest tensor passed between the stack's layers."""
    return max([math.prod(image_shape)] + [math.prod(m.output_shape) for m in stack.layers])


def positions(image_shape: tuple[int, int, int]) -> tuple[int, int]:
    """The engine's layout of an image: ``(L, D) = (H * W, C)``."""
    return (image_shape[0] * image_shape[1], image_shape[2])


def check_layer_index(index: int, n_layers: int, name: str = "transform_layer") -> int:
    """``index`` into a stack of ``n_layers`` layers, checked and made non-negative."""
    if not isinstance(index, Integral) or isinstance(index, bool):
        raise TypeError(f"{name} must be an int, got {index!r}.")
    if not -n_layers <= index < n_layers:
        raise ValueError(f"{name}={index} is out of range for a model of {n_layers} layers.")
    return index % n_layers
