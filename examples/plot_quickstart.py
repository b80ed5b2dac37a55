"""
==========================================
Quick start: a flat DeepConvGMM on digits
==========================================

Fit a flat :class:`~skdcgmm.DeepConvGMM` to scikit-learn's 8x8 digits, compare it with
:class:`~sklearn.mixture.GaussianMixture`, and look at the learned component means and at
samples drawn from the model.
"""

# %%
# Fit both models on the same data
# --------------------------------
# Pixels are scaled to [0, 1]; both models use a minimum variance of 0.05.
import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import normalized_mutual_info_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split

from skdcgmm import DeepConvGMM
from skdcgmm.metrics import clustering_accuracy

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)

# ``layers="flat"``: one GMM over the whole image, a density comparable with GaussianMixture's.
dcgmm = DeepConvGMM(n_components=10, layers="flat", random_state=0).fit(X_train)
em = GaussianMixture(10, covariance_type="diag", reg_covar=0.05, random_state=0).fit(X_train)

for name, model in [("DeepConvGMM", dcgmm), ("GaussianMixture", em)]:
    labels = model.predict(X_test)
    print(
        f"{name:>16}: test log-likelihood {model.score(X_test):7.2f}, "
        f"accuracy {clustering_accuracy(y_test, labels):.3f}, "
        f"NMI {normalized_mutual_info_score(y_test, labels):.3f}"
    )

# %%
# Component means and samples
# ---------------------------
# Each component's mean is an 8x8 prototype; samples add the fitted per-pixel noise.
samples, components = dcgmm.sample(10)

try:
    import matplotlib.pyplot as plt
except ImportError:  # plotting is optional
    plt = None

if plt is not None:
    fig, axes = plt.subplots(2, 10, figsize=(10, 2.4))
    for i in range(10):
        axes[0, i].imshow(dcgmm.means_[i].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        axes[1, i].imshow(np.clip(samples[i], 0, 1).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        axes[1, i].set_title(f"k={components[i]}", fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[0, 0].set_title("means", fontsize=8, loc="left")
    fig.tight_layout()
    plt.show()
