"""DeepConvGMMOutlierDetector: scikit-learn's outlier-detector API on a DeepConvGMM."""

import inspect
import pickle

import numpy as np
import pytest
from sklearn.base import clone, is_outlier_detector
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils import get_tags
from sklearn.utils._testing import assert_allclose
from sklearn.utils.estimator_checks import parametrize_with_checks

import skdcgmm._estimator as estimator_module
from skdcgmm import DeepConvGMM, DeepConvGMMOutlierDetector
from skdcgmm._training import refit_top
from skdcgmm.layers import resolve_layers

from .conftest import make_blobs_data

# The default configuration with a short training (5 epochs of 10 steps on the checks' 300
# blobs): with fewer epochs the "auto" fence may flag none of the checks' training points,
# which check_outliers_train and check_outliers_fit_predict require.
CHECKED = [DeepConvGMMOutlierDetector(n_components=3, max_iter=5, batch_size=30)]

FAST = {"n_components": 4, "max_iter": 5, "batch_size": 40, "random_state": 0}


@parametrize_with_checks(CHECKED)
def test_sklearn_compatible_outlier_detector(estimator, check):
    # No check is waived (the two skipped in this environment need pandas and SCIPY_ARRAY_API).
    check(estimator)


@pytest.fixture(scope="module")
def blobs_X():
    X, _, _ = make_blobs_data(n_per=100)  # (400, 3)
    return X


@pytest.fixture(scope="module")
def fitted(blobs_X):
    return DeepConvGMMOutlierDetector(contamination=0.1, **FAST).fit(blobs_X)


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.5, random_state=0, stratify=y)


def test_is_an_outlier_detector():
    detector = DeepConvGMMOutlierDetector()
    assert is_outlier_detector(detector)
    assert get_tags(detector).estimator_type == "outlier_detector"
    assert isinstance(detector, DeepConvGMM)  # fitting, sampling, persistence are inherited
    assert detector.contamination == "auto"


def test_init_lists_every_parameter_of_deepconvgmm():
    # sklearn reads the parameters from the signature: it must follow DeepConvGMM's.
    parent = inspect.signature(DeepConvGMM).parameters
    child = inspect.signature(DeepConvGMMOutlierDetector).parameters
    assert list(child) == [*parent, "contamination"]
    for name, param in parent.items():
        assert child[name].default == param.default, name  # "auto" may resolve differently
        assert child[name].kind == param.kind, name
    assert set(DeepConvGMMOutlierDetector._parameter_constraints) == {*child}
    doc = DeepConvGMMOutlierDetector.__doc__
    for name in child:
        assert f"\n    {name} : " in doc, name


def test_defaults_are_deepconvgmms(monkeypatch):
    # The detector fits DeepConvGMM's defaults (C49, refit floor 0.005 and
    # shrinkage 0.5 from 16x16 on): they detect outliers best of the settings measured.
    refits = []

    def recording_refit(*args, min_variance, shrinkage, **kwargs):
        refits.append((min_variance, shrinkage))
        return refit_top(*args, min_variance=min_variance, shrinkage=shrinkage, **kwargs)

    monkeypatch.setattr(estimator_module, "refit_top", recording_refit)
    X = np.random.RandomState(0).rand(40, 16 * 16)
    for data, preset in ((X, "C49"), (X[:, :64], "auto")):  # large and small images
        detector = DeepConvGMMOutlierDetector(2, max_iter=1, random_state=0).fit(data)
        model = DeepConvGMM(2, max_iter=1, random_state=0).fit(data)
        assert detector.layers_ == model.layers_ == resolve_layers(preset, detector.image_shape_)
        assert_allclose(detector.means_, model.means_)  # the same fit, seed for seed
    assert refits == [(0.005, 0.5), (0.005, 0.5), (0.01, 0.5), (0.01, 0.5)]
    parent, doc = DeepConvGMM.__doc__, DeepConvGMMOutlierDetector.__doc__
    start = parent.index("\n    n_components : ")
    assert parent[start : parent.index("\n\n    Attributes\n")] in doc


@pytest.mark.parametrize(
    ("estimator", "old"),
    [(DeepConvGMMOutlierDetector, "C"), (DeepConvGMMOutlierDetector, "E"), (DeepConvGMM, "C")],
)
def test_model_fitted_with_an_earlier_auto_continues_with_it(estimator, old, monkeypatch):
    X = np.random.RandomState(0).rand(40, 16 * 16)
    monkeypatch.setattr(estimator, "_auto_layers", old)
    model = estimator(2, max_iter=1, random_state=0).fit(X)
    monkeypatch.undo()  # as a model saved by an earlier version and loaded now
    model.partial_fit(X)
    assert model.layers_ == resolve_layers(old, (16, 16, 1))
    assert model.layers_ != resolve_layers("auto", (16, 16, 1))
    with pytest.raises(ValueError, match="same layers"):
        model.set_params(layers="flat").partial_fit(X)


def test_predict_is_plus_minus_one_and_agrees_with_decision(fitted, blobs_X):
    labels = fitted.predict(blobs_X)
    assert labels.dtype.kind == "i"
    assert set(np.unique(labels)) == {-1, 1}
    decision = fitted.decision_function(blobs_X)
    assert_allclose(decision, fitted.score_samples(blobs_X) - fitted.offset_)
    np.testing.assert_array_equal(labels, np.where(decision >= 0, 1, -1))


@pytest.mark.parametrize("contamination", [0.01, 0.1, 0.25, 0.5])
def test_fraction_flagged_on_training_data_is_contamination(fitted, blobs_X, contamination):
    # fit_predict refits with the new contamination; offset_ is then that percentile of the
    # training scores, and the labels agree with predict on the same data.
    detector = clone(fitted).set_params(contamination=contamination)
    labels = detector.fit_predict(blobs_X)
    n = len(blobs_X)
    assert abs(np.mean(labels == -1) - contamination) <= 1.0 / n
    np.testing.assert_array_equal(labels, detector.predict(blobs_X))
    scores = detector.score_samples(blobs_X)
    assert detector.offset_ == pytest.approx(np.percentile(scores, 100 * contamination))


def test_fit_predict_is_not_the_clusters(blobs_X):
    detector = DeepConvGMMOutlierDetector(**FAST)
    labels = detector.fit_predict(blobs_X)
    assert set(np.unique(labels)) <= {-1, 1}
    np.testing.assert_array_equal(labels, detector.fit(blobs_X).predict(blobs_X))
    # The clusters stay available through the responsibilities.
    proba = detector.predict_proba(blobs_X)
    assert proba.shape == (len(blobs_X), FAST["n_components"])
    assert_allclose(proba.sum(axis=1), 1.0)
    assert detector.score(blobs_X) == pytest.approx(detector.score_samples(blobs_X).mean())


def test_auto_is_tukeys_lower_fence(blobs_X):
    rng = np.random.RandomState(1)
    far = rng.uniform(3.0, 4.0, (8, blobs_X.shape[1]))  # blobs live in [0, 1]
    X = np.vstack([blobs_X, far])
    detector = DeepConvGMMOutlierDetector(**FAST).fit(X)
    scores = detector.score_samples(X)
    q1, q3 = np.percentile(scores, [25, 75])
    assert detector.offset_ == pytest.approx(q1 - 1.5 * (q3 - q1))
    labels = detector.predict(X)
    assert np.all(labels[-8:] == -1)  # the planted outliers are all flagged ...
    assert np.mean(labels[:-8] == -1) < 0.05  # ... and few of the clean points


@pytest.mark.parametrize("contamination", [0.0, -0.1, 0.6, 1.0, "most", None, [0.1]], ids=repr)
def test_bad_contamination_raises(blobs_X, contamination):
    detector = DeepConvGMMOutlierDetector(contamination=contamination, **FAST)
    with pytest.raises(ValueError, match="'contamination' parameter"):
        detector.fit(blobs_X)
    assert not hasattr(detector, "offset_")


def test_unfitted_decision_function_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DeepConvGMMOutlierDetector().decision_function(np.zeros((2, 3)))


def test_pipeline(blobs_X):
    pipe = make_pipeline(MinMaxScaler(), DeepConvGMMOutlierDetector(contamination=0.1, **FAST))
    labels = pipe.fit(blobs_X).predict(blobs_X)
    assert set(np.unique(labels)) == {-1, 1}
    assert_allclose(
        pipe.decision_function(blobs_X),
        pipe.score_samples(blobs_X) - pipe[-1].offset_,
    )
    np.testing.assert_array_equal(pipe.fit_predict(blobs_X), labels)


def test_clone_and_pickle_give_the_same_decisions(fitted, blobs_X):
    expected = fitted.decision_function(blobs_X)
    refit = clone(fitted).fit(blobs_X)  # same random_state: the same model
    assert_allclose(refit.decision_function(blobs_X), expected, rtol=1e-6, atol=1e-6)
    restored = pickle.loads(pickle.dumps(fitted))
    assert restored.offset_ == fitted.offset_
    np.testing.assert_array_equal(restored.decision_function(blobs_X), expected)
    np.testing.assert_array_equal(restored.predict(blobs_X), fitted.predict(blobs_X))


def test_failed_refit_keeps_model_and_offset(fitted, blobs_X):
    detector = pickle.loads(pickle.dumps(fitted))
    offset = detector.offset_
    with pytest.raises(ValueError):
        detector.fit(blobs_X[:, :2].copy() * np.nan)
    assert detector.offset_ == offset
    assert_allclose(detector.decision_function(blobs_X), fitted.decision_function(blobs_X))


def test_training_warnings_point_at_the_caller(blobs_X):
    with pytest.warns(ConvergenceWarning) as record:
        DeepConvGMMOutlierDetector(**{**FAST, "max_iter": 1}).fit(blobs_X)
    assert {w.filename for w in record} == {__file__}


def test_partial_fit_sets_the_offset_from_the_chunk(blobs_X):
    detector = DeepConvGMMOutlierDetector(contamination=0.2, **FAST)
    if not hasattr(detector, "partial_fit"):
        pytest.skip("DeepConvGMM has no partial_fit")
    for chunk in np.array_split(blobs_X, 2):
        detector.partial_fit(chunk)
        scores = detector.score_samples(chunk)
        assert detector.offset_ == pytest.approx(np.percentile(scores, 20))


def test_detects_other_digits(digits_split):
    # One-class protocol on scikit-learn's 8x8 digits: fit on the zeros of one half, score
    # the other half. Measured over random_state 0-3: ROC-AUC 0.9998-1.0, held-out zeros
    # kept 96.6-100 %, other digits flagged 99.9-100 % (chance: AUC 0.5).
    X_train, X_test, y_train, y_test = digits_split
    detector = DeepConvGMMOutlierDetector(n_components=5, random_state=0)
    detector.fit(X_train[y_train == 0])
    is_inlier = y_test == 0
    auc = roc_auc_score(is_inlier, detector.decision_function(X_test))
    assert auc > 0.95
    labels = detector.predict(X_test)
    assert np.mean(labels[is_inlier] == 1) > 0.85  # "auto" keeps most held-out zeros
    assert np.mean(labels[~is_inlier] == -1) > 0.9  # and flags most other digits
