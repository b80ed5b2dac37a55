"""
==============================================
Outlier detection on digits with a DeepConvGMM
==============================================

:class:`~skdcgmm.DeepConvGMMOutlierDetector` is used like
:class:`~sklearn.ensemble.IsolationForest`: fit it on normal data, then ``predict`` flags
what does not look like it (``-1``) and ``decision_function`` ranks how abnormal it is.
Here the normal data are scikit-learn's 8x8 digits 0 to 4, and the digits 5 to 9 play the
outliers. Its ROC curve is compared with that of a
:class:`~sklearn.mixture.GaussianMixture` with diagonal covariances, whose ``score_samples``
(the log-density) is an outlier score too.
"""

# %%
# Normal digits for training, all digits for testing
# --------------------------------------------------
# Pixels are scaled to [0, 1]. Both models see only the normal digits of the training half;
# the test half holds normal digits and outliers.
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import RocCurveDisplay, roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split

from skdcgmm import DeepConvGMMOutlierDetector

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)
normal_digits = [0, 1, 2, 3, 4]
X_train = X_train[np.isin(y_train, normal_digits)]
is_inlier = np.isin(y_test, normal_digits)
print(
    f"{len(X_train)} normal training digits; test: {is_inlier.sum()} normal, "
    f"{(~is_inlier).sum()} outliers"
)

# %%
# Fit both models
# ---------------
# The detector uses the default architecture for 8x8 images (3x3 patches, a GMM per patch,
# pooling, and a top GMM of 10 components); ``reg_covar=0.05`` gives the Gaussian mixture the
# same variance floor as the DCGMM's ``min_variance``. ``contamination="auto"`` (the default)
# sets the threshold ``offset_`` at Tukey's lower fence of the training log-likelihoods.
detector = DeepConvGMMOutlierDetector(n_components=10, random_state=0)
detector.fit(X_train)
gmm = GaussianMixture(10, covariance_type="diag", reg_covar=0.05, random_state=0)
gmm.fit(X_train)

scores = {
    "DeepConvGMMOutlierDetector": detector.decision_function(X_test),
    "GaussianMixture(diag)": gmm.score_samples(X_test),
}
for name, score in scores.items():
    print(f"{name:>26}: ROC-AUC {roc_auc_score(is_inlier, score):.3f}")

# %%
# What ``predict`` flags
# ----------------------
# ``predict`` returns +1 for inliers and -1 for outliers, like every scikit-learn outlier
# detector. The fence flags few of the normal test digits and most of the others.
flags = detector.predict(X_test)
print(f"normal test digits kept: {np.mean(flags[is_inlier] == 1):.1%}")
for digit in range(5, 10):
    print(f"digit {digit} flagged as outlier: {np.mean(flags[y_test == digit] == -1):.1%}")

# %%
# ROC curves and the most abnormal test digits
# --------------------------------------------
# Normal digits are the positive class and higher scores mean more normal, as in
# ``roc_auc_score(is_inlier, score)``.
fig = plt.figure(figsize=(10, 4.2))
roc_fig, digits_fig = fig.subfigures(1, 2, width_ratios=[1, 1.2])
ax = roc_fig.subplots()
for name, score in scores.items():
    RocCurveDisplay.from_predictions(is_inlier, score, name=name, ax=ax)
ax.plot([0, 1], [0, 1], "k:", label="chance")
ax.set(
    title="Digits 0-4 normal, 5-9 outliers",
    xlabel="False positive rate (outliers kept)",
    ylabel="True positive rate (normal kept)",
)
ax.legend(loc="lower right", fontsize=8)

order = np.argsort(scores["DeepConvGMMOutlierDetector"])[:18]  # the lowest scores
axes = digits_fig.subplots(3, 6)
for ax, i in zip(axes.ravel(), order):
    ax.imshow(X_test[i].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(f"{y_test[i]} ({'out' if flags[i] == -1 else 'in'})", fontsize=8)
    ax.set_axis_off()
digits_fig.suptitle("Most abnormal test digits (label, prediction)", fontsize=10)
try:
    here = Path(__file__).resolve().parent  # next to the script, wherever it is run from
except NameError:  # run cell by cell
    here = Path.cwd()
fig.savefig(here / "outlier_detection_digits.png", dpi=100)
if matplotlib.get_backend().lower() != "agg":  # non-interactive: nothing to show
    plt.show()
