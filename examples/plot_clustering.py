"""
=========================================
Clustering digits: deep vs flat mixtures
=========================================

Cluster scikit-learn's 8x8 digits into 10 groups with a deep convolutional
:class:`~skdcgmm.DeepConvGMM` (``layers="auto"``), a flat one (``layers="flat"``, one GMM over
the whole image) and :class:`~sklearn.mixture.GaussianMixture` with diagonal covariances, and
compare the clusters with the true digit labels:

* **accuracy** under the best one-to-one matching of clusters to digits (Hungarian algorithm,
  :func:`skdcgmm.metrics.clustering_accuracy`),
* **NMI**, normalised mutual information
  (:func:`~sklearn.metrics.normalized_mutual_info_score`),
* **ARI**, the adjusted Rand index (:func:`~sklearn.metrics.adjusted_rand_score`).

The labels are only used for evaluation; all models are fitted without them. Mixture models
trained from random starts land in different local optima, so every model is fitted with three
seeds and the table shows the mean and spread.
"""

# %%
# Fit the models
# --------------
import warnings

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix
from sklearn.mixture import GaussianMixture

from skdcgmm import DeepConvGMM
from skdcgmm.metrics import clustering_accuracy

warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)
X = X / 16.0  # pixels in [0, 1]

models = {
    'DeepConvGMM("auto")': lambda seed: DeepConvGMM(10, max_iter=20, random_state=seed),
    'DeepConvGMM("flat")': lambda seed: DeepConvGMM(
        10, layers="flat", max_iter=20, random_state=seed
    ),
    "GaussianMixture(diag)": lambda seed: GaussianMixture(
        10, covariance_type="diag", reg_covar=0.05, random_state=seed
    ),
}
seeds = [0, 1, 2]
scores = {}  # model name -> (n_seeds, 3) array of accuracy, NMI, ARI
runs = {}  # model name -> (accuracy, fitted model, labels) of every seed
for name, make in models.items():
    for seed in seeds:
        model = make(seed).fit(X)
        labels = model.predict(X)
        row = [
            clustering_accuracy(y, labels),
            normalized_mutual_info_score(y, labels),
            adjusted_rand_score(y, labels),
        ]
        scores.setdefault(name, []).append(row)
        runs.setdefault(name, []).append((row[0], model, labels))
    scores[name] = np.array(scores[name])

# %%
# Scores
# ------
# The deep model sees the digits through 3x3 patches and a pooled map of local features,
# which tolerates small shifts and stroke variations that a flat mixture over whole images
# has to spend components on.
header = f"{'model':<24}{'accuracy':>16}{'NMI':>16}{'ARI':>16}"
print(header)
print("-" * len(header))
for name, values in scores.items():
    cells = "".join(f"{m:>10.3f} ± {s:.3f}" for m, s in zip(values.mean(0), values.std(0)))
    print(f"{name:<24}{cells}")

best_name = max(scores, key=lambda name: scores[name][:, 0].mean())
best_accuracy, best_model, best_labels = max(runs[best_name], key=lambda run: run[0])
print(f"\nbest model (mean accuracy): {best_name}; its best seed reaches {best_accuracy:.3f}")

# %%
# Match clusters to digits
# ------------------------
# Cluster numbers are arbitrary. The Hungarian matching used by ``clustering_accuracy`` gives
# every cluster the digit it overlaps most with (one cluster per digit); renaming the clusters
# that way makes a confusion matrix readable.
table = contingency_matrix(y, best_labels)  # (digits, non-empty clusters)
digits, columns = linear_sum_assignment(table, maximize=True)
clusters = np.unique(best_labels)[columns]
digit_of_cluster = dict(zip(clusters, digits))
matched = np.array([digit_of_cluster.get(c, -1) for c in best_labels])

# %%
# Plots
# -----
# Left: the confusion matrix of the matched clusters. Right: for every cluster (in the order
# of its matched digit), the eight images it is most confident about.
try:
    import matplotlib.pyplot as plt
except ImportError:  # plotting is optional
    plt = None

if plt is not None:
    from sklearn.metrics import ConfusionMatrixDisplay

    fig = plt.figure(figsize=(11, 5))
    ax_cm = fig.add_subplot(1, 2, 1)
    ConfusionMatrixDisplay.from_predictions(
        y, matched, labels=np.arange(10), ax=ax_cm, colorbar=False, cmap="Blues"
    )
    ax_cm.set_xlabel("cluster (named by matched digit)")
    ax_cm.set_ylabel("true digit")
    ax_cm.set_title(f"{best_name}: accuracy {best_accuracy:.3f}")

    confidence = best_model.predict_proba(X).max(axis=1)
    n_show = 8
    grid = fig.add_gridspec(10, n_show, left=0.55, right=0.98, top=0.92, bottom=0.08)
    for row, cluster in enumerate(clusters[np.argsort(digits)]):
        members = np.flatnonzero(best_labels == cluster)
        members = members[np.argsort(-confidence[members])][:n_show]
        for col in range(n_show):
            ax = fig.add_subplot(grid[row, col])
            ax.set_axis_off()
            if col < len(members):
                ax.imshow(X[members[col]].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            if col == 0:
                ax.text(-2, 3.5, str(digit_of_cluster[cluster]), ha="right", va="center")
    fig.suptitle("the most confident members of every cluster", x=0.76, y=0.98)
    fig.savefig("clustering_digits.png", dpi=100)
    plt.show()
