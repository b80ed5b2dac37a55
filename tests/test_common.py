"""scikit-learn's estimator checks on the default and a small non-default configuration."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skdcgmm import GMM, DeepConvGMM
from skdcgmm.layers import Fold

ESTIMATORS = [
    DeepConvGMM(),
    DeepConvGMM(
        n_components=3,
        layers=(Fold(), GMM(min_variance=0.01, lr_precisions=1.0)),
        max_iter=4,
        batch_size=8,
        annealing="plateau",
        learning_rate=0.02,
    ),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    # No check is waived.
    check(estimator)
