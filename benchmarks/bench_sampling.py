"""Sample quality: NDB/K and JS of 10,000 samples against the training set (MNIST, Fashion).

Models, fitted on the 60,000 training images with the same top-level component count:
``GaussianMixture(covariance_type="diag")`` (best ``reg_covar`` of a small grid, samples clipped to
[0, 1]), ``DeepConvGMM(layers="flat")`` and the default deep architecture (``layers="auto"``)
sampled plainly, with the reference's sharpening, and sharpened towards the vector drawn at the top.
The real test set gives the floor. NDB/K uses 100 k-means bins of the training images and
two-proportion z-tests at alpha = 0.05 (Richardson & Weiss 2018). NDB/K of one sample set moves by a
few hundredths with the k-means seed alone, so the bins are fitted once per data set for each seed
of ``--bin-seeds`` and every sample set is scored against all of them: the mean, its spread
(standard deviation over bin seeds) and every seed's value are saved. Also reported: sampling
throughput, and a PNG grid of 100 samples per model in ``benchmarks/results/``.

Run: ``SKDCGMM_DATA=../shared/data python benchmarks/bench_sampling.py``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import AUTO_LAYERS, RESULTS, best_gaussian_mixture, fit_timed, holdout, load, save

from skdcgmm import DeepConvGMM
from skdcgmm.metrics import NDB

#: Sampling settings compared for the deep model (keywords of DeepConvGMM.sample): plain, the
#: reference's sharpening after every fold-back, and sharpening towards the drawn top vector.
PLAIN = {"noise_divisor": 20, "floor_noise": False}
SHARP = {**PLAIN, "sharpening_steps": 50}
DRAWN = {**PLAIN, "start_noise_divisor": 1, "sharpening_steps": 30, "sharpening_target": "drawn"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    parser.add_argument("--components", type=int, default=100)
    parser.add_argument("--deep", default=AUTO_LAYERS)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of both DeepConvGMMs")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bin-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()

    rows = []
    for name in args.datasets:
        X, _, Xt, _ = load(name)
        bins = [NDB(100, random_state=seed).fit(X) for seed in args.bin_seeds]
        X_fit, X_val = holdout(X, seed=args.seed)
        em, _, reg = best_gaussian_mixture(args.components, X_fit, X_val, args.seed)
        em, em_seconds = fit_timed(em, X)
        k, epochs = args.components, args.epochs
        flat, flat_seconds = fit_timed(
            DeepConvGMM(k, layers="flat", max_iter=epochs, random_state=args.seed), X
        )
        dc, dc_seconds = fit_timed(
            DeepConvGMM(k, layers=args.deep, max_iter=epochs, random_state=args.seed), X
        )
        candidates = [
            ("test set (floor)", None, None, {}),
            (f"GaussianMixture(diag, reg_covar={reg})", em_seconds, em, {}),
            ("DeepConvGMM(flat)", flat_seconds, flat, {}),
            (f"DeepConvGMM(flat) {PLAIN}", flat_seconds, flat, PLAIN),
            (f"DeepConvGMM({args.deep}) {PLAIN}", dc_seconds, dc, PLAIN),
            (f"DeepConvGMM({args.deep}) {SHARP}", dc_seconds, dc, SHARP),
            (f"DeepConvGMM({args.deep}) {DRAWN}", dc_seconds, dc, DRAWN),
        ]
        for i, (label, fit_seconds, model, options) in enumerate(candidates):
            tic = time.perf_counter()
            if model is None:
                samples = Xt[: args.samples]
            elif model is em:  # GaussianMixture has no notion of a data range: clip here
                samples = np.clip(em.sample(args.samples)[0], 0, 1)
            else:
                samples = model.sample(args.samples, **options)[0]
            seconds = time.perf_counter() - tic
            results = [b.score(samples) for b in bins]
            ndb_k = np.array([r.ndb_k for r in results])
            row = {
                "dataset": name,
                "model": label,
                "fit_seconds": fit_seconds,
                "n_samples": len(samples),
                "ndb_k": float(ndb_k.mean()),
                "ndb_k_std": float(ndb_k.std()),
                "ndb_k_per_bin_seed": ndb_k.tolist(),
                "js": float(np.mean([r.js for r in results])),
                "samples_per_second": len(samples) / seconds if model is not None else None,
            }
            rows.append(row)
            speed = f"{row['samples_per_second']:9.0f}/s" if model is not None else ""
            print(
                f"{name:<14}{label:<70} NDB/K {row['ndb_k']:.3f} ± {row['ndb_k_std']:.3f}  "
                f"JS {row['js']:.4f} {speed}",
                flush=True,
            )
            # A random 100: GaussianMixture.sample returns its samples grouped by component.
            pick = np.random.RandomState(args.seed).permutation(len(samples))[:100]
            _save_grid(samples[pick], RESULTS / f"samples_{name}_{i}.png", label)
        # Saved after every data set, keeping earlier runs' rows of the other data sets.
        save(
            "sampling",
            {"components": args.components, "epochs": args.epochs, "bin_seeds": args.bin_seeds,
             "rows": _merge(rows)},
        )  # fmt: skip


def _merge(rows: list[dict]) -> list[dict]:
    path = RESULTS / "sampling.json"
    done = {row["dataset"] for row in rows}
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    return [row for row in old if row["dataset"] not in done] + rows


def _save_grid(images, path, title) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    from skdcgmm.plotting import plot_images

    ax = plot_images(images, n_cols=10, title=title, vmin=0, vmax=1)
    ax.figure.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(ax.figure)


if __name__ == "__main__":
    main()
