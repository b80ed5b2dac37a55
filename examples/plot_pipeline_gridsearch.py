"""
=====================================================
Model selection with Pipeline and GridSearchCV
=====================================================

:class:`~skdcgmm.DeepConvGMM` is a scikit-learn estimator, so its hyper-parameters can be
tuned with :class:`~sklearn.model_selection.GridSearchCV` like any other. Which *score* the
search maximises matters, though, and this example shows two searches on scikit-learn's 8x8
digits that use a meaningful one each:

1. an **unsupervised** search over ``n_components`` of the *flat* model, scored by
   DeepConvGMM's default :meth:`~skdcgmm.DeepConvGMM.score`, the mean held-out
   log-likelihood;
2. a **supervised** search over ``n_components`` *and* the architecture (``layers``) of a
   ``DeepConvGMM -> LogisticRegression`` pipeline, scored by the pipeline's default score, the
   classification accuracy of a linear read-out of the ``transform`` features (with
   ``transform_layer=2``, the paper's linear read-out of the pooled first GMM layer).

.. note::
   ``DeepConvGMM.score`` is the mean log-likelihood under the *top* GMM layer. Only for
   ``layers="flat"`` is this the log-density of the images; for a deep stack it is the
   log-likelihood of the responsibilities of the layers below, which live in a different
   space for every architecture. Log-likelihoods of different architectures are therefore
   **not comparable**, and a grid over ``layers`` must not be scored by them. The first
   search keeps the architecture fixed (same space, comparable scores); the second compares
   architectures by a downstream score that does not depend on the feature space.
"""

# %%
# Data
# ----
# Pixels scaled to [0, 1]; a quarter of the images is kept aside as a final test set.
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline

from skdcgmm import DeepConvGMM

# Short fits (a few epochs) keep this example fast; they may stop before the tolerance.
warnings.filterwarnings("ignore", category=ConvergenceWarning)

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
MAX_ITER = 5  # epochs per fit


def print_results(search, params):
    """One line per candidate of ``search.cv_results_``: parameters, mean ± std, rank."""
    results = search.cv_results_
    for i in np.argsort(results["rank_test_score"]):
        values = [results["param_" + p][i] for p in params]
        values = ", ".join(
            f"{p.split('__')[-1]}={'default' if np.ma.is_masked(v) else v}"
            for p, v in zip(params, values)
        )
        print(
            f"  {values:<48} {results['mean_test_score'][i]:8.3f} "
            f"± {results['std_test_score'][i]:.3f}   rank {results['rank_test_score'][i]}"
        )


# %%
# 1. Unsupervised: the number of components of the flat model
# ------------------------------------------------------------
# With ``y`` left out, GridSearchCV scores every candidate by ``DeepConvGMM.score`` on the
# held-out fold: the mean log-density of unseen images. More components fit the training
# folds better, but past some size they model peculiarities of those folds (and, in these
# short fits, each gets fewer updates), so the held-out log-likelihood falls again.
n_components_grid = [5, 10, 20, 40, 80]
density_search = GridSearchCV(
    DeepConvGMM(layers="flat", max_iter=MAX_ITER, random_state=0),
    {"n_components": n_components_grid},
    cv=3,
)
density_search.fit(X_train)

print("Held-out log-likelihood of the flat model (3-fold CV):")
print_results(density_search, ["n_components"])
print(f"best: {density_search.best_params_}")
print(f"test-set log-likelihood of the refitted best model: {density_search.score(X_test):.2f}")

# %%
# 2. Supervised: architecture and size, scored by a linear read-out
# -----------------------------------------------------------------
# In a pipeline ending in a classifier, GridSearchCV uses the pipeline's ``score``: the
# accuracy of :class:`~sklearn.linear_model.LogisticRegression` on the DCGMM features. This
# number means the same thing whatever the architecture, so ``layers`` can be searched too.
#
# ``transform`` returns the output of layer ``transform_layer``: by default the top layer's
# responsibilities (``n_components`` features, available for every architecture). A second
# grid reads the pooled *first* GMM layer of the deep model instead (``transform_layer=2``:
# the 3x3 positions x 25 components of the ``"auto"`` stack on 8x8 images), the layer the
# paper's linear read-out uses. Grids can be given as a list of dicts, so this candidate is
# only tried for the deep architecture, where layer 2 exists.
pipeline = make_pipeline(
    DeepConvGMM(max_iter=MAX_ITER, random_state=0), LogisticRegression(max_iter=1000)
)
param_grid = [
    {"deepconvgmm__layers": ["flat", "auto"], "deepconvgmm__n_components": [10, 30]},
    {
        "deepconvgmm__layers": ["auto"],
        "deepconvgmm__n_components": [10],
        "deepconvgmm__transform_layer": [2],
    },
]
readout_search = GridSearchCV(pipeline, param_grid, cv=3)
readout_search.fit(X_train, y_train)

print("\nLinear read-out accuracy (3-fold CV):")
print_results(
    readout_search,
    ["deepconvgmm__layers", "deepconvgmm__n_components", "deepconvgmm__transform_layer"],
)
print(f"best: {readout_search.best_params_}")
test_accuracy = readout_search.score(X_test, y_test)
print(f"test-set accuracy of the refitted best pipeline: {test_accuracy:.3f}")

# %%
# Scores against the number of components
# ---------------------------------------
# Left: the held-out log-likelihood of the flat model (comparable across ``n_components``
# because the architecture is fixed). Right: the read-out accuracy of every architecture.
try:
    import matplotlib.pyplot as plt
except ImportError:  # plotting is optional
    plt = None

if plt is not None:
    fig, (ax_ll, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    results = density_search.cv_results_
    ax_ll.errorbar(
        n_components_grid,
        results["mean_test_score"],
        yerr=results["std_test_score"],
        marker="o",
        capsize=3,
    )
    ax_ll.set_xscale("log")
    ax_ll.set_xticks(n_components_grid, [str(k) for k in n_components_grid])
    ax_ll.minorticks_off()
    ax_ll.set_xlabel("n_components")
    ax_ll.set_ylabel("mean held-out log-likelihood")
    ax_ll.set_title('unsupervised: layers="flat"')

    results = readout_search.cv_results_
    layers = np.asarray(results["param_deepconvgmm__layers"], dtype=object)
    sizes = np.asarray(results["param_deepconvgmm__n_components"], dtype=float)
    top = np.ma.getmaskarray(results["param_deepconvgmm__transform_layer"])  # not set: top
    for name in ["flat", "auto"]:
        rows = np.flatnonzero((layers == name) & top)
        ax_acc.errorbar(
            sizes[rows],
            results["mean_test_score"][rows],
            yerr=results["std_test_score"][rows],
            marker="o",
            capsize=3,
            label=f'layers="{name}", top-layer features',
        )
    rows = np.flatnonzero(~top)
    ax_acc.errorbar(
        sizes[rows],
        results["mean_test_score"][rows],
        yerr=results["std_test_score"][rows],
        marker="s",
        linestyle="none",
        capsize=3,
        label='layers="auto", transform_layer=2',
    )
    ax_acc.set_xticks(sorted(set(sizes.tolist())))
    ax_acc.set_xlabel("n_components (top layer)")
    ax_acc.set_ylabel("mean CV accuracy")
    ax_acc.set_title("supervised: linear read-out")
    ax_acc.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig("pipeline_gridsearch_digits.png", dpi=100)
    plt.show()
