"""Pictures of images, samples and component prototypes (matplotlib is optional).

:func:`image_grid` composes images into one array with numpy only; the ``plot_*`` functions draw
with matplotlib and raise a clear ``ImportError`` when it is not installed
(``pip install "skdcgmm[plot]"``).
"""

from __future__ import annotations

import math
import struct
import zlib
from numbers import Integral
from os import PathLike

import numpy as np
from scipy import sparse
from sklearn.utils.validation import check_is_fitted

from ._input import validate_images
from .nn import GMMLayer
from .nn.sampling import prototypes

__all__ = [
    "image_grid",
    "plot_history",
    "plot_images",
    "plot_prototypes",
    "plot_responsibilities",
    "save_png",
]


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


def save_png(path: str | PathLike, image, *, vmin: float | None = None, vmax: float | None = None):
    """Write a grey-scale ``(H, W)`` or colour ``(H, W, 3)`` array as an 8-bit PNG.

    Needs no plotting library (numpy and zlib only), so the demo writes pictures on any
    machine. Values are mapped linearly from ``[vmin, vmax]`` (default: the image's range)
    to ``[0, 255]``.

    Parameters
    ----------
    path : str or path-like
    image : array-like of shape (H, W) or (H, W, 3)
        E.g. the output of :func:`image_grid`.
    vmin, vmax : float or None, default=None

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from skdcgmm.plotting import image_grid, save_png
    >>> path = os.path.join(tempfile.mkdtemp(), "grid.png")
    >>> save_png(path, image_grid(np.random.rand(4, 16)))
    >>> open(path, "rb").read(4)[1:]
    b'PNG'
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3) or image.size == 0:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {image.shape}.")
    if not np.isfinite(image).all():
        raise ValueError("image holds NaN or infinite values.")
    low = image.min() if vmin is None else vmin
    high = image.max() if vmax is None else vmax
    scaled = np.clip((image - low) / ((high - low) or 1.0), 0.0, 1.0)
    pixels = np.round(scaled * 255).astype(np.uint8)
    h, w = pixels.shape[:2]
    colour_type = 2 if pixels.ndim == 3 else 0
    rows = pixels.reshape(h, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 on every row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + tag
            + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", header))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


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
    gmm_indices = _gmm_indices(estimator)
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


def plot_history(estimator, *, figsize=None):
    """Draw the training curves of a fitted model from its ``history_``.

    Panels: the loss (total and per GMM layer), the annealing radius sigma and the base
    learning rate of every GMM layer (log scale), and the validation score when the model was
    fitted with ``early_stopping``.

    Parameters
    ----------
    estimator : fitted DeepConvGMM
    figsize : tuple of float or None, default=None

    Returns
    -------
    fig : matplotlib Figure
    """
    plt = _pyplot()
    check_is_fitted(estimator)
    history = estimator.history_
    gmm_indices = _gmm_indices(estimator)
    validated = not np.isnan(history["validation_score"]).all()
    n_panels = 3 + validated
    fig, axes = plt.subplots(1, n_panels, figsize=figsize or (4.5 * n_panels, 3.5), squeeze=False)
    axes = axes[0]
    epochs = np.arange(1, len(history["loss"]) + 1)
    axes[0].plot(epochs, history["loss"], "k-", lw=2, label="total")
    for j, index in enumerate(gmm_indices):
        label = f"layers_[{index}]"
        if len(gmm_indices) > 1:
            axes[0].plot(epochs, history["layer_loss"][:, j], "--", label=label)
        axes[1].semilogy(epochs, history["sigma"][:, j], label=label)
        axes[2].semilogy(epochs, history["learning_rate"][:, j], label=label)
    for ax, title in zip(axes, ("training loss", "annealing radius sigma", "learning rate")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize="small")
    if validated:
        axes[3].plot(epochs, history["validation_score"], "o-")
        axes[3].set_title("validation score (higher is better)")
        axes[3].set_xlabel("epoch")
    fig.tight_layout()
    return fig


def plot_responsibilities(estimator, image, *, figsize=None):
    """Draw how every GMM layer explains one image.

    Panels: the image; for every GMM layer below the top, the map of its winning component
    at every position (colour = component index, brightness = its responsibility); for the
    top layer, the responsibilities of its components (the cluster posterior).

    Parameters
    ----------
    estimator : fitted DeepConvGMM
    image : array-like of shape (n_features,), (H, W) or (H, W, C)
        One image in the layout the model was fitted on.
    figsize : tuple of float or None, default=None

    Returns
    -------
    fig : matplotlib Figure
    """
    plt = _pyplot()
    check_is_fitted(estimator)
    image = np.asarray(image)
    if sparse.issparse(image) or image.ndim not in (1, 2, 3):
        raise ValueError(
            f"image must be one image of shape (n_features,), (H, W) or (H, W, C), got "
            f"{getattr(image, 'shape', type(image))}."
        )
    # Checked (size, finite values) before any figure is made.
    X, _ = validate_images(estimator, image.reshape(1, -1), reset=False)
    stack = estimator.module_
    gmm_indices = _gmm_indices(estimator)
    n_panels = 1 + len(gmm_indices)
    fig, axes = plt.subplots(1, n_panels, figsize=figsize or (4 * n_panels, 4), squeeze=False)
    axes = axes[0]
    h, w, c = estimator.image_shape_
    shown = X.reshape(h, w, c)
    plot_images(shown[None, ..., 0] if c == 1 else shown[None], ax=axes[0], title="image")
    for ax, index in zip(axes[1:], gmm_indices):
        layer = stack.layers[index]
        mh, mw, k = layer.output_shape
        out = estimator._inference(X, lambda s, x, i=index: s(x, upto=i).flatten(1))
        resp = out.reshape(mh, mw, k)
        if index == gmm_indices[-1] and mh * mw == 1:
            ax.bar(np.arange(k), resp[0, 0])
            ax.set_xlabel("component")
            ax.set_title(f"layers_[{index}] (top): posterior")
            continue
        winner, confidence = resp.argmax(axis=-1), resp.max(axis=-1)
        colours = plt.get_cmap("hsv")(winner / k)[..., :3] * confidence[..., None]
        ax.imshow(colours, interpolation="nearest")
        ax.set_title(f"layers_[{index}]: winning component of {k}")
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def _gmm_indices(estimator) -> list[int]:
    return [i for i, layer in enumerate(estimator.module_.layers) if isinstance(layer, GMMLayer)]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'skdcgmm.plotting needs matplotlib: pip install matplotlib (or "skdcgmm[plot]").'
        ) from exc
    return plt
