"""Bad input to every public entry point: the error type and a message naming the problem.

Also: no input array is modified, a failing fit leaves a fitted model intact, and integer,
float32 and float64 images all work. Data are tiny (30 images of 4x4, one epoch).
"""

import numpy as np
import pytest
import torch
from scipy import sparse
from sklearn.exceptions import NotFittedError

from skdcgmm import GMM, DeepConvGMM, Fold, Pool
from skdcgmm.metrics import clustering_accuracy, ndb_score, purity_score
from skdcgmm.plotting import image_grid, plot_prototypes

N, SIDE = 30, 4
D = SIDE * SIDE
PARAMS = {"n_components": 2, "max_iter": 1, "random_state": 0, "device": "cpu"}
# A stack whose first GMM layer sees 3x3 maps of 2x2 patches of the 4x4 images.
DEEP = (Fold(2, 1), GMM(3), Pool(2, 1), Fold(), GMM())


def _rows(n=N, d=D, seed=0):
    return np.random.RandomState(seed).rand(n, d)


def _with(value, where=(3, 4), X=None):
    X = _rows() if X is None else X.copy()
    X[where] = value
    return X


def _fit(X=None, **params):
    return DeepConvGMM(**{**PARAMS, **params}).fit(_rows() if X is None else X)


@pytest.fixture(scope="module")
def model():
    """A fitted flat model of 4x4 images (layers_: Fold, GMM)."""
    return _fit()


# ---------------------------------------------------------------------- constructor parameters
@pytest.mark.parametrize(
    "params, error, match",
    [
        pytest.param(
            {"n_components": 0}, ValueError, "'n_components' parameter", id="n_components=0"
        ),
        pytest.param(
            {"n_components": 1.5}, ValueError, "'n_components' parameter", id="n_components=1.5"
        ),
        pytest.param(
            {"n_components": "3"}, ValueError, "'n_components' parameter", id="n_components=str"
        ),
        pytest.param(
            {"layers": "Z"}, ValueError, "Unknown layers preset 'Z'", id="layers-unknown-preset"
        ),
        pytest.param({"layers": ()}, ValueError, "at least one layer spec", id="layers-empty"),
        pytest.param({"layers": []}, ValueError, "at least one layer spec", id="layers-empty-list"),
        pytest.param({"layers": 3}, ValueError, "'layers' parameter", id="layers=int"),
        pytest.param(
            {"layers": (Fold(), "x", GMM())},
            TypeError,
            r"layers\[1\] must be a layer spec",
            id="layers-non-spec-item",
        ),
        pytest.param(
            {"layers": (GMM(3), Fold())},
            ValueError,
            "last layer must be a GMM spec",
            id="layers-top-is-fold",
        ),
        pytest.param(
            {"layers": (Fold(2, 1), GMM(3), Pool(2))},
            ValueError,
            "last layer must be a GMM spec",
            id="layers-top-is-pool",
        ),
        pytest.param(
            {"layers": (Fold(5), GMM())},
            ValueError,
            "Patch 5x5 is larger than its 4x4 input",
            id="layers-patch-larger-than-image",
        ),
        pytest.param(
            {"layers": (Fold(0), GMM())},
            ValueError,
            "Fold patch must be an int >= 1",
            id="layers-patch-0",
        ),
        pytest.param(
            {"layers": (Fold(2, stride=(1, 0)), GMM())},
            ValueError,
            "Fold stride must be an int >= 1",
            id="layers-stride-0",
        ),
        pytest.param(
            {"layers": (Fold(2, 1), GMM(3), Pool(4), Fold(), GMM())},
            ValueError,
            "Pooling kernel 4 is larger than its input size 3",
            id="layers-pool-to-zero-size",
        ),
        pytest.param(
            {"layers": (Fold(2, 1), GMM(3), Pool(0), Fold(), GMM())},
            ValueError,
            "Pool kernel must be an int >= 1",
            id="layers-pool-kernel-0",
        ),
        pytest.param(
            {"layers": (Fold(2, 1), GMM(3), Pool(2, mode="min"), Fold(), GMM())},
            ValueError,
            "Pool mode must be 'max' or 'avg'",
            id="layers-pool-mode",
        ),
        pytest.param(
            {"layers": (Fold(2), GMM())},
            ValueError,
            "top GMM sees a 2x2 map",
            id="layers-top-not-whole-map",
        ),
        pytest.param(
            {"layers": (GMM(3),)},
            ValueError,
            "top GMM spec has n_components=3 but the estimator has n_components=2",
            id="layers-top-gmm-n_components-differs",
        ),
        pytest.param(
            {"layers": (Fold(2, 1), GMM(), Fold(), GMM())},
            ValueError,
            "Only the top GMM may leave n_components=None",
            id="layers-lower-gmm-without-n_components",
        ),
        pytest.param(
            {"layers": (GMM(min_variance=0.0),)},
            ValueError,
            "min_variance must be > 0",
            id="layers-gmm-min_variance=0",
        ),
        pytest.param(
            {"layers": (GMM(wait=1.0),)},
            ValueError,
            r"wait must be a number in \[0, 1\)",
            id="layers-gmm-wait=1",
        ),
        pytest.param(
            {"image_shape": (3, 3)},
            ValueError,
            r"image_shape=\(3, 3\) has 9 pixel values but X has 16 features",
            id="image_shape-mismatch",
        ),
        pytest.param(
            {"image_shape": (16,)}, ValueError, r"image_shape must be \(H, W\)", id="image_shape-1d"
        ),
        pytest.param(
            {"image_shape": (2, 2, 2, 2)},
            ValueError,
            r"image_shape must be \(H, W\)",
            id="image_shape-4d",
        ),
        pytest.param(
            {"image_shape": (-4, -4)},
            ValueError,
            "with positive ints, got \\(-4, -4\\)",
            id="image_shape-negative",
        ),
        pytest.param(
            {"image_shape": (4.0, 4.0)},
            ValueError,
            "with positive ints, got \\(4.0, 4.0\\)",
            id="image_shape-floats",
        ),
        pytest.param(
            {"image_shape": "4x4"}, ValueError, "'image_shape' parameter", id="image_shape-str"
        ),
        pytest.param({"max_iter": 0}, ValueError, "'max_iter' parameter", id="max_iter=0"),
        pytest.param({"max_iter": 1.5}, ValueError, "'max_iter' parameter", id="max_iter=1.5"),
        pytest.param({"batch_size": 0}, ValueError, "'batch_size' parameter", id="batch_size=0"),
        pytest.param(
            {"batch_size": "big"}, ValueError, "'batch_size' parameter", id="batch_size=str"
        ),
        pytest.param(
            {"learning_rate": 0.0}, ValueError, "'learning_rate' parameter", id="learning_rate=0"
        ),
        pytest.param(
            {"learning_rate": float("nan")},
            ValueError,
            "'learning_rate' parameter",
            id="learning_rate=nan",
        ),
        pytest.param(
            {"learning_rate_final": -1.0},
            ValueError,
            "'learning_rate_final' parameter",
            id="learning_rate_final<0",
        ),
        pytest.param(
            {"annealing": "cosine"}, ValueError, "'annealing' parameter", id="annealing-unknown"
        ),
        pytest.param({"tol": -1.0}, ValueError, "'tol' parameter", id="tol<0"),
        pytest.param({"tol": float("nan")}, ValueError, "'tol' parameter", id="tol=nan"),
        pytest.param(
            {"n_iter_no_change": 0},
            ValueError,
            "'n_iter_no_change' parameter",
            id="n_iter_no_change=0",
        ),
        pytest.param(
            {"device": "tpu"},
            ValueError,
            "device must be 'auto', 'cpu', 'cuda' or 'cuda:<i>', got 'tpu'",
            id="device-unknown",
        ),
        pytest.param({"device": "foo:bar"}, ValueError, "got 'foo:bar'", id="device-unparseable"),
        pytest.param(
            {"device": "meta"},
            ValueError,
            "must be a CPU or CUDA device, got 'meta'",
            id="device-meta",
        ),
        pytest.param(
            {"device": "cuda:99"},
            ValueError,
            "device='cuda:99' was requested but",
            id="device-missing-gpu",
        ),
        pytest.param({"device": 0}, ValueError, "'device' parameter", id="device=int"),
        pytest.param(
            {"transform_layer": 5},
            ValueError,
            "transform_layer=5 is out of range for a model of 2 layers",
            id="transform_layer-too-large",
        ),
        pytest.param(
            {"transform_layer": -3},
            ValueError,
            "transform_layer=-3 is out of range",
            id="transform_layer-too-negative",
        ),
        pytest.param(
            {"transform_layer": 1.0},
            ValueError,
            "'transform_layer' parameter",
            id="transform_layer=float",
        ),
        pytest.param(
            {"transform_layer": True},
            TypeError,
            "transform_layer must be an int, got True",
            id="transform_layer=bool",
        ),
        pytest.param(
            {"top_refit_reg_covar": -0.01},
            ValueError,
            "'top_refit_reg_covar' parameter",
            id="top_refit_reg_covar<0",
        ),
        pytest.param(
            {"top_refit_reg_covar": "auto"},
            ValueError,
            "'top_refit_reg_covar' parameter",
            id="top_refit_reg_covar=str",
        ),
        pytest.param(
            {"top_refit_shrinkage": 1.5},
            ValueError,
            "'top_refit_shrinkage' parameter",
            id="top_refit_shrinkage>1",
        ),
        pytest.param(
            {"top_refit_shrinkage": -0.1},
            ValueError,
            "'top_refit_shrinkage' parameter",
            id="top_refit_shrinkage<0",
        ),
        pytest.param({"top_factors": 0}, ValueError, "'top_factors' parameter", id="top_factors=0"),
        pytest.param(
            {"top_factors": 2.5}, ValueError, "'top_factors' parameter", id="top_factors=float"
        ),
        pytest.param(
            {"top_factors": True},
            TypeError,
            "top_factors must be an int or None, got True",
            id="top_factors=bool",
        ),
        pytest.param({"warm_start": "yes"}, ValueError, "'warm_start' parameter", id="warm_start"),
        pytest.param({"verbose": -1}, ValueError, "'verbose' parameter", id="verbose<0"),
        pytest.param(
            {"random_state": "a"}, ValueError, "'random_state' parameter", id="random_state=str"
        ),
    ],
)
def test_bad_parameters_are_rejected_by_fit(params, error, match):
    estimator = DeepConvGMM(**{**PARAMS, **params})  # the constructor validates nothing
    with pytest.raises(error, match=match):
        estimator.fit(_rows())
    assert not hasattr(estimator, "module_") and not hasattr(estimator, "n_features_in_")


def test_image_shape_parameter_must_match_image_input():
    with pytest.raises(ValueError, match=r"image_shape=\(4, 4\) does not match X's images"):
        _fit(_rows().reshape(N, 2, 8), image_shape=(4, 4))


# ---------------------------------------------------------------------- training data
@pytest.mark.parametrize(
    "X, error, match",
    [
        pytest.param(_with(np.nan), ValueError, "Input X contains NaN", id="nan"),
        pytest.param(_with(np.inf), ValueError, "Input X contains infinity", id="inf"),
        pytest.param(_with(-np.inf), ValueError, "Input X contains infinity", id="-inf"),
        pytest.param(_rows()[0], ValueError, "Expected 2D array, got 1D array", id="1-D"),
        pytest.param(np.float64(0.5), ValueError, "Expected 2D array, got scalar", id="0-D"),
        pytest.param(_rows(d=16).reshape(N, 2, 2, 2, 2), ValueError, "got a 5-D array", id="5-D"),
        pytest.param(
            np.array([["a", "b"]] * N, dtype=object),
            ValueError,
            "could not convert string to float",
            id="object-strings",
        ),
        pytest.param(
            np.array([["a", "b"]] * N), ValueError, "could not convert string to float", id="str"
        ),
        pytest.param(
            _rows().astype(complex), ValueError, "Complex data not supported", id="complex"
        ),
        pytest.param(
            sparse.csr_matrix(_rows()), TypeError, "dense data is required", id="sparse-csr"
        ),
        pytest.param(
            sparse.coo_matrix(_rows()), TypeError, "dense data is required", id="sparse-coo"
        ),
        pytest.param(
            sparse.csr_array(_rows()), TypeError, "dense data is required", id="sparse-csr_array"
        ),
        pytest.param(np.empty((0, D)), ValueError, r"0 sample\(s\)", id="empty-rows"),
        pytest.param(np.empty((0, 4, 4)), ValueError, r"0 sample\(s\)", id="empty-images"),
        pytest.param(np.empty((N, 0)), ValueError, r"0 feature\(s\)", id="no-features"),
        pytest.param(
            _rows(n=1), ValueError, "n_samples >= n_components", id="fewer-samples-than-K"
        ),
        pytest.param([[0.1, 0.2], [0.3]], ValueError, "inhomogeneous", id="ragged-list"),
    ],
)
def test_bad_training_data(X, error, match):
    with pytest.raises(error, match=match):
        DeepConvGMM(**PARAMS).fit(X)


def test_training_that_diverges_raises():
    with pytest.raises(ValueError, match="Training diverged"):
        _fit(_rows() * 1e30)  # finite, but its squares overflow float32


# ---------------------------------------------------------------------- inference on bad data
_X_METHODS = {
    "predict": lambda m, X: m.predict(X),
    "predict_proba": lambda m, X: m.predict_proba(X),
    "score_samples": lambda m, X: m.score_samples(X),
    "score": lambda m, X: m.score(X),
    "transform": lambda m, X: m.transform(X),
    "generate_variants": lambda m, X: m.generate_variants(X),
    "inpaint": lambda m, X: m.inpaint(X, np.zeros(np.shape(X), dtype=bool)),
}
_BAD_X = {
    "9-features": (_rows(d=9), ValueError, "X has 9 features, but DeepConvGMM is expecting 16"),
    "other-image-shape": (
        _rows().reshape(N, 2, 8),
        ValueError,
        r"images of shape \(2, 8\), but DeepConvGMM was fitted on images of shape \(4, 4, 1\)",
    ),
    "nan": (_with(np.nan), ValueError, "Input X contains NaN"),
    "sparse": (sparse.csr_matrix(_rows()), TypeError, "dense data is required"),
    "empty": (np.empty((0, D)), ValueError, r"0 sample\(s\)"),
    "5-D": (_rows().reshape(N, 2, 2, 2, 2), ValueError, "got a 5-D array"),
}


@pytest.mark.parametrize("bad", list(_BAD_X))
@pytest.mark.parametrize("method", list(_X_METHODS))
def test_bad_data_after_fit(model, method, bad):
    X, error, match = _BAD_X[bad]
    with pytest.raises(error, match=match):
        _X_METHODS[method](model, X)


def test_one_dimensional_data_after_fit(model):
    for method in ("predict", "score_samples", "transform", "generate_variants"):
        with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
            _X_METHODS[method](model, _rows()[0])


# ---------------------------------------------------------------------- unfitted use
_UNFITTED = {
    "predict": lambda m: m.predict(_rows()),
    "predict_proba": lambda m: m.predict_proba(_rows()),
    "score_samples": lambda m: m.score_samples(_rows()),
    "score": lambda m: m.score(_rows()),
    "transform": lambda m: m.transform(_rows()),
    "sample": lambda m: m.sample(2),
    "inpaint": lambda m: m.inpaint(_rows(), np.zeros(D, dtype=bool)),
    "generate_variants": lambda m: m.generate_variants(_rows()),
    "get_feature_names_out": lambda m: m.get_feature_names_out(),
    "means_": lambda m: m.means_,
    "weights_": lambda m: m.weights_,
    "precisions_": lambda m: m.precisions_,
    "covariances_": lambda m: m.covariances_,
    "plot_prototypes": lambda m: plot_prototypes(m),
}


@pytest.mark.parametrize("use", list(_UNFITTED))
def test_unfitted_use_raises_not_fitted(use):
    if use == "plot_prototypes":
        pytest.importorskip("matplotlib")
    with pytest.raises(NotFittedError, match="not fitted yet"):
        _UNFITTED[use](DeepConvGMM())


# ---------------------------------------------------------------------- sampling
@pytest.mark.parametrize(
    "n_samples",
    [
        pytest.param(0, id="0"),
        pytest.param(-1, id="-1"),
        pytest.param(1.5, id="1.5"),
        pytest.param(2.0, id="2.0"),
        pytest.param(True, id="True"),
        pytest.param("3", id="str"),
        pytest.param(None, id="None"),
    ],
)
def test_sample_rejects_bad_n_samples(model, n_samples):
    with pytest.raises(ValueError, match=r"n_samples must be an int >= 1, got "):
        model.sample(n_samples)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        pytest.param(
            {"foo": 1}, TypeError, r"sample\(\) got unexpected keyword arguments \['foo'\]", id="kw"
        ),
        pytest.param({"top_s": 0}, ValueError, "'top_s' parameter", id="top_s=0"),
        pytest.param({"exponent": 0.0}, ValueError, "'exponent' parameter", id="exponent=0"),
        pytest.param(
            {"noise_divisor": -1.0}, ValueError, "'noise_divisor' parameter", id="noise_divisor<0"
        ),
        pytest.param({"floor_noise": 1}, ValueError, "'floor_noise' parameter", id="floor_noise"),
        pytest.param(
            {"upsampling": "nearest"}, ValueError, "'upsampling' parameter", id="upsampling"
        ),
        pytest.param(
            {"sharpening_steps": -1},
            ValueError,
            "'sharpening_steps' parameter",
            id="sharpening_steps<0",
        ),
        pytest.param(
            {"sharpening_rate": 0.0},
            ValueError,
            "'sharpening_rate' parameter",
            id="sharpening_rate=0",
        ),
        pytest.param(
            {"reconstruction_weight": -1.0},
            ValueError,
            "'reconstruction_weight' parameter",
            id="reconstruction_weight<0",
        ),
        pytest.param(
            {"sharpening_target": "bottom"},
            ValueError,
            "'sharpening_target' parameter",
            id="sharpening_target",
        ),
        pytest.param({"clip": "yes"}, ValueError, "'clip' parameter", id="clip=str"),
        pytest.param(
            {"components": -1},
            ValueError,
            r"components must be an int or 3 ints in \[0, 2\), got -1",
            id="components<0",
        ),
        pytest.param({"components": 2}, ValueError, r"ints in \[0, 2\), got 2", id="components=K"),
        pytest.param(
            {"components": [0, 1]}, ValueError, "components must be", id="components-length"
        ),
        pytest.param(
            {"components": [[0], [1], [0]]}, ValueError, "components must be", id="components-2d"
        ),
        pytest.param(
            {"components": [0.0, 1.0, 0.0]}, ValueError, "components must be", id="components-float"
        ),
        pytest.param({"components": "a"}, ValueError, "components must be", id="components-str"),
        pytest.param({"components": True}, ValueError, "components must be", id="components-bool"),
    ],
)
def test_sample_rejects_bad_keywords(model, kwargs, error, match):
    with pytest.raises(error, match=match):
        model.sample(3, **kwargs)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int32, np.int64, np.uint64])
def test_sample_accepts_components_of_any_integer_dtype(model, dtype):
    _, labels = model.sample(3, components=np.array([1, 0, 1], dtype=dtype))
    assert labels.tolist() == [1, 0, 1] and labels.dtype == np.int64


# ---------------------------------------------------------------------- inpaint, variants
_IMAGES = _rows(n=3).reshape(3, SIDE, SIDE)
_MASK = np.zeros((SIDE, SIDE), dtype=bool)


@pytest.mark.parametrize(
    "mask, kwargs, error, match",
    [
        pytest.param(
            _MASK.astype(int),
            {},
            TypeError,
            "mask must be a boolean array, got dtype int64",
            id="mask-int",
        ),
        pytest.param(_MASK.astype(float), {}, TypeError, "got dtype float64", id="mask-float"),
        pytest.param(
            np.zeros((3, 3), dtype=bool),
            {},
            ValueError,
            r"mask of shape \(3, 3\) matches neither X \(3, 4, 4\) nor one of its images",
            id="mask-shape",
        ),
        pytest.param(
            np.zeros((2, 3, 4, 4), dtype=bool),
            {},
            ValueError,
            r"mask of shape \(2, 3, 4, 4\)",
            id="mask-extra-axis",
        ),
        pytest.param(_MASK, {"n_iter": 0}, ValueError, "n_iter must be an int >= 1", id="n_iter=0"),
        pytest.param(_MASK, {"n_iter": 1.5}, ValueError, "got 1.5", id="n_iter=1.5"),
        pytest.param(_MASK, {"n_iter": True}, ValueError, "got True", id="n_iter=True"),
        pytest.param(
            _MASK,
            {"layer": 0},
            ValueError,
            "layer=0 is a Folding layer; choose the index of a GMM layer",
            id="layer-not-gmm",
        ),
        pytest.param(
            _MASK,
            {"layer": 5},
            ValueError,
            "layer=5 is out of range for a model of 2 layers",
            id="layer-out-of-range",
        ),
        pytest.param(_MASK, {"layer": True}, TypeError, "layer must be an int", id="layer=bool"),
        pytest.param(
            _MASK,
            {"bar": 1},
            TypeError,
            r"inpaint\(\) got unexpected keyword arguments \['bar'\]",
            id="unknown-keyword",
        ),
        pytest.param(
            _MASK, {"noise_divisor": 0.0}, ValueError, "'noise_divisor' parameter", id="option"
        ),
    ],
)
def test_inpaint_rejects_bad_arguments(model, mask, kwargs, error, match):
    with pytest.raises(error, match=match):
        model.inpaint(_IMAGES, mask, **kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        pytest.param({"layer": 0}, ValueError, "is a Folding layer", id="layer-not-gmm"),
        pytest.param({"layer": -3}, ValueError, "layer=-3 is out of range", id="layer<-L"),
        pytest.param({"layer": 1.0}, TypeError, "layer must be an int", id="layer=float"),
        pytest.param(
            {"bar": 1},
            TypeError,
            r"generate_variants\(\) got unexpected keyword arguments \['bar'\]",
            id="unknown-keyword",
        ),
    ],
)
def test_generate_variants_rejects_bad_arguments(model, kwargs, error, match):
    with pytest.raises(error, match=match):
        model.generate_variants(_IMAGES, **kwargs)


# ---------------------------------------------------------------------- metrics and plotting
_REF = np.random.RandomState(1).rand(40, 4)


@pytest.mark.parametrize(
    "function", [clustering_accuracy, purity_score], ids=["accuracy", "purity"]
)
@pytest.mark.parametrize(
    "labels_true, labels_pred, match",
    [
        pytest.param(
            [0, 1, 1],
            [0, 1],
            "labels_true and labels_pred must have the same length, got 3 and 2",
            id="different-lengths",
        ),
        pytest.param([], [], "are empty", id="empty"),
        pytest.param(
            [[0, 1]], [0, 1], r"labels_true must be 1-D, got an array of shape \(1, 2\)", id="2-D"
        ),
        pytest.param([0, 1], 1, r"labels_pred must be 1-D, got an array of shape \(\)", id="0-D"),
    ],
)
def test_label_metrics_reject_bad_labels(function, labels_true, labels_pred, match):
    with pytest.raises(ValueError, match=match):
        function(labels_true, labels_pred)


@pytest.mark.parametrize(
    "X_reference, X_samples, kwargs, error, match",
    [
        pytest.param(
            _REF,
            _REF[:, :3],
            {},
            ValueError,
            "X_samples has 3 features but X_reference has 4",
            id="features",
        ),
        pytest.param(
            _REF, _REF, {"n_bins": 1}, ValueError, r"n_bins must be an int in \[2", id="n_bins=1"
        ),
        pytest.param(
            _REF,
            _REF,
            {"n_bins": 41},
            ValueError,
            r"n_bins must be an int in \[2, n_reference=40\], got 41",
            id="n_bins>n_reference",
        ),
        pytest.param(_REF, _REF, {"n_bins": 4.0}, ValueError, "got 4.0", id="n_bins=float"),
        pytest.param(
            _REF, _REF, {"alpha": 0.0}, ValueError, r"alpha must be in \(0, 1\)", id="alpha=0"
        ),
        pytest.param(_REF, _REF, {"alpha": 1.0}, ValueError, "got 1.0", id="alpha=1"),
        pytest.param(_REF, _REF, {"alpha": "a"}, ValueError, "got 'a'", id="alpha=str"),
        pytest.param(
            _with(np.nan, (0, 0), _REF),
            _REF,
            {},
            ValueError,
            "Input X_reference contains NaN",
            id="nan-reference",
        ),
        pytest.param(
            _REF,
            _with(np.inf, (0, 0), _REF),
            {},
            ValueError,
            "Input X_samples contains infinity",
            id="inf-samples",
        ),
        pytest.param(
            _REF, _REF[:0], {}, ValueError, r"0 sample\(s\) \(shape=\(0, 4\)\)", id="empty-samples"
        ),
        pytest.param(_REF[:0], _REF, {}, ValueError, r"0 sample\(s\)", id="empty-reference"),
        pytest.param(
            sparse.csr_matrix(_REF),
            _REF,
            {},
            TypeError,
            "X_reference must be a dense array, got a sparse matrix",
            id="sparse-reference",
        ),
        pytest.param(
            _REF,
            sparse.csr_matrix(_REF),
            {},
            TypeError,
            "X_samples must be a dense array",
            id="sparse-samples",
        ),
        pytest.param(
            3.0, _REF, {}, ValueError, "X_reference must be an array of samples", id="scalar"
        ),
        pytest.param(np.array([["a"] * 4] * 40), _REF, {}, ValueError, "strings", id="strings"),
    ],
)
def test_ndb_score_rejects_bad_input(X_reference, X_samples, kwargs, error, match):
    with pytest.raises(error, match=match):
        ndb_score(X_reference, X_samples, **{"n_bins": 4, "random_state": 0, **kwargs})


@pytest.mark.parametrize(
    "images, kwargs, error, match",
    [
        pytest.param(np.zeros(16), {}, ValueError, r"got shape \(16,\)", id="1-D"),
        pytest.param(
            np.zeros((2, 2, 2, 2, 2)), {}, ValueError, r"got shape \(2, 2, 2, 2, 2\)", id="5-D"
        ),
        pytest.param(np.zeros((0, 16)), {}, ValueError, "non-empty", id="empty"),
        pytest.param(
            np.zeros((3, 15)), {}, ValueError, "Rows of 15 values are not square", id="not-square"
        ),
        pytest.param(
            np.zeros((3, 16)),
            {"image_shape": (3, 3)},
            ValueError,
            r"image_shape=\(3, 3\) does not match rows of 16 values",
            id="image_shape-mismatch",
        ),
        pytest.param(
            np.zeros((3, 16)),
            {"image_shape": (4, 4, 1, 1)},
            ValueError,
            r"image_shape must be \(H, W\) or \(H, W, C\)",
            id="image_shape-4d",
        ),
        pytest.param(
            np.zeros((3, 16)),
            {"image_shape": (-4, -4)},
            ValueError,
            r"positive ints, got \(-4, -4\)",
            id="image_shape-negative",
        ),
        pytest.param(
            np.zeros((3, 16)),
            {"image_shape": 16},
            ValueError,
            "positive ints, got 16",
            id="image_shape-int",
        ),
        pytest.param(np.zeros((3, 16)), {"pad": -1}, ValueError, "pad must be", id="pad<0"),
        pytest.param(np.zeros((3, 16)), {"pad": 1.5}, ValueError, "got 1.5", id="pad=float"),
        pytest.param(np.zeros((3, 16)), {"n_cols": 0}, ValueError, "n_cols must be", id="n_cols=0"),
        pytest.param(
            np.zeros((3, 16)), {"n_cols": 1.5}, ValueError, "n_cols must be", id="n_cols=float"
        ),
        pytest.param(
            sparse.csr_matrix(np.zeros((3, 16))),
            {},
            TypeError,
            "images must be a dense array",
            id="sparse",
        ),
        pytest.param(
            np.array([["a"] * 16] * 3),
            {},
            ValueError,
            "could not convert string to float",
            id="strings",
        ),
    ],
)
def test_image_grid_rejects_bad_input(images, kwargs, error, match):
    with pytest.raises(error, match=match):
        image_grid(images, **kwargs)


# ---------------------------------------------------------------------- inputs stay untouched
def _flags(a):
    names = ("C_CONTIGUOUS", "F_CONTIGUOUS", "WRITEABLE", "OWNDATA", "ALIGNED", "WRITEBACKIFCOPY")
    return {name: a.flags[name] for name in names}


def _read_only(a):
    a.setflags(write=False)
    return a


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _rows(), id="float64-C"),
        pytest.param(lambda: np.asfortranarray(_rows(), dtype=np.float32), id="float32-F"),
        pytest.param(lambda: _rows().reshape(N, SIDE, SIDE), id="images-view"),
        pytest.param(lambda: _rows(n=2 * N)[::2], id="strided-view"),
        pytest.param(lambda: _read_only(_rows().astype(np.float32)), id="read-only"),
    ],
)
@pytest.mark.parametrize("layers", ["flat", DEEP], ids=["flat", "deep"])
def test_no_input_array_is_modified(make, layers):
    X = make()
    mask = np.zeros(X.shape[1:], dtype=bool)
    mask[..., :2] = True
    components = np.array([1, 0, 1])
    arrays = {"X": X, "mask": mask, "components": components}
    before = {k: (v.copy(), _flags(v)) for k, v in arrays.items()}

    model = DeepConvGMM(**{**PARAMS, "layers": layers}).fit(X)
    model.predict(X)
    model.predict_proba(X)
    model.score_samples(X)
    model.transform(X)
    model.sample(3, components=components)
    model.sample(3, components=components, sharpening_steps=1)
    model.generate_variants(X)
    filled = model.inpaint(X, mask)
    model.inpaint(X, mask, n_iter=1, sharpening_steps=1)

    for name, value in arrays.items():
        copy, flags = before[name]
        assert np.array_equal(value, copy), name
        assert value.dtype == copy.dtype and _flags(value) == flags, name
    assert not np.shares_memory(filled, X)
    filled[...] = -1.0  # writing to the result does not reach the input
    assert np.array_equal(X, before["X"][0])


# ---------------------------------------------------------------------- failing fits
_FAILING_FITS = {
    # (new parameters, training data of a *different* feature count where possible)
    "nan": ({}, _with(np.nan, X=_rows(d=9))),
    "sparse": ({}, sparse.csr_matrix(_rows(d=9))),
    "too-few-samples": ({}, _rows(n=1, d=9)),
    "image_shape-mismatch": ({"image_shape": (2, 2)}, _rows(d=9)),
    "unknown-preset": ({"layers": "Z"}, _rows(d=9)),
    "patch-too-large": ({"layers": (Fold(4), GMM())}, _rows(d=9)),
    "bad-device": ({"device": "tpu"}, _rows(d=9)),
    "transform_layer": ({"transform_layer": 9}, _rows(d=9)),
    "bad-parameter": ({"max_iter": 0}, _rows(d=9)),
    "top-gmm-n_components": ({"layers": (GMM(5),)}, _rows(d=9)),
    "diverges": ({}, _rows(d=9) * 1e30),
    "warm-start-other-features": ({"warm_start": True}, _rows(d=9)),
    "warm-start-other-layers": ({"warm_start": True, "layers": DEEP}, _rows()),
}


@pytest.mark.parametrize("case", list(_FAILING_FITS))
def test_failing_fit_leaves_the_fitted_model_intact(case):
    new_params, X_bad = _FAILING_FITS[case]
    X = _rows()
    model = _fit(X)
    state = {
        "predict": model.predict(X),
        "predict_proba": model.predict_proba(X),
        "score_samples": model.score_samples(X),
        "means_": model.means_,
    }
    attributes = {
        name: getattr(model, name)
        for name in ("n_features_in_", "image_shape_", "layers_", "n_iter_", "loss_curve_")
    }
    attributes["data_min_"] = model.data_min_.copy()

    model.set_params(**new_params)
    with pytest.raises((ValueError, TypeError)):
        model.fit(X_bad)

    model.set_params(**{k: PARAMS.get(k, DeepConvGMM().get_params()[k]) for k in new_params})
    assert model.n_features_in_ == D
    for name, value in attributes.items():
        assert np.array_equal(getattr(model, name), value), name
    assert not hasattr(model, "feature_names_in_")
    assert np.array_equal(model.predict(X), state["predict"])
    np.testing.assert_array_equal(model.predict_proba(X), state["predict_proba"])
    np.testing.assert_array_equal(model.score_samples(X), state["score_samples"])
    np.testing.assert_array_equal(model.means_, state["means_"])
    # ... and it can still be refitted.
    assert model.fit(X).n_features_in_ == D


def test_failing_first_fit_leaves_no_fitted_attributes():
    model = DeepConvGMM(**PARAMS, layers="Z")
    with pytest.raises(ValueError, match="Unknown layers preset"):
        model.fit(_rows())
    assert not hasattr(model, "n_features_in_")
    with pytest.raises(NotFittedError):
        model.predict(_rows())


# ---------------------------------------------------------------------- accepted dtypes
def test_integer_images_are_used_as_given():
    """uint8 pixels in 0..255 are accepted and used as float64 values (not rescaled)."""
    pixels = (np.random.RandomState(0).rand(40, D) * 255).astype(np.uint8)
    model = _fit(pixels, max_iter=2)
    twin = _fit(pixels.astype(np.float64), max_iter=2)
    np.testing.assert_array_equal(model.means_, twin.means_)
    assert np.array_equal(model.data_max_, pixels.max(axis=0).astype(np.float64))
    scores = model.score_samples(pixels)
    assert scores.dtype == np.float64 and np.isfinite(scores).all()
    np.testing.assert_array_equal(scores, twin.score_samples(pixels.astype(np.float64)))
    proba = model.predict_proba(pixels)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    samples, _ = model.sample(4)
    assert samples.dtype == np.float64 and np.isfinite(samples).all()
    assert (samples >= 0).all() and (samples <= 255).all()  # clipped to the data range


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layers", ["flat", DEEP], ids=["flat", "deep"])
def test_float32_and_float64_both_work(dtype, layers):
    X = _rows().astype(dtype)
    model = _fit(X, layers=layers)
    assert model.module_.top.means.dtype == torch.float32  # training runs in float32
    for output in (model.score_samples(X), model.predict_proba(X), model.transform(X)):
        assert output.dtype == np.float64 and np.isfinite(output).all()
    # CPU inference runs in float64: float32 input scores exactly as its float64 copy.
    np.testing.assert_array_equal(model.score_samples(X), model.score_samples(X.astype(np.float64)))
    assert model.generate_variants(X).shape == X.shape
