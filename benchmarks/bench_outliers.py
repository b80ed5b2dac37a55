"""Outlier detection by ROC-AUC of ``score_samples``: deep vs flat on MNIST and Fashion-MNIST.

Two protocols (design §5): *one-class* — fit on the training images of class c, score the whole
test set, class c is the positive (inlier) class; *leave-one-class-out* — fit on the 9 other
classes, the held-out class is the outliers. Per-class and mean ROC-AUC for the deep model, the
flat ``DeepConvGMM`` and ``GaussianMixture(diag)`` with the best ``reg_covar`` of a small grid
(by held-out log-likelihood). Both DeepConvGMMs train with the defaults (``max_iter="auto"``).

Run: ``SKDCGMM_DATA=../shared/data python benchmarks/bench_outliers.py``
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import AUTO_LAYERS, best_gaussian_mixture, deep, epochs, fit_timed, holdout, load, save
from sklearn.metrics import roc_auc_score

K_ONE_CLASS = 10
K_LEAVE_OUT = 25


def auc_rows(name, protocol, cls, inliers_test, X_train, Xt, k, args):
    X_fit, X_val = holdout(X_train, seed=args.seed)
    em, _, reg = best_gaussian_mixture(k, X_fit, X_val, args.seed)
    models = [
        ("GaussianMixture(diag, best reg_covar)", em, reg),
        (
            "DeepConvGMM(flat)",
            fit_timed(deep(k, "flat", args.seed, args.flat_epochs), X_train)[0],
            None,
        ),
        (
            f"DeepConvGMM({args.deep})",
            fit_timed(deep(k, args.deep, args.seed, args.epochs), X_train)[0],
            None,
        ),
    ]
    return [
        auc_row(name, protocol, cls, label, k, reg, inliers_test, model.score_samples(Xt))
        for label, model, reg in models
    ]


def auc_row(name, protocol, cls, label, k, reg_covar, inliers, score) -> dict:
    """One results row: the ROC-AUC of ``score`` (higher = more inlier), printed as it comes."""
    auc = float(roc_auc_score(inliers, score))
    print(f"{name:<14}{protocol:<10} class {cls}  {label:<50} AUC {auc:.4f}", flush=True)
    return {
        "dataset": name,
        "protocol": protocol,
        "class": int(cls),
        "model": label,
        "K": k,
        "reg_covar": reg_covar,
        "roc_auc": auc,
    }


def save_means(rows: list[dict], args) -> None:
    """Print the mean ROC-AUC of every (data set, protocol, model) and save all rows."""
    summary: dict[str, list[float]] = {}
    for row in rows:
        key = f"{row['dataset']}/{row['protocol']}/{row['model']}"
        summary.setdefault(key, []).append(row["roc_auc"])
    print("\nmean ROC-AUC")
    for key, values in summary.items():
        print(f"  {key:<75} {np.mean(values):.4f}  ({len(values)} classes)")
    save(
        args.out,
        {
            "deep": args.deep,
            "epochs": args.epochs,
            "rows": rows,
            "mean_auc": {k: float(np.mean(v)) for k, v in summary.items()},
        },
    )


def arguments(description: str, out: str) -> argparse.ArgumentParser:
    """The options every outlier benchmark takes (data sets, classes, deep model, output)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--deep", default=AUTO_LAYERS)
    parser.add_argument("--epochs", type=epochs, default="auto", help="max_iter of the deep model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=out)
    return parser


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], "outliers")
    parser.add_argument("--protocols", nargs="+", default=["one-class", "leave-out"])
    parser.add_argument("--flat-epochs", type=epochs, default="auto")
    args = parser.parse_args()

    rows = []
    for name in args.datasets:
        X, y, Xt, yt = load(name)
        for protocol in args.protocols:
            for cls in args.classes:
                if protocol == "one-class":
                    rows += auc_rows(
                        name, protocol, cls, yt == cls, X[y == cls], Xt, K_ONE_CLASS, args
                    )
                else:
                    rows += auc_rows(
                        name, protocol, cls, yt != cls, X[y != cls], Xt, K_LEAVE_OUT, args
                    )
    save_means(rows, args)


if __name__ == "__main__":
    main()
