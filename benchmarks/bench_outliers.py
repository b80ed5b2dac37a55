"""Outlier detection by ROC-AUC of ``score_samples``: deep vs flat on MNIST and Fashion-MNIST.

Two protocols (design §5): *one-class* — fit on the training images of class c, score the whole
test set, class c is the positive (inlier) class; *leave-one-class-out* — fit on the 9 other
classes, the held-out class is the outliers. Per-class and mean ROC-AUC for the deep model, the
flat ``DeepConvGMM`` and ``GaussianMixture(diag)`` with the best ``reg_covar`` of a small grid
(by held-out log-likelihood). Deep models get a fixed budget of SGD steps whatever the data size.

Run: ``SKDCGMM_DATA=../shared/data python benchmarks/bench_outliers.py``
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import best_gaussian_mixture, deep, fit_timed, holdout, load, save
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
            fit_timed(deep(k, "flat", len(X_train), args.flat_steps, args.seed), X_train)[0],
            None,
        ),
        (
            f"DeepConvGMM({args.deep})",
            fit_timed(deep(k, args.deep, len(X_train), args.steps, args.seed), X_train)[0],
            None,
        ),
    ]
    rows = []
    for label, model, reg in models:
        auc = float(roc_auc_score(inliers_test, model.score_samples(Xt)))
        rows.append(
            {
                "dataset": name,
                "protocol": protocol,
                "class": int(cls),
                "model": label,
                "K": k,
                "reg_covar": reg,
                "roc_auc": auc,
            }
        )
        print(f"{name:<14}{protocol:<10} class {cls}  {label:<38} AUC {auc:.4f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    parser.add_argument("--protocols", nargs="+", default=["one-class", "leave-out"])
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--deep", default="C")
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--flat-steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outliers")
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
    summary = {}
    for row in rows:
        key = f"{row['dataset']}/{row['protocol']}/{row['model']}"
        summary.setdefault(key, []).append(row["roc_auc"])
    print("\nmean ROC-AUC")
    for key, values in summary.items():
        print(f"  {key:<70} {np.mean(values):.4f}  ({len(values)} classes)")
    save(
        args.out,
        {
            "deep": args.deep,
            "steps": args.steps,
            "rows": rows,
            "mean_auc": {k: float(np.mean(v)) for k, v in summary.items()},
        },
    )


if __name__ == "__main__":
    main()
