"""Pictures of images, samples and component prototypes (matplotlib is optional).

:func:`image_grid` composes images into one array with numpy only; the ``plot_*`` functions draw
with matplotlib and raise a clear ``ImportError`` when it is not installed
(``pip install "skdcgmm[plot]"``).
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np
from scipy import sparse
from sklearn.utils.validation import check_is_fitted

from .nn import GMMLayer
from .nn.sampling import prototypes

__all__ = ["image_grid", "plot_images", "plot_prototypes"]


def image_grid(
    images,
    image_shape=None,
    *,
    n_cols: int | None = None,
    pad: int = 1,
    pad_value: float | None = None,
) -> np.ndarray:
    """Tile images into one ``(rows * (H + pad) - pad, cols * (W + pad) - pad[, C])`` array.

    Parameters
    ----------
    images : array-like of shape (n, H * W * C), (n, H, W) or (n, H, W, C)
        The images, channels last.
    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(H, W, C)`` when ``images`` holds rows; ``None`` infers square
        single-channel images.
    n_cols : int or None, default=None
        Images per row; ``None`` makes the grid about square.
    pad : int, default=1
        Pixels between images.
    pad_value : float or None, default=None
        Value of the padding; ``None`` uses the largest pixel value.

    Returns
    -------
    grid : ndarray of shape (grid_H, grid_W) or (grid_H, grid_W, C)

    Examples
    --------
    >>> import numpy as np
    >>> from skdcgmm.plotting import image_grid
    >>> image_grid(np.zeros((6, 4)), n_cols=3).shape
    (5, 8)
    """
    if sparse.issparse(images):
        raise TypeError("images must be a dense array, got a sparse matrix; use .toarray().")
    images = np.asarray(images, dtype=np.float64)
    if images.ndim not in (2, 3, 4) or images.shape[0] == 0:
        raise ValueError(
            f"images must be a non-empty array of shape (n, H*W*C), (n, H, W) or (n, H, W, C), "
            f"got shape {images.shape}."
        )
    n = images.shape[0]
    if images.ndim == 2:
        if image_shape is None:
            side = math.isqrt(images.shape[1])
            if side * side != images.shape[1]:
                raise ValueError(
                    f"Rows of {images.shape[1]} values are not square images; pass image_shape."
                )
            image_shape = (side, side)
        if (
            not isinstance(image_shape, tuple | list)
            or len(image_shape) not in (2, 3)
            or not all(
                isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in image_shape
            )
        ):
            raise ValueError(
                f"image_shape must be (H, W) or (H, W, C) with positive ints, got {image_shape!r}."
            )
        if math.prod(image_shape) != images.shape[1]:
            raise ValueError(
                f"image_shape={tuple(image_shape)} does not match rows of {images.shape[1]} values."
            )
        images = images.reshape(n, *image_shape)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be an int >= 0, got {pad!r}.")
    n_cols = math.ceil(math.sqrt(n)) if n_cols is None else n_cols
    if not isinstance(n_cols, int) or n_cols < 1:
        raise ValueError(f"n_cols must be an int >= 1, got {n_cols!r}.")
    n_rows = math.ceil(n / n_cols)
    h, w = images.shape[1:3]
    fill = np.nanmax(images) if pad_value is None else pad_value
    grid = np.full((n_rows * (h + pad) - pad, n_cols * (w + pad) - pad, *images.shape[3:]), fill)
    for i, image in enumerate(images):
        r, c = divmod(i, n_cols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = image
    return grid


def plot_images(
    images,
    image_shape=None,
    *,
    n_cols: int | None = None,
    ax=None,
    title: str | None = None,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
):
    """Draw images as one grid.

    Parameters
    ----------
    images, image_shape, n_cols
        As in :func:`image_grid`.
    ax : matplotlib Axes or None, default=None
        Where to draw; ``None`` creates a figure.
    title : str or None, default=None
    cmap : str, default="gray"
        Colour map of single-channel images.
    vmin, vmax : float or None, default=None
        Display range; ``None`` uses the images' range.

    Returns
    -------
    ax : matplotlib Axes
    """
    plt = _pyplot()
    grid = image_grid(images, image_shape, n_cols=n_cols)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1]))
    if grid.ndim == 3:  # colour: matplotlib wants [0, 1]
        low, high = np.min(grid), np.max(grid)
        grid = (grid - low) / (high - low or 1.0)
    ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_prototypes(estimator, layers=None, *, figsize=None):
    """Draw what every component of the chosen GMM layers stands for.

    The first GMM layer shows its means as image patches; higher layers show every
    component rendered top-down without noise and cropped to its receptive field (see
    :func:`skdcgmm.nn.sampling.prototypes`); the top layer's renderings are whole images.

    Parameters
    ----------
    estimator : fitted DeepConvGMM
    layers : sequence of int or None, default=None
        Indices into ``estimator.layers_`` of GMM layers; ``None`` draws all of them.
    figsize : tuple of float or None, default=None

    Returns
    -------
    fig : matplotlib Figure
    """
    plt = _pyplot()
    check_is_fitted(estimator)
    stack = estimator.module_
    gmm_indices = [i for i, layer in enumerate(stack.layers) if isinstance(layer, GMMLayer)]
    if layers is None:
        layers = gmm_indices
    chosen = []
    for index in layers:
        if not isinstance(index, int) or not -len(stack.layers) <= index < len(stack.layers):
            raise ValueError(f"layers must hold indices into layers_, got {index!r}.")
        if index % len(stack.layers) not in gmm_indices:
            raise ValueError(f"layers_[{index}] is not a GMM layer; GMM layers: {gmm_indices}.")
        chosen.append(index % len(stack.layers))
    fig, axes = plt.subplots(1, len(chosen), figsize=figsize or (5 * len(chosen), 5), squeeze=False)
    for ax, index in zip(axes[0], chosen):
        images = prototypes(stack, index).detach().double().cpu().numpy()
        plot_images(images, ax=ax, title=f"layers_[{index}]: {len(images)} components")
    return fig


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'skdcgmm.plotting needs matplotlib: pip install matplotlib (or "skdcgmm[plot]").'
        ) from exc
    return plt
