"""DeepConvGMM: recovery, API behaviour, reproducibility, persistence and bad input."""

import copy
import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils._testing import assert_allclose

from skdcgmm import GMM, DeepConvGMM, Fold, Pool
from skdcgmm._training import refit_top
from skdcgmm.metrics import clustering_accuracy
from skdcgmm.nn import FactorGMMLayer
from skdcgmm.nn.factor import fit_factor_layer

from .conftest import make_blobs_data


def _fit(X, **kw):
    params = {"n_components": 4, "max_iter": 20, "random_state": 0, **kw}
    return DeepConvGMM(**params).fit(X)


def test_recovers_blob_means_from_random_init(blobs):
    X, y, centers = blobs
    model = _fit(X)
    cost = ((model.means_[:, None, :] - centers[None]) ** 2).sum(-1)  # (K, C)
    rows, cols = linear_sum_assignment(cost)
    # Means within 0.03 of the true centres (std 0.05, 100 points per blob: stderr 0.005).
    assert np.abs(model.means_[rows] - centers[cols]).max() < 0.03
    assert clustering_accuracy(y, model.predict(X)) == 1.0
    assert_allclose(model.weights_, 0.25, atol=0.03)


def test_fit_attributes_and_shapes(blobs):
    X, _, _ = blobs
    model = _fit(X, max_iter=3)
    assert model.n_features_in_ == 3 and model.n_iter_ == 3 and len(model.loss_curve_) == 3
    assert model.means_.shape == (4, 3) and model.weights_.shape == (4,)
    assert model.precisions_.shape == model.covariances_.shape == (4, 3)
    assert_allclose(model.precisions_ * model.covariances_, 1.0)
    assert model.covariances_.min() >= 0.05 - 1e-6  # the variance floor
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 4)
    assert_allclose(proba.sum(1), 1.0)
    assert_allclose(model.transform(X), proba)
    assert model.get_feature_names_out().tolist() == [f"deepconvgmm{i}" for i in range(4)]


def test_score_samples_is_the_exact_mixture_density(blobs):
    X, _, _ = blobs
    model = _fit(X, max_iter=5)
    gm = GaussianMixture(4, covariance_type="diag")
    gm.means_, gm.weights_ = model.means_, model.weights_
    gm.covariances_ = model.covariances_
    gm.precisions_cholesky_ = np.sqrt(model.precisions_)
    assert_allclose(model.score_samples(X), gm.score_samples(X), rtol=1e-5)
    assert model.score(X) == pytest.approx(model.score_samples(X).mean())


def test_reproducible_and_independent_of_global_rng(blobs):
    X, _, _ = blobs
    a = _fit(X, max_iter=4)
    torch.manual_seed(123)
    np.random.seed(7)  # noqa: NPY002 - the global state must not matter
    b = _fit(X, max_iter=4)
    assert_allclose(a.means_, b.means_, rtol=0, atol=0)
    assert a.loss_curve_ == b.loss_curve_
    assert_allclose(a.sample(5)[0], b.sample(5)[0], rtol=0, atol=0)
    c = _fit(X, max_iter=4, random_state=1)
    assert not np.allclose(a.means_, c.means_)


def test_fit_predict_equals_fit_then_predict(blobs):
    X, _, _ = blobs
    est = DeepConvGMM(4, max_iter=5, random_state=0)
    assert np.array_equal(clone(est).fit_predict(X), clone(est).fit(X).predict(X))


def test_sample_shapes_reproducible_and_advancing(blobs):
    X, _, _centers = blobs
    model = _fit(X)
    Xs, ys = model.sample(400)
    assert Xs.shape == (400, 3) and ys.shape == (400,) and ys.dtype == np.int64
    assert set(np.unique(ys)) <= set(range(4))
    # Samples of component k scatter around its mean with its variance.
    for k in np.unique(ys):
        assert np.abs(Xs[ys == k].mean(0) - model.means_[k]).max() < 0.1
    X2, _ = model.sample(400)
    assert not np.allclose(Xs, X2)
    with pytest.raises(ValueError, match="n_samples"):
        model.sample(0)


def test_pickle_and_joblib_round_trip(blobs):
    X, _, _ = blobs
    model = _fit(X, max_iter=3)
    restored = pickle.loads(pickle.dumps(model))
    assert np.array_equal(restored.predict(X), model.predict(X))
    assert_allclose(restored.score_samples(X), model.score_samples(X), rtol=0, atol=0)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    buffer.seek(0)
    restored = joblib.load(buffer)
    assert_allclose(restored.predict_proba(X), model.predict_proba(X), rtol=0, atol=0)
    assert restored.module_.top.means.device.type == model.device_.type


def test_warm_start_continues_and_appends_loss_curve(blobs):
    X, _, _ = blobs
    model = DeepConvGMM(4, max_iter=3, warm_start=True, random_state=0).fit(X)
    means = model.means_.copy()
    model.fit(X)
    assert len(model.loss_curve_) == 6
    assert float(model.module_.top.sigma) == pytest.approx(0.01)
    assert np.abs(model.means_ - means).max() < 0.2  # continued, not re-initialised
    with pytest.raises(ValueError, match="warm_start"):
        model.set_params(n_components=3).fit(X)


def test_warm_start_does_not_delay_layers_again():
    X = load_digits().data[:300] / 16.0
    layers = (Fold(3, 1), GMM(9), Pool(2), Fold(), GMM(wait=0.5))
    model = DeepConvGMM(4, layers=layers, max_iter=4, warm_start=True, random_state=0).fit(X)
    rates = model.history_["learning_rate"]
    assert rates[0, 1] == rates[1, 1] and rates[0, 0] != rates[1, 0]  # the top layer waited
    model.fit(X)
    rates = model.history_["learning_rate"][4:]
    assert (rates[:, 0] == rates[:, 1]).all() and len(set(rates[:, 1])) > 1  # no wait


def test_non_finite_training_raises_instead_of_returning_nan(blobs):
    X, _, _ = blobs
    with pytest.raises(ValueError, match="Training diverged"):
        _fit(X * 1e30, max_iter=2)  # finite input whose squares overflow float32


def test_failed_fit_leaves_previous_model_intact(blobs, monkeypatch):
    X, _, _ = blobs
    model = _fit(X, max_iter=3)
    before = model.score_samples(X)

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr("skdcgmm._estimator.train", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.set_params(warm_start=True).fit(X)
    assert_allclose(model.score_samples(X), before)
    assert len(model.loss_curve_) == 3


def test_failed_refit_keeps_the_random_streams(blobs):
    X, _, _ = blobs
    model, twin = _fit(X, max_iter=2), _fit(X, max_iter=2)
    model.sample(3)
    with pytest.raises(ValueError, match="transform_layer=7"):
        model.set_params(transform_layer=7).fit(X)  # fails after the model is built
    model.set_params(transform_layer=-1)
    twin.sample(3)
    # The failed fit neither reset nor advanced the sampling stream of the model kept.
    assert_allclose(model.sample(3)[0], twin.sample(3)[0])


def test_warnings_point_at_the_caller(blobs):
    X, _, _ = blobs
    with pytest.warns(ConvergenceWarning) as record:
        _fit(X, max_iter=1)
    with pytest.warns(UserWarning, match="batch_size") as batch_record:
        _fit(X, max_iter=1, batch_size=1000)
    assert {w.filename for w in [*record, *batch_record]} == {__file__}


def test_input_is_not_modified(blobs):
    X, _, _ = blobs
    X = X.astype(np.float32)
    copy = X.copy()
    model = _fit(X, max_iter=2)
    model.score_samples(X)
    assert np.array_equal(X, copy)


def test_float32_and_float64_give_close_results(blobs):
    X, _, _ = blobs
    a = _fit(X.astype(np.float32), max_iter=3).score_samples(X)
    b = _fit(X, max_iter=3).score_samples(X)
    assert_allclose(a, b, rtol=1e-4)


def test_compile_gives_the_same_model(blobs):
    X, _, _ = blobs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = _fit(X, max_iter=3, compile=True)
    if any("torch.compile is unavailable" in str(w.message) for w in caught):
        pytest.skip("torch.compile is unavailable on this machine")
    eager = _fit(X, max_iter=3)
    assert compiled.get_params()["compile"] and not eager.compile
    assert_allclose(compiled.loss_curve_, eager.loss_curve_, rtol=1e-5)
    assert_allclose(compiled.means_, eager.means_, atol=1e-5)
    assert np.array_equal(compiled.predict(X), eager.predict(X))


def test_custom_layers_spec(blobs):
    X, _, _ = blobs
    # learning_rate * lr_means / min_variance <= 2 keeps the mean updates stable.
    model = _fit(X, layers=(GMM(min_variance=0.001),), max_iter=10, learning_rate=0.002)
    assert model.covariances_.min() >= 0.001 - 1e-7
    assert model.layers_ == (GMM(min_variance=0.001),)


def test_pipeline_linear_probe_and_grid_search():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    pipe = make_pipeline(
        DeepConvGMM(20, max_iter=5, random_state=0), LogisticRegression(max_iter=500)
    )
    pipe.fit(X[:1200], y[:1200])
    assert pipe.score(X[1200:], y[1200:]) > 0.6  # 20 soft clusters as features; chance is 0.1
    search = GridSearchCV(DeepConvGMM(max_iter=3, random_state=0), {"n_components": [2, 10]}, cv=2)
    search.fit(X[:600])
    assert search.best_params_["n_components"] in (2, 10)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize(
    "X, error, match",
    [
        (np.array([[0.1, np.nan], [0.2, 0.3]] * 10), ValueError, "NaN"),
        (np.array([[0.1, np.inf], [0.2, 0.3]] * 10), ValueError, "infinity"),
        (np.arange(20.0), ValueError, "Expected 2D array"),
        (np.empty((0, 3)), ValueError, "0 sample"),
        (np.array([["a", "b"]] * 20), ValueError, "could not convert"),
        (np.ones((3, 2)), ValueError, "n_samples >= n_components"),
    ],
)
def test_bad_input_to_fit(X, error, match):
    with pytest.raises(error, match=match):
        DeepConvGMM(4).fit(X)


def test_sparse_input_is_rejected():
    from scipy import sparse

    with pytest.raises(TypeError, match="dense data is required"):
        DeepConvGMM(2).fit(sparse.random(20, 3, density=0.5, format="csr"))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_components": 0}, "n_components"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"annealing": "cosine"}, "annealing"),
        ({"layers": "deep-unknown"}, "layers"),
        ({"layers": ("not a spec", GMM())}, "layer spec"),
        ({"layers": (GMM(n_components=3),)}, "top GMM spec has n_components=3"),
        ({"device": "tpu"}, "device"),
        ({"compile": "yes"}, "'compile' parameter"),
    ],
)
def test_bad_parameters(params, match):
    X, _, _ = make_blobs_data()
    with pytest.raises((ValueError, TypeError), match=match):
        DeepConvGMM(**{"n_components": 4, **params}).fit(X)


def test_cuda_request_without_cuda_is_clear(blobs):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        DeepConvGMM(4, device="cuda").fit(blobs[0])


def test_unfitted_and_feature_mismatch(blobs):
    X, _, _ = blobs
    with pytest.raises(NotFittedError):
        DeepConvGMM().predict(X)
    with pytest.raises(NotFittedError):
        DeepConvGMM().sample(2)
    model = _fit(X, max_iter=2)
    with pytest.raises(ValueError, match="3 features"):
        model.score_samples(X[:, :2])


def test_batch_size_larger_than_data_warns(blobs):
    X, _, _ = blobs
    with pytest.warns(UserWarning, match="batch_size=1000"):
        _fit(X, batch_size=1000, max_iter=1)


def test_mnist_subset_beats_flat_em_on_held_out_likelihood(mnist_subset):
    X, _y, Xt, yt = mnist_subset
    ours = DeepConvGMM(10, max_iter=10, random_state=0).fit(X)
    em = GaussianMixture(10, covariance_type="diag", reg_covar=0.05, random_state=0).fit(X)
    assert ours.score(Xt) > em.score(Xt)
    assert clustering_accuracy(yt, ours.predict(Xt)) > 0.4


# ---------------------------------------------------------------------- images and deep stacks
def _images(n=120, h=10, w=10, c=1, seed=0):
    """Bars: vertical or horizontal strokes at random offsets, in [0, 1]."""
    rng = np.random.RandomState(seed)
    X = np.zeros((n, h, w, c))
    y = rng.randint(0, 2, n)
    for i in range(n):
        pos = rng.randint(1, min(h, w) - 1)
        if y[i]:
            X[i, :, pos] = 1.0
        else:
            X[i, pos, :] = 1.0
    return X + 0.05 * rng.rand(*X.shape), y


def _stripes(n=300, h=10, w=10, period=3, seed=0):
    """Textures: vertical or horizontal stripes of the given period at a random phase.

    Unlike the bars above (whose class is not the dominant structure of the pooled first
    layer: k-means there reaches only 0.70), the class here is a position-invariant texture,
    the kind of structure a convolutional stack is built to find."""
    rng = np.random.RandomState(seed)
    X = np.zeros((n, h, w, 1))
    y = rng.randint(0, 2, n)
    for i in range(n):
        phase = rng.randint(period)
        if y[i]:
            X[i, :, phase::period] = 1.0
        else:
            X[i, phase::period, :] = 1.0
    return X + 0.05 * rng.rand(*X.shape), y


def test_image_layouts_give_the_same_model():
    X4, _ = _images(c=2)
    params = {"n_components": 2, "max_iter": 2, "random_state": 0, "layers": "auto"}
    a = DeepConvGMM(**params).fit(X4)
    b = DeepConvGMM(**params, image_shape=(10, 10, 2)).fit(X4.reshape(len(X4), -1))
    assert a.image_shape_ == b.image_shape_ == (10, 10, 2)
    assert a.n_features_in_ == 200 and len(a.layers_) == 5  # the small convolutional stack
    assert_allclose(a.score_samples(X4), b.score_samples(X4.reshape(len(X4), -1)))
    X3, _ = _images()
    c = DeepConvGMM(**params).fit(X3[..., 0])  # (n, H, W)
    assert c.image_shape_ == (10, 10, 1)
    nested = DeepConvGMM(**params).fit(X3[..., 0].tolist())  # nested lists of images
    assert nested.image_shape_ == (10, 10, 1)
    assert_allclose(nested.score_samples(X3[..., 0].tolist()), c.score_samples(X3[..., 0]))
    d = DeepConvGMM(**params).fit(X3.reshape(len(X3), -1))  # square rows inferred
    assert d.image_shape_ == (10, 10, 1)


@pytest.mark.parametrize(
    "kwargs, X_shape, match",
    [
        ({"image_shape": (10, 11)}, (20, 100), "110 pixel values"),
        ({"image_shape": (10, 10, 0)}, (20, 100), "image_shape must be"),
        ({"image_shape": (5, 20)}, (20, 10, 10), "does not match"),
        ({"transform_layer": 7}, (20, 100), "transform_layer=7"),
    ],
)
def test_bad_image_parameters(kwargs, X_shape, match):
    with pytest.raises(ValueError, match=match):
        DeepConvGMM(2, max_iter=1, **kwargs).fit(np.random.RandomState(0).rand(*X_shape))


def test_predict_on_images_of_another_shape_is_rejected():
    X, _ = _images()
    model = DeepConvGMM(2, max_iter=1, random_state=0).fit(X)
    with pytest.raises(ValueError, match="fitted on images of shape"):
        model.predict(X.reshape(len(X), 100, 1, 1))


def test_deep_model_clusters_textures_and_transforms_any_layer():
    X, y = _stripes()
    model = DeepConvGMM(2, max_iter=20, random_state=0).fit(X)  # 1.0 for seeds 0-7
    assert clustering_accuracy(y, model.predict(X)) > 0.9
    assert model.transform(X).shape == (300, 2)
    model.set_params(transform_layer=2)  # pooled first-layer responsibilities: 4 x 4 x 25
    features = model.transform(X)
    assert features.shape == (300, 400) and model.get_feature_names_out().shape == (400,)
    assert features.min() >= 0 and features.max() <= 1 + 1e-12
    samples, comps = model.sample(7)
    assert samples.shape == (7, 100) and comps.shape == (7,) and np.isfinite(samples).all()
    restored = pickle.loads(pickle.dumps(model))  # rebuilt from specs and image_shape_
    assert_allclose(restored.transform(X), features, rtol=0, atol=0)
    assert_allclose(restored.score_samples(X), model.score_samples(X), rtol=0, atol=0)


def test_inference_in_small_chunks_gives_identical_results(monkeypatch):
    X, _ = _images(n=50)
    model = DeepConvGMM(2, max_iter=2, random_state=0).fit(X)
    full = model.score_samples(X), model.predict_proba(X)
    monkeypatch.setattr("skdcgmm._estimator._CPU_INFERENCE_BYTES", 1)  # one image per chunk
    assert_allclose(model.score_samples(X), full[0], rtol=1e-12)
    assert_allclose(model.predict_proba(X), full[1], rtol=1e-12)


@pytest.fixture(scope="module")
def digits_model():
    X = load_digits().data / 16.0
    return DeepConvGMM(10, max_iter=4, random_state=0).fit(X), X


def test_sample_conditional_clipped_and_reproducible(digits_model):
    model, X = digits_model
    samples, comps = model.sample(
        12, components=[0, 3] * 6, sampler="exact", noise_divisor=5, top_s=2
    )
    assert comps.tolist() == [0, 3] * 6 and samples.shape == (12, 64)
    assert (samples >= model.data_min_).all() and (samples <= model.data_max_).all()
    assert_allclose(model.data_min_, X.min(0)) and assert_allclose(model.data_max_, X.max(0))
    _, same = model.sample(4, components=7)
    assert same.tolist() == [7] * 4
    unclipped, _ = model.sample(200, sampler="exact", clip=False, noise_divisor=0.5)
    assert unclipped.min() < 0  # noise beyond the data range is kept when asked
    twin = clone(model).fit(X)
    assert_allclose(
        twin.sample(6, sampler="exact", sharpening_steps=5)[0],
        clone(model).fit(X).sample(6, sampler="exact", sharpening_steps=5)[0],
        rtol=0,
        atol=0,
    )


def test_sample_sharpened_towards_the_drawn_vector(digits_model):
    model, _ = digits_model
    options = {
        "noise_divisor": 20,
        "floor_noise": False,
        "start_noise_divisor": 1,
        "sharpening_steps": 10,
        "sharpening_target": "drawn",
    }
    samples, comps = model.sample(20, components=np.arange(20) % 10, sampler="exact", **options)
    assert samples.shape == (20, 64) and comps.tolist() == (np.arange(20) % 10).tolist()
    assert (samples >= model.data_min_).all() and (samples <= model.data_max_).all()
    plain, _ = model.sample(20, components=np.arange(20) % 10, sampler="exact", noise_divisor=20)
    # Sharpening keeps the drawn component: most samples are assigned back to it.
    assert (model.predict(samples) == comps).mean() >= (model.predict(plain) == comps).mean()
    variants = model.generate_variants(samples[:5], **options)
    assert variants.shape == (5, 64)


def test_samplers_are_named_option_sets_that_keywords_override(digits_model):
    model, X = digits_model
    flat = DeepConvGMM(10, layers="flat", max_iter=4, random_state=0).fit(X)

    def draw(m, **kw):  # the same random stream for every call: a fresh copy of the model
        return copy.deepcopy(m).sample(8, components=np.arange(8), **kw)[0]

    paper = {"noise_divisor": 20, "floor_noise": False}
    drawn = {"noise_divisor": 20, "start_noise_divisor": 1, "sharpening_steps": 30,
             "sharpening_target": "drawn", "match_weight": 10_000}  # fmt: skip
    assert_allclose(draw(model), draw(model, sampler="drawn"), rtol=0, atol=0)
    assert_allclose(draw(model), draw(model, sampler="exact", **drawn), rtol=0, atol=0)
    assert_allclose(
        draw(model, sampler="paper"), draw(model, sampler="exact", **paper), rtol=0, atol=0
    )
    # A keyword given overrides the sampler's value; "auto" samples a flat model exactly.
    assert_allclose(
        draw(model, sampler="drawn", sharpening_steps=0),
        draw(model, sampler="exact", **{**drawn, "sharpening_steps": 0}),
        rtol=0,
        atol=0,
    )
    assert_allclose(draw(flat), draw(flat, sampler="exact"), rtol=0, atol=0)
    assert not np.allclose(draw(model), draw(model, sampler="exact"))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"foo": 1}, TypeError, "unexpected keyword"),
        ({"top_s": 0}, ValueError, "top_s"),
        ({"noise_divisor": -1.0}, ValueError, "noise_divisor"),
        ({"upsampling": "nearest"}, ValueError, "upsampling"),
        ({"sharpening_steps": 1.5}, ValueError, "sharpening_steps"),
        ({"sharpening_target": 2}, ValueError, "sharpening_target"),
        ({"match_weight": -1.0}, ValueError, "match_weight"),
        ({"start_noise_divisor": 0.0}, ValueError, "start_noise_divisor"),
        ({"components": 10}, ValueError, "components"),
        ({"components": [1, 2]}, ValueError, "components"),
        ({"components": [0.5, 1, 2]}, ValueError, "components"),
        ({"sampler": "sharp"}, ValueError, "sampler"),
    ],
)
def test_sample_rejects_bad_options(digits_model, kwargs, error, message):
    model, _ = digits_model
    with pytest.raises(error, match=message):
        model.sample(3, **kwargs)


def test_inpaint_keeps_known_pixels_and_fills_the_rest(digits_model):
    model, X = digits_model
    images = X[:30].reshape(30, 8, 8).copy()
    original = images.copy()
    mask = np.zeros((8, 8), dtype=bool)
    mask[:, 4:] = True
    filled = model.inpaint(images, mask, sharpening_steps=10)
    assert filled.shape == images.shape and np.array_equal(images, original)
    assert np.array_equal(filled[:, ~mask], images[:, ~mask])
    assert (filled[:, mask] >= 0).all() and (filled[:, mask] <= 1).all()
    assert np.abs(filled[:, mask]).sum() > 0  # something was painted in
    # The fill is closer to the truth than leaving the pixels empty.
    err = np.abs(filled[:, mask] - images[:, mask]).mean()
    assert err < np.abs(images[:, mask]).mean()
    per_row = model.inpaint(X[:5], np.tile(mask.ravel(), (5, 1)), layer=1, n_iter=1)
    assert per_row.shape == (5, 64)


def test_inpaint_mask_forms_and_nan_pixels(digits_model):
    model, X = digits_model

    def inpaint(*args):  # every call from the same point of the model's sampling stream
        return copy.deepcopy(model).inpaint(*args, n_iter=1)

    mask = np.zeros((8, 8), dtype=bool)
    mask[2:5] = True
    rows = X[:4]
    expected = inpaint(rows, np.tile(mask.ravel(), (4, 1)))
    for form in (mask, mask.ravel(), mask[..., None]):  # one image, for rows of pixels
        assert_allclose(inpaint(rows, form), expected)
    holes = rows.copy()
    holes[:, mask.ravel()] = np.nan  # NaN marks the missing pixels (mask=None)
    assert_allclose(inpaint(holes), expected)
    assert_allclose(inpaint(holes, mask), expected)
    assert np.isnan(holes[:, mask.ravel()]).all()  # the input is left as it was
    with pytest.raises(ValueError, match="NaN outside the mask"):
        model.inpaint(holes, ~mask)


def test_inpaint_pixel_mask_covers_every_channel():
    X, _ = _images(c=2)
    model = DeepConvGMM(2, max_iter=1, random_state=0).fit(X)
    mask = np.zeros((10, 10), dtype=bool)
    mask[:3] = True
    filled = model.inpaint(X[:2], mask, n_iter=1)
    assert_allclose(filled[:, ~mask], X[:2, ~mask])
    assert not np.allclose(filled[:, mask], X[:2, mask])


@pytest.mark.parametrize(
    "mask, kwargs, error, message",
    [
        (np.zeros((8, 8)), {}, TypeError, "boolean"),
        (np.zeros((3, 3), bool), {}, ValueError, "mask of shape"),
        (np.zeros((8, 8), bool), {"n_iter": 0}, ValueError, "n_iter"),
        (np.zeros((8, 8), bool), {"layer": 0}, ValueError, "GMM layer"),
        (np.zeros((8, 8), bool), {"layer": 9}, ValueError, "out of range"),
    ],
)
def test_inpaint_rejects_bad_arguments(digits_model, mask, kwargs, error, message):
    model, X = digits_model
    with pytest.raises(error, match=message):
        model.inpaint(X[:3].reshape(3, 8, 8), mask, **kwargs)


def test_generate_variants_keep_shape_and_cluster(digits_model):
    model, X = digits_model
    variants = model.generate_variants(X[:100], top_s=1, noise_divisor=10)
    assert variants.shape == (100, 64)
    assert np.mean(model.predict(variants) == model.predict(X[:100])) > 0.8
    assert model.generate_variants(X[:4].reshape(4, 8, 8), layer=1).shape == (4, 8, 8)


# ---------------------------------------------------------------- streaming, history, stopping
def _digits(n=600, seed=0):
    X = load_digits().data / 16.0
    return X[np.random.RandomState(seed).permutation(len(X))[:n]]


def test_partial_fit_on_chunks_matches_fit_on_the_whole():
    X = _digits(900)
    train, test = X[:700], X[700:]
    full = DeepConvGMM(8, layers="flat", max_iter=6, batch_size=10, random_state=0).fit(train)
    # 4 chunks per pass, 6 passes: 24 calls, the time schedule planned over max_iter = 24.
    streamed = DeepConvGMM(8, layers="flat", max_iter=24, batch_size=10, random_state=0)
    for _ in range(6):
        for chunk in np.array_split(train, 4):
            streamed.partial_fit(chunk)
    assert streamed.n_iter_ == 24 and len(streamed.loss_curve_) == 24
    assert streamed.history_["sigma"].shape == (24, 1)
    assert streamed.history_["sigma"][-1, 0] == pytest.approx(0.01)  # annealing carried over
    # Measured: 8.21 (fit) vs 8.70 (streamed) nats per test image: within 1 nat (about 12 %).
    assert abs(streamed.score(test) - full.score(test)) < 1.0


def test_partial_fit_continues_a_fit_and_checks_its_input(blobs):
    X, _, _ = blobs
    model = _fit(X, max_iter=4)
    means = model.means_.copy()
    model.partial_fit(X[:50])
    assert model.n_iter_ == 5 and len(model.loss_curve_) == 5
    assert np.abs(model.means_ - means).max() < 0.1  # continued at the annealed rates
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(X[:, :2])
    with pytest.raises(ValueError, match="partial_fit needs the same layers"):
        model.set_params(n_components=3).partial_fit(X)


def test_fit_streams_a_memmap_and_matches_the_in_memory_fit(tmp_path, monkeypatch):
    X = _digits(300).astype(np.float32)
    path = tmp_path / "digits.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")
    copies = []
    original = torch.tensor

    def spy(data, *args, **kwargs):  # the estimator never copies the memmap whole
        copies.append(np.shape(data))
        return original(data, *args, **kwargs)

    monkeypatch.setattr(torch, "tensor", spy)
    a = DeepConvGMM(5, layers="flat", max_iter=3, random_state=0).fit(mapped)
    assert (300, 64) not in copies
    monkeypatch.undo()
    b = DeepConvGMM(5, layers="flat", max_iter=3, random_state=0).fit(X)
    # Equal up to float32 summation order (streamed batches are read in sorted row order).
    assert_allclose(a.means_, b.means_, rtol=0, atol=1e-5)
    assert_allclose(a.score_samples(mapped), b.score_samples(X), rtol=0, atol=1e-4)
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.float32  # untouched


def test_history_records_every_gmm_layer_per_epoch():
    X = _digits(300)
    model = DeepConvGMM(4, max_iter=3, random_state=0).fit(X)  # "auto": 2 GMM layers on 8x8
    h = model.history_
    assert set(h) == {
        "loss",
        "layer_loss",
        "sigma",
        "learning_rate",
        "images_per_second",
        "validation_score",
    }
    assert h["loss"].shape == (3,) and h["layer_loss"].shape == (3, 2)
    assert_allclose(h["loss"], model.loss_curve_)
    assert_allclose(h["layer_loss"].sum(axis=1), h["loss"])
    assert h["sigma"].shape == h["learning_rate"].shape == (3, 2)
    assert np.isnan(h["validation_score"]).all() and model.validation_scores_ is None
    model.set_params(warm_start=True).fit(X)
    assert model.history_["loss"].shape == (6,)


def test_early_stopping_holds_out_data_and_keeps_the_best_epoch():
    X = _digits(500)
    model = DeepConvGMM(
        6,
        layers="flat",
        max_iter=60,
        early_stopping=True,
        validation_fraction=0.2,
        tol=0.05,
        n_iter_no_change=2,
        random_state=0,
    ).fit(X)
    assert model.converged_ and model.n_iter_ < 60
    scores = np.asarray(model.validation_scores_)
    assert len(scores) == model.n_iter_ and np.isfinite(scores).all()
    assert model.best_validation_score_ == pytest.approx(scores[30:].max())  # annealed at 30
    with pytest.raises(ValueError, match="validation_fraction"):
        DeepConvGMM(2, early_stopping=True, validation_fraction=1.5).fit(X)


def test_keyboard_interrupt_keeps_a_usable_model(blobs, monkeypatch):
    X, _, _ = blobs
    from skdcgmm.nn import DCGMMStack

    calls = {"n": 0}
    original = DCGMMStack.training_losses

    def interrupted(self, x):
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt
        return original(self, x)

    monkeypatch.setattr(DCGMMStack, "training_losses", interrupted)
    with pytest.warns(UserWarning, match="interrupted by the user"):
        model = _fit(X, max_iter=10, batch_size=40)  # 10 steps per epoch: stops in epoch 3
    assert model.n_iter_ == 2 and not model.converged_
    assert np.isfinite(model.score_samples(X)).all() and model.predict(X).shape == (len(X),)


def test_verbose_prints_progress(blobs, capsys, monkeypatch):
    X, _, _ = blobs
    import sys

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    _fit(X, max_iter=2, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["Epoch 1/2", "Epoch 2/2"]


# ---------------------------------------------------------------- GaussianMixture parity
def test_bic_and_aic_follow_gaussian_mixture_formulas(blobs):
    X, _, _ = blobs
    model = _fit(X, layers="flat")
    em = GaussianMixture(4, covariance_type="diag").fit(X)
    n_params = em._n_parameters()  # 2 K D + K - 1 for diagonal covariances
    n = len(X)
    assert model.bic(X) == pytest.approx(-2 * model.score(X) * n + n_params * np.log(n))
    assert model.aic(X) == pytest.approx(-2 * model.score(X) * n + 2 * n_params)
    # Four blobs: four components explain them better than one, despite the extra parameters.
    assert model.bic(X) < _fit(X, n_components=1).bic(X)


def test_bic_and_aic_refuse_deep_models():
    model = DeepConvGMM(3, max_iter=2, random_state=0).fit(_digits(200))
    for criterion in (model.bic, model.aic):
        with pytest.raises(ValueError, match="flat model"):
            criterion(_digits(200))


def test_lower_bound_is_the_kept_epochs_objective(blobs):
    X, _, _ = blobs
    model = _fit(X, max_iter=10)
    assert model.lower_bound_ == pytest.approx(-model.loss_curve_[-1])
    # Annealed, the flat model's max-component objective is (nearly) a lower bound of score.
    assert model.lower_bound_ <= model.score(X) + 1e-2
    stopped = DeepConvGMM(6, layers="flat", max_iter=40, early_stopping=True, random_state=0).fit(
        _digits(500)
    )
    best = int(np.nanargmax(np.where(np.isnan(stopped.validation_scores_), -np.inf,
                                     stopped.validation_scores_)))  # fmt: skip
    assert stopped.lower_bound_ == pytest.approx(-stopped.loss_curve_[best])


def test_n_init_keeps_the_best_start_reproducibly(monkeypatch):
    import skdcgmm._estimator as estimator_module

    X = _digits(400)
    starts = []

    def recording_train(*args, **kwargs):
        result = train(*args, **kwargs)
        starts.append((result.lower_bound, args[0].top.means.detach().clone()))
        return result

    train = estimator_module.train
    monkeypatch.setattr(estimator_module, "train", recording_train)
    best = DeepConvGMM(8, layers="flat", max_iter=6, n_init=4, random_state=0).fit(X)
    assert len(starts) == 4 and len({round(b, 6) for b, _ in starts}) > 1  # starts differ
    kept = max(range(4), key=lambda i: starts[i][0])
    assert best.lower_bound_ == starts[kept][0]
    assert_allclose(best.means_, starts[kept][1][0].double().numpy(), rtol=0, atol=0)
    monkeypatch.undo()
    again = DeepConvGMM(8, layers="flat", max_iter=6, n_init=4, random_state=0).fit(X)
    assert_allclose(best.means_, again.means_, rtol=0, atol=0)
    # The first start is the one n_init=1 makes.
    single = DeepConvGMM(8, layers="flat", max_iter=6, random_state=0).fit(X)
    assert single.lower_bound_ == starts[0][0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        DeepConvGMM(8, layers="flat", max_iter=2, n_init=3, random_state=0).fit(X)
    assert sum(issubclass(w.category, ConvergenceWarning) for w in caught) == 1


def test_auto_batch_rate_and_plan_scale_with_model_and_data():
    # 60,000 rows of a flat K=100 model: batch 1000 (60 steps per epoch), learning rate
    # 0.1 * 1000 / 100 = 1.0 -> 0.2, annealing over 18,000 * sqrt(100) = 180,000 images
    # (3 epochs) of a 6-epoch plan, which ends without a ConvergenceWarning.
    X = np.random.RandomState(0).rand(60_000, 4).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = DeepConvGMM(100, layers="flat", random_state=0).fit(X)
    assert model.n_iter_ <= 6
    rates = model.history_["learning_rate"][:, 0]
    sigmas = model.history_["sigma"][:, 0]
    assert_allclose(rates[0], 1.0 * 0.2 ** (1 / 3), rtol=1e-6)  # end of epoch 1 of 3
    assert_allclose(rates[2:], 0.2)
    assert sigmas[1] > 0.01
    assert_allclose(sigmas[2:], 0.01)
    # An int max_iter keeps the old plan: annealing over its first half.
    half = DeepConvGMM(100, layers="flat", max_iter=4, tol=0, random_state=0).fit(X[:6000])
    assert half.history_["sigma"][0, 0] > 0.01 and half.history_["sigma"][1, 0] == 0.01


@pytest.mark.parametrize("layers", ["flat", "auto"])
def test_top_refit_em_raises_the_exact_likelihood_from_the_sgd_solution(layers):
    X = load_digits().data[:400] / 16.0
    params = {"layers": layers, "max_iter": 4, "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sgd = DeepConvGMM(6, top_refit=None, **params).fit(X)
        em = DeepConvGMM(
            6, top_refit="em", top_refit_min_variance=None, top_refit_shrinkage=0.0, **params
        ).fit(X)  # plain EM at the top layer's own floor
        default = DeepConvGMM(6, **params).fit(X)
    # "auto" (the default) refits a deep stack's top layer at the floor 0.01 with shrinkage
    # 0.5, not a flat one.
    if layers == "flat":
        assert default.em_n_iter_ == 0
        assert torch.equal(default.module_.top.means, sgd.module_.top.means)
    else:
        stack = copy.deepcopy(sgd.module_)
        data = torch.as_tensor(X, dtype=torch.float32).view(len(X), 64, 1)
        (result,) = refit_top(
            stack,
            data,
            shape=(64, 1),
            max_iter=100,
            tol=sgd.tol,
            min_variance=0.01,
            shrinkage=0.5,
        )
        assert default.em_n_iter_ == result.n_iter >= 1
        assert torch.equal(default.module_.top.precisions, stack.top.precisions)
    assert sgd.em_n_iter_ == 0 and 1 <= em.em_n_iter_ <= 100
    # The same SGD run (same seed) below: only the top layer differs.
    for a, b in zip(sgd.module_.layers[:-1], em.module_.layers[:-1]):
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)
    assert em.score(X) > sgd.score(X) + 1.0
    # The refit is skdcgmm._training.refit_top applied to the SGD solution (what
    # benchmarks/bench_extensions.py does on copies).
    stack = copy.deepcopy(sgd.module_)
    data = torch.as_tensor(X, dtype=torch.float32).view(len(X), 64, 1)
    refit_top(stack, data, shape=(64, 1), max_iter=100, tol=sgd.tol)
    for name in ("means", "precisions", "logits"):
        assert torch.equal(getattr(stack.top, name), getattr(em.module_.top, name))
    np.testing.assert_allclose(em.weights_.sum(), 1.0, rtol=1e-6)
    assert (em.covariances_ >= 0.05 * (1 - 1e-5)).all()  # the top layer's variance floor
    names = {"top_refit_min_variance": "min_variance", "top_refit_reg_covar": "reg_variance",
             "top_refit_shrinkage": "shrinkage"}  # fmt: skip

    def refitted(**settings):  # fit with these settings; the same as refit_top on the SGD stack
        settings = {"top_refit_shrinkage": 0.0, **settings}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = DeepConvGMM(6, top_refit="em", **settings, **params).fit(X)
        stack = copy.deepcopy(sgd.module_)
        options = {names[name]: value for name, value in settings.items()}
        refit_top(stack, data, shape=(64, 1), max_iter=100, tol=sgd.tol, **options)
        assert torch.equal(stack.top.precisions, model.module_.top.precisions)
        return model

    # top_refit_min_variance is the refit's floor instead: the same refit, a lower bound.
    low = refitted(top_refit_min_variance=0.005)
    assert (low.covariances_ >= 0.005 * (1 - 1e-5)).all() and low.covariances_.min() < 0.05
    assert low.score(X) > em.score(X)
    # top_refit_reg_covar is added to every refitted variance before the floor applies.
    reg = refitted(top_refit_min_variance=0.005, top_refit_reg_covar=0.02)
    assert (reg.covariances_ >= 0.02 * (1 - 1e-5)).all() and reg.score(X) < low.score(X)
    # top_refit_shrinkage pools the refitted variances: at 1, every component has the same.
    tied = refitted(top_refit_min_variance=0.005, top_refit_shrinkage=1.0)
    first = np.broadcast_to(tied.covariances_[:1], tied.covariances_.shape)
    np.testing.assert_allclose(tied.covariances_, first)
    assert tied.score(X) < low.score(X)  # the unpooled refit fits its training data better
    # partial_fit trains by SGD only.
    assert DeepConvGMM(6, top_refit="em", **params).partial_fit(X).em_n_iter_ == 0


@pytest.mark.parametrize(
    ("layers", "side", "expected"), [("auto", 16, 0.5), ("auto", 8, 0.5), ("flat", 16, 0.0)]
)
def test_auto_shrinkage_pools_the_refit_of_deep_stacks_only(layers, side, expected):
    digits = load_digits().data[:200].reshape(-1, 8, 8) / 16.0
    X = digits.repeat(side // 8, axis=1).repeat(side // 8, axis=2).reshape(len(digits), -1)
    params = {"layers": layers, "top_refit": "em", "max_iter": 2, "random_state": 0}

    def top(**settings):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return DeepConvGMM(3, **params, **settings).fit(X).module_.top.precisions

    default = top()
    assert torch.equal(default, top(top_refit_shrinkage=expected))
    assert not torch.equal(default, top(top_refit_shrinkage=0.0 if expected else 0.5))


def test_top_factors_replace_the_refitted_top_layer():
    X = load_digits().data[:400] / 16.0
    params = {"max_iter": 4, "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        diagonal = DeepConvGMM(6, **params).fit(X)
        model = DeepConvGMM(6, top_factors=5, **params).fit(X)
    X_before = X.copy()
    # The same SGD and EM refit, then the factor fit from the refitted layer on its inputs.
    stack = copy.deepcopy(diagonal.module_)
    for a, b in zip(stack.layers[:-1], model.module_.layers[:-1]):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    top = model.module_.top
    assert isinstance(top, FactorGMMLayer) and top.n_factors == 5
    data = torch.as_tensor(X, dtype=torch.float32).view(len(X), 64, 1)
    features = diagonal.module_.top_input(data)
    _, expected = fit_factor_layer(
        diagonal.module_.top, lambda: features.split(100), 5, tol=model.tol,
        min_variance=0.01, generator=torch.Generator().manual_seed(model._seeds["fit"]),
    )  # fmt: skip
    assert model.em_n_iter_ == diagonal.em_n_iter_ + expected.n_iter
    assert_allclose(model.score(X), expected.log_likelihood[-1], rtol=1e-4)
    np.testing.assert_array_equal(X, X_before)
    # Every inference path reads the factor layer; sampling draws from its Gaussians.
    proba = model.predict_proba(X)
    assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(model.predict(X), proba.argmax(1))
    assert np.isfinite(model.score_samples(X)).all()
    samples, labels = model.sample(20)
    assert samples.shape == (20, 64) and np.isfinite(samples).all() and labels.shape == (20,)
    assert model.means_.shape == model.covariances_.shape == (6, top.input_shape[2])
    # Pickling rebuilds the factor layer; warm starts continue from its diagonal twin and fit
    # the factors again, partial_fit leaves the diagonal layer.
    loaded = pickle.loads(pickle.dumps(model))
    assert isinstance(loaded.module_.top, FactorGMMLayer)
    assert_allclose(loaded.score_samples(X), model.score_samples(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        loaded.set_params(warm_start=True, max_iter=1).fit(X)
    assert isinstance(loaded.module_.top, FactorGMMLayer) and np.isfinite(loaded.score(X))
    assert type(model.partial_fit(X).module_.top).__name__ == "GMMLayer"
    assert clone(model).get_params()["top_factors"] == 5


@pytest.mark.parametrize(
    "params, match",
    [
        ({"top_refit": None}, "needs the top-layer EM refit"),
        ({"top_factors": 64 * 1000}, "smaller than the top layer's input dimension"),
        ({"layers": "flat", "top_refit": "auto"}, "top_refit='auto' does not refit"),
    ],
)
def test_top_factors_errors_come_before_training(params, match, monkeypatch):
    import skdcgmm._estimator as estimator_module

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the error")

    monkeypatch.setattr(estimator_module, "train", no_training)
    params = {"top_factors": 3, "top_refit": "em", **params}
    with pytest.raises(ValueError, match=match):
        DeepConvGMM(3, max_iter=1, **params).fit(load_digits().data[:50] / 16.0)


def test_fit_inside_no_grad_still_trains():
    X = load_digits().data[:200] / 16.0
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        inside = DeepConvGMM(4, layers="flat", max_iter=2, random_state=0).fit(X)
        assert not torch.is_grad_enabled()  # the caller's mode is back after fit
    outside = DeepConvGMM(4, layers="flat", max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        outside.fit(X)
    assert_allclose(inside.means_, outside.means_, rtol=0, atol=0)
