"""Training throughput (images/s) and peak memory of every preset on MNIST.

Each preset is fitted for ``--epochs`` epochs on ``--n`` MNIST training images in a fresh
subprocess, so its peak resident memory (``ru_maxrss``) is its own; the memory before the fit
(interpreter, torch and the data) is reported separately, and the difference is the training's.

Run: ``SKDCGMM_DATA=../shared/data python benchmarks/bench_presets.py``
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings

from _common import run_child, save

PRESETS = ["flat", "B", "C", "D", "E", "F", "G"]


def child(name: str, n: int, epochs: int) -> dict:
    from sklearn.exceptions import ConvergenceWarning

    from skdcgmm import DeepConvGMM
    from skdcgmm.datasets import load_mnist

    X, _ = load_mnist("train")
    X = X[:n].copy()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model = DeepConvGMM(10, layers=name, max_iter=epochs, random_state=0)
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    seconds = time.perf_counter() - tic
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tic = time.perf_counter()
    model.score_samples(X)
    score_seconds = time.perf_counter() - tic
    n_params = sum(p.numel() for p in model.module_.parameters())
    return {
        "preset": name,
        "images": n,
        "epochs": epochs,
        "fit_seconds": seconds,
        "train_images_per_s": n * epochs / seconds,
        "score_images_per_s": n / score_seconds,
        "rss_before_fit_mb": before,
        "peak_rss_mb": peak,
        "training_extra_mb": peak - before,
        "parameters": n_params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.epochs)))
        return
    rows = []
    for name in args.presets:
        row = run_child(__file__, "--child", name, "--n", args.n, "--epochs", args.epochs)
        rows.append(row)
        print(
            f"{name:<5} train {row['train_images_per_s']:9,.0f} img/s  score {row['score_images_per_s']:9,.0f} img/s  "
            f"peak RSS {row['peak_rss_mb']:7.0f} MB (training +{row['training_extra_mb']:.0f} MB)  "
            f"{row['parameters']:,} parameters",
            flush=True,
        )
    save("presets", {"rows": rows})


if __name__ == "__main__":
    main()
