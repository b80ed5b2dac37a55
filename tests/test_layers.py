"""Layer specs, presets and building stacks from them."""

import pickle

import numpy as np
import pytest
import torch

from skdcgmm import DeepConvGMM
from skdcgmm.layers import GMM, PRESETS, Fold, Pool, build_stack, resolve_layers

# Output shapes of every layer on 28x28x1 MNIST, as listed in method §13 (top K = 10).
PAPER_SHAPES = {
    "B": [(11, 11, 64), (11, 11, 49), (1, 1, 5929), (1, 1, 10)],
    "C": [(21, 21, 64), (21, 21, 25), (11, 11, 25), (1, 1, 3025), (1, 1, 10)],
    "D": [
        (26, 26, 9),
        (26, 26, 25),
        (13, 13, 25),
        (10, 10, 400),
        (10, 10, 25),
        (5, 5, 25),
        (1, 1, 625),
        (1, 1, 10),
    ],
    "E": [(26, 26, 9), (26, 26, 25), (12, 12, 400), (12, 12, 25), (1, 1, 3600), (1, 1, 10)],
    "F": [
        (26, 26, 9),
        (26, 26, 25),
        (12, 12, 400),
        (12, 12, 25),
        (5, 5, 400),
        (5, 5, 25),
        (1, 1, 625),
        (1, 1, 10),
    ],
    "G": [
        (26, 26, 9),
        (26, 26, 25),
        (13, 13, 25),
        (11, 11, 225),
        (11, 11, 25),
        (6, 6, 25),
        (4, 4, 225),
        (4, 4, 25),
        (2, 2, 25),
        (1, 1, 100),
        (1, 1, 10),
    ],
}


def _build(layers, shape=(28, 28, 1), k=10):
    return build_stack(resolve_layers(layers, shape), shape, k, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(PAPER_SHAPES))
def test_presets_reproduce_the_paper_shapes(name):
    assert [m.output_shape for m in _build(name).layers] == PAPER_SHAPES[name]


@pytest.mark.parametrize("name", [*sorted(PRESETS), "auto"])
@pytest.mark.parametrize("shape", [(8, 8, 1), (12, 10, 3), (32, 32, 3)])
def test_presets_adapt_to_other_image_sizes(name, shape):
    stack = _build(name, shape)
    assert stack.top.n_positions == 1 and stack.top.n_components == 10
    specs = resolve_layers(name, shape)  # concrete: they rebuild without adaptation
    assert [m.output_shape for m in build_stack(specs, shape, 10, torch.Generator()).layers] == [
        m.output_shape for m in stack.layers
    ]


@pytest.mark.parametrize("name", ["flat", "C", "E", "G"])
def test_precision_rates_default_by_position(name):
    """None: 10 for the GMM on the input, the paper's 0.1 for GMMs on responsibilities."""
    rates = [layer.lr_factors[1] for layer in _build(name).gmm_layers]
    assert rates == [10.0] + [0.1] * (len(rates) - 1)


def test_explicit_precision_rates_are_kept_at_every_position():
    layers = (Fold(8, 1), GMM(25, lr_precisions=2.0), Pool(2), Fold(), GMM(lr_precisions=3.0))
    assert [layer.lr_factors[1] for layer in _build(layers).gmm_layers] == [2.0, 3.0]


def test_auto_choice_depends_on_image_size():
    assert resolve_layers("auto", (28, 28, 1))[:3] == (
        Fold((8, 8), (1, 1)),
        GMM(49),
        Pool((2, 2), (2, 2)),
    )
    assert resolve_layers("auto", (8, 8, 1))[0] == Fold((3, 3), (1, 1))
    assert resolve_layers("auto", (1, 1, 5)) == resolve_layers("flat", (1, 1, 5))
    assert resolve_layers("auto", (7, 7, 1)) == resolve_layers("flat", (7, 7, 1))
    # auto= picks the preset of large images only (the outlier detector asks for "E").
    assert resolve_layers("auto", (28, 28, 1), auto="E") == resolve_layers("E", (28, 28, 1))
    assert resolve_layers("auto", (8, 8, 1), auto="E") == resolve_layers("auto", (8, 8, 1))


def test_specs_are_frozen_hashable_and_picklable():
    spec = (Fold(8, 1), GMM(25, wait=0.1), Pool(2), Fold(), GMM())
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert hash(spec) == hash(pickle.loads(pickle.dumps(spec)))
    with pytest.raises(AttributeError):
        spec[0].patch = 3


def test_specs_take_numpy_numbers():
    specs = (
        Fold(np.int64(3), (np.int32(1), 1)),
        GMM(np.int64(4), min_variance=np.float32(0.05), wait=np.float64(0.1)),
        Pool(np.int64(2)),
        Fold(),
        GMM(),
    )
    python = (Fold(3, 1), GMM(4, min_variance=0.05, wait=0.1), Pool(2), Fold(), GMM())
    stack = _build(specs, (12, 12, 1))
    assert repr(stack) == repr(_build(python, (12, 12, 1)))
    assert stack.layers[1].n_components == 4 and type(stack.layers[1].n_components) is int


@pytest.mark.parametrize(
    "layers, error, match",
    [
        ((Fold(30), GMM()), ValueError, r"layers\[0\].*larger than"),
        ((Fold(3), GMM(5), Pool(20), Fold(), GMM()), ValueError, r"layers\[2\].*larger than"),
        ((Fold(4, 4), GMM()), ValueError, "one position"),
        ((GMM(),), ValueError, "one position"),
        ((Fold(), GMM(), Fold()), ValueError, "last layer must be a GMM"),
        ((Fold(0), GMM()), ValueError, "Fold patch"),
        ((Fold(2.5), GMM()), ValueError, "Fold patch"),
        ((Fold(True), GMM()), ValueError, "Fold patch"),
        ((Fold(), GMM(min_variance=True)), ValueError, "min_variance"),
        ((Pool(mode="median"), GMM()), ValueError, "Pool mode"),
        ((Fold(2), GMM(), Fold(), GMM()), ValueError, "Only the top GMM"),
        ((Fold(), GMM(wait=1.0)), ValueError, "wait"),
        (("Fold", GMM()), TypeError, "layer spec"),
        ((), ValueError, "at least one"),
    ],
)
def test_specs_that_do_not_fit_give_clear_errors(layers, error, match):
    with pytest.raises(error, match=match):
        _build(layers, (12, 12, 1))


def test_unknown_preset():
    with pytest.raises(ValueError, match="Unknown layers preset 'Z'"):
        resolve_layers("Z", (28, 28, 1))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_fits_an_mnist_subset(mnist_subset, name):
    X, _, Xt, _ = mnist_subset
    model = DeepConvGMM(10, layers=name, max_iter=1, random_state=0).fit(X[:1000])
    scores = model.score_samples(Xt[:200])
    assert np.isfinite(scores).all() and np.isfinite(model.loss_curve_).all()
    assert model.predict(Xt[:200]).max() < 10
    samples, comps = model.sample(5, sharpening_steps=3)
    assert samples.shape == (5, 784) and samples.dtype == np.float64 and comps.max() < 10
    assert samples.min() >= 0 and samples.max() <= 1
