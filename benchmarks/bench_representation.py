"""Where a deep model's outlier score is won or lost: its features, or its top GMM layer?

One-class protocol of ``bench_outliers.py`` (fit on the training images of class c, score the
whole test set, class c is the inliers), with three scores per class:

* ``GaussianMixture(diag)`` on the pixels, with the best ``reg_covar`` of a small grid (the
  baseline of ``bench_outliers.py``);
* the deep model's ``score_samples`` (its top GMM layer, trained by SGD);
* ``GaussianMixture(diag)``, fitted the same way, on the input of the deep model's top GMM
  layer (for "C", the pooled first-layer responsibilities), read with ``transform``.

Where the third score is below the first, a top layer of the same kind (K = 10, diagonal)
fitted by EM instead of SGD does not reach the pixel baseline either: what is missing is in the
features, not in the training of the top layer.

Run: ``SKDCGMM_DATA=../shared/data python benchmarks/bench_representation.py``
"""

from __future__ import annotations

import numpy as np
from _common import best_gaussian_mixture, deep, fit_timed, holdout, load
from bench_outliers import arguments, auc_row, save_means

K_ONE_CLASS = 10


def top_input(model, X) -> np.ndarray:
    """The input of the deep model's top GMM layer for ``X``: the output of the layer below."""
    return model.set_params(transform_layer=-2).transform(X)


def class_rows(name: str, cls: int, X, Xt, inliers, args) -> list[dict]:
    X_fit, X_val = holdout(X, seed=args.seed)
    em, _, reg = best_gaussian_mixture(K_ONE_CLASS, X_fit, X_val, args.seed)
    model = fit_timed(deep(K_ONE_CLASS, args.deep, args.seed, args.epochs), X)[0]
    F_fit, F_val, F_test = (top_input(model, A) for A in (X_fit, X_val, Xt))
    em_top, _, reg_top = best_gaussian_mixture(K_ONE_CLASS, F_fit, F_val, args.seed)
    scored = [
        ("GaussianMixture(diag) on pixels", em.score_samples(Xt), reg),
        (f"DeepConvGMM({args.deep})", model.score_samples(Xt), None),
        (f"GaussianMixture(diag) on {args.deep}'s top-layer input", em_top.score_samples(F_test),
         reg_top),
    ]  # fmt: skip
    return [
        auc_row(name, "one-class", cls, label, K_ONE_CLASS, reg_covar, inliers, score)
        for label, score, reg_covar in scored
    ]


def main() -> None:
    args = arguments(__doc__.splitlines()[0], "representation").parse_args()

    rows = []
    for name in args.datasets:
        X, y, Xt, yt = load(name)
        for cls in args.classes:
            rows += class_rows(name, cls, X[y == cls], Xt, yt == cls, args)
    save_means(rows, args)


if __name__ == "__main__":
    main()
