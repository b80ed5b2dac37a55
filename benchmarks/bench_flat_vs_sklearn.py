"""Flat DeepConvGMM (SGD) vs GaussianMixture (EM, diagonal) on full MNIST.

Same process, same CPU, same data: 60,000 training and 10,000 test images in [0, 1].
For K = 10 and K = 100 it reports fit wall time, the mean exact test log-likelihood and, at
K = 10, Hungarian clustering accuracy, NMI and ARI on the test set. Results are printed as a
table and saved to ``benchmarks/results/flat_vs_sklearn.json``.

Variance regularisation is matched at 0.05: DeepConvGMM bounds every variance from below by
``min_variance=0.05`` (var = max(fit, 0.05)), GaussianMixture adds ``reg_covar=0.05`` to every
fitted variance (var = fit + 0.05). Both give background pixels (zero variance within a
component) exactly the variance 0.05; elsewhere GaussianMixture's variances are larger by up to
0.05.

Run: ``SKDCGMM_DATA=../shared/data python benchmarks/bench_flat_vs_sklearn.py``
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from _common import hardware
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.mixture import GaussianMixture

from skdcgmm import DeepConvGMM
from skdcgmm.datasets import load_mnist
from skdcgmm.metrics import clustering_accuracy

MIN_VARIANCE = 0.05


def run(name, model, X, Xt, yt, k):
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    seconds = time.perf_counter() - tic
    row = {
        "model": name,
        "K": k,
        "fit_seconds": seconds,
        "n_iter": int(model.n_iter_),
        "train_log_likelihood": float(model.score(X)),
        "test_log_likelihood": float(model.score(Xt)),
    }
    if k == 10:
        labels = model.predict(Xt)
        row.update(
            accuracy=clustering_accuracy(yt, labels),
            nmi=float(normalized_mutual_info_score(yt, labels)),
            ari=float(adjusted_rand_score(yt, labels)),
        )
    print(
        f"{name:<34} K={k:<4} fit {seconds:7.1f} s  iters {row['n_iter']:>3}  "
        f"test LL {row['test_log_likelihood']:8.2f}"
        + (
            f"  acc {row['accuracy']:.3f}  NMI {row['nmi']:.3f}  ARI {row['ari']:.3f}"
            if k == 10
            else ""
        ),
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 6, 20])
    parser.add_argument("--large-batch-epochs", type=int, nargs="*", default=[6, 10])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "flat_vs_sklearn.json")
    )
    args = parser.parse_args()

    X, _ = load_mnist("train")
    Xt, yt = load_mnist("test")
    rows = []
    for k in args.ks:
        em = GaussianMixture(
            k, covariance_type="diag", reg_covar=MIN_VARIANCE, random_state=args.seed
        )
        rows.append(run("GaussianMixture(diag, EM)", em, X, Xt, yt, k))
        configs = [(f"DeepConvGMM(flat, {e} epochs)", {"max_iter": e}) for e in args.epochs]
        # The linear scaling rule: 10x the batch and 10x both learning rates.
        configs += [
            (
                f"DeepConvGMM(flat, {e} epochs, batch 1000)",
                {
                    "max_iter": e,
                    "batch_size": 1000,
                    "learning_rate": 1.0,
                    "learning_rate_final": 0.2,
                },
            )
            for e in args.large_batch_epochs
        ]
        for name, params in configs:
            ours = DeepConvGMM(k, layers="flat", random_state=args.seed, **params)
            rows.append(run(name, ours, X, Xt, yt, k))
        base = rows[-1 - len(configs)]
        for row in rows[-len(configs) :]:
            row["speedup_vs_em"] = base["fit_seconds"] / row["fit_seconds"]
            row["test_ll_relative_gap"] = (
                base["test_log_likelihood"] - row["test_log_likelihood"]
            ) / abs(base["test_log_likelihood"])
            print(
                f"  {row['model']}: {row['speedup_vs_em']:.2f}x faster than EM, relative test-LL gap {row['test_ll_relative_gap']:+.4f} (negative = better than EM)"
            )
    result = {
        "benchmark": "flat_vs_sklearn",
        "data": "MNIST 60k train / 10k test, pixels / 255",
        "min_variance": MIN_VARIANCE,
        "hardware": {**hardware(), "numpy": np.__version__},
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
