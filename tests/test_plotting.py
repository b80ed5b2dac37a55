"""skdcgmm.plotting: grids by numpy, figures by matplotlib (skipped without it)."""

import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skdcgmm import DeepConvGMM
from skdcgmm.plotting import (
    image_grid,
    plot_history,
    plot_images,
    plot_prototypes,
    plot_responsibilities,
    save_png,
)


def test_image_grid_places_every_image():
    images = np.arange(5 * 6, dtype=float).reshape(5, 2, 3) + 1
    grid = image_grid(images, n_cols=2, pad=1, pad_value=-1)
    assert grid.shape == (3 * 3 - 1, 2 * 4 - 1)
    assert np.array_equal(grid[0:2, 0:3], images[0])
    assert np.array_equal(grid[3:5, 4:7], images[3])
    assert np.array_equal(grid[6:8, 0:3], images[4])
    assert (grid[6:8, 4:7] == -1).all() and (grid[2] == -1).all()  # empty cell and padding
    rows = image_grid(images.reshape(5, 6), image_shape=(2, 3), n_cols=2, pad=1, pad_value=-1)
    assert np.array_equal(rows, grid)
    colour = image_grid(np.zeros((4, 3, 3, 3)))
    assert colour.shape == (7, 7, 3)


@pytest.mark.parametrize(
    "images, kwargs, message",
    [
        (np.zeros((0, 4)), {}, "non-empty"),
        (np.zeros((3, 5)), {}, "not square"),
        (np.zeros((3, 6)), {"image_shape": (2, 2)}, "does not match"),
        (np.zeros((3, 4)), {"n_cols": 0}, "n_cols"),
        (np.zeros((3, 4)), {"pad": -1}, "pad"),
    ],
)
def test_image_grid_rejects_bad_input(images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        image_grid(images, **kwargs)


def test_plots_draw_images_and_prototypes():
    plt = pytest.importorskip("matplotlib.pyplot")
    X = load_digits().data[:400] / 16.0
    model = DeepConvGMM(5, max_iter=2, random_state=0).fit(X)
    ax = plot_images(model.sample(9)[0], title="samples")
    assert ax.get_title() == "samples" and len(ax.images) == 1
    fig = plot_prototypes(model)
    assert len(fig.axes) == 2  # one panel per GMM layer
    assert fig.axes[0].images[0].get_array().shape == image_grid(np.zeros((25, 3, 3))).shape
    with pytest.raises(ValueError, match="not a GMM layer"):
        plot_prototypes(model, layers=[0])
    plt.close("all")


def test_missing_matplotlib_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="needs matplotlib"):
        plot_images(np.zeros((4, 4)))


def test_history_and_responsibility_plots():
    plt = pytest.importorskip("matplotlib.pyplot")
    X = load_digits().data[:300] / 16.0
    model = DeepConvGMM(4, max_iter=3, random_state=0).fit(X)
    fig = plot_history(model)
    assert len(fig.axes) == 3  # loss, sigma, learning rate (no validation)
    loss_lines = fig.axes[0].get_lines()
    assert np.allclose(loss_lines[0].get_ydata(), model.loss_curve_)
    assert len(loss_lines) == 3  # total + two GMM layers
    assert np.allclose(fig.axes[1].get_lines()[0].get_ydata(), model.history_["sigma"][:, 0])
    fig = plot_responsibilities(model, X[0])
    assert len(fig.axes) == 3  # image, first-layer map, top posterior
    assert fig.axes[1].images[0].get_array().shape[:2] == model.module_.layers[1].output_shape[:2]
    heights = [p.get_height() for p in fig.axes[2].patches]
    assert np.allclose(heights, model.predict_proba(X[:1])[0])
    with pytest.raises(ValueError, match="one image"):
        plot_responsibilities(model, np.zeros((2, 2, 2, 2)))
    figures = plt.get_fignums()
    with pytest.raises(ValueError, match="expecting 64 features"):
        plot_responsibilities(model, np.zeros((3, 3)))
    assert plt.get_fignums() == figures  # checked before any figure was made
    stopped = DeepConvGMM(3, layers="flat", max_iter=4, early_stopping=True, random_state=0).fit(X)
    assert len(plot_history(stopped).axes) == 4
    plt.close("all")


def test_save_png_round_trips_through_matplotlib(tmp_path):
    image = np.linspace(0, 1, 6 * 5).reshape(6, 5)
    path = tmp_path / "a.png"
    save_png(path, image)
    plt = pytest.importorskip("matplotlib.pyplot")
    read = plt.imread(path)  # floats in [0, 1]
    assert read.shape[:2] == (6, 5)
    grey = read if read.ndim == 2 else read[..., 0]
    assert np.abs(grey - image).max() <= 0.5 / 255 + 1e-6
    colour = np.stack([image, 1 - image, np.zeros_like(image)], axis=-1)
    save_png(tmp_path / "c.png", colour, vmin=0, vmax=1)
    assert np.abs(plt.imread(tmp_path / "c.png")[..., :3] - colour).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match="shape"):
        save_png(tmp_path / "x.png", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        save_png(tmp_path / "x.png", np.full((2, 2), np.nan))
