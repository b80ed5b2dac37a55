"""Training and scoring speed against the machine's matmul peak, GaussianMixture and scale.

Measured in one process, one thing at a time:

1. the matmul peak (fp32 ``torch.mm`` of 2048x2048 matrices, best of several runs) with the
   process's threads, and on CUDA when present, at the start and again at the end of the run
   (the larger reading is the peak);
2. every preset's training images/s on MNIST (K = 10; flat also at K = 100; the best of
   ``--repeats`` fits), the analytic matmul FLOP per image and training step (``8 L D K``
   summed over GMM layers: two ``(L, D) x (D, K)`` matmuls of the log-scores forward, and as
   many for the parameter gradients) and the fraction of the matmul peak this implies; and C
   as the paper's DCGMM-C (top K = 36) against the cost the performance issue's anchors give
   that model (about 10 MFLOP per image and step, the reference implementation's accounting,
   ``--c-mflop``): its images/s as a fraction of the peak divided by that cost; the flat model
   at K = 100, C and E also with ``compile=True`` (timed after an untimed warm-up fit that
   compiles the graphs);
3. the flat model at K = 100 on full MNIST against ``GaussianMixture(covariance_type="diag")``:
   fit time and test log-likelihood;
4. scaling of training images/s with batch size, K, image size and N (and a PNG plot);
5. optionally (``--ddp``) data-parallel training on 2 CPU processes (gloo, one thread each)
   against one process with 2 threads, giving the same model.

Run: ``SKDCGMM_DATA=../shared/data python benchmarks/bench_speed.py`` (``--quick`` for a
smoke run; ``--device cuda`` on a GPU machine).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from _common import RESULTS, fit_timed, load, save
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from skdcgmm import DeepConvGMM
from skdcgmm.nn import GMMLayer

PRESETS = ["flat", "B", "C", "D", "E", "F", "G"]
#: (layers, K) also measured with compile=True.
COMPILED = [("flat", 100), ("C", 10), ("C", 36), ("E", 10)]


def matmul_peak(device: str, n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 GFLOP/s of ``torch.mm`` on ``n x n`` matrices."""
    a = torch.rand(n, n, device=device)
    b = torch.rand(n, n, device=device)
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - tic)
    return 2 * n**3 / best / 1e9


def train_flop_per_image(model: DeepConvGMM) -> float:
    """Matmul FLOP of one training step per image: ``8 L D K`` per GMM layer."""
    total = 0
    for layer in model.module_.layers:
        if isinstance(layer, GMMLayer):
            h, w, d = layer.input_shape
            total += 8 * h * w * d * layer.n_components
    return float(total)


def _against_peak(row: dict, peak: float) -> None:
    """Set a preset row's fraction of the matmul ``peak`` (GFLOP/s) and the images/s it implies
    (by our count, and for C by the issue's cost figure where the row has one)."""
    row["fraction_of_peak"] = row["achieved_gflops"] / peak
    row["peak_implied_images_per_s"] = peak * 1e3 / row["train_mflop_per_image"]
    if "issue_mflop_per_image" in row:
        implied = peak * 1e3 / row["issue_mflop_per_image"]
        row["issue_peak_implied_images_per_s"] = implied
        row["fraction_of_issue_peak_implied"] = row["train_images_per_s"] / implied


def training_speed(
    X, *, layers, k, device, epochs=2, repeats=1, **params
) -> tuple[float, DeepConvGMM]:
    """Images/s of the last epoch (annealed by then) of a short fit, the best of ``repeats``
    fits (like the matmul peak, a best reading: the machine's capability, not its noise).

    With ``compile=True``, one untimed fit first compiles the graphs of every annealing state
    (later fits of the same architecture reuse them), so no timed epoch includes compiling.
    """
    best, warm_up = -1.0, bool(params.get("compile"))
    for i in range(warm_up + repeats):
        model = DeepConvGMM(
            k, layers=layers, max_iter=epochs, device=device, random_state=0, **params
        )
        fit_timed(model, X)
        if i < warm_up:
            continue
        best = max(best, float(model.history_["images_per_second"][-1]))
    return best, model


def scoring_speed(model: DeepConvGMM, X) -> float:
    tic = time.perf_counter()
    model.score_samples(X)
    return len(X) / (time.perf_counter() - tic)


def resize(X: np.ndarray, side: int) -> np.ndarray:
    images = torch.tensor(X, dtype=torch.float32).view(-1, 1, 28, 28)
    small = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)
    return small.reshape(len(X), -1).numpy().astype(np.float64)


def _ddp_worker(rank, world, init_file, X, out, epochs):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = DeepConvGMM(10, layers="C", max_iter=epochs, random_state=0)
        fit_timed(model, X)
        if rank == 0:
            np.savez(out, speed=model.history_["images_per_second"], means=model.means_)
    finally:
        dist.destroy_process_group()


def ddp_speed(X, epochs: int) -> dict:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ddp.npz")
        mp.spawn(
            _ddp_worker, args=(2, os.path.join(tmp, "init"), X, out, epochs), nprocs=2, join=True
        )
        result = np.load(out)
        ddp, ddp_means = float(result["speed"][-1]), result["means"]
    single, model = training_speed(X, layers="C", k=10, device="cpu", epochs=epochs)
    return {
        "preset": "C",
        "processes_x_threads": "2 x 1 (gloo)",
        "ddp_images_per_s": ddp,
        "single_images_per_s": single,
        "single_threads": torch.get_num_threads(),
        "max_abs_mean_difference": float(np.abs(ddp_means - model.means_).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=10000, help="training images per speed run")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--ddp", action="store_true", help="also data-parallel on 2 processes")
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument(
        "--c-mflop",
        type=float,
        default=10.0,
        help="cost of the paper's C (top K = 36) per image and step in the issue's anchors (MFLOP)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="fits per preset row (best)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    X_all, _, X_test, _ = load("mnist")
    n = 1000 if args.quick else args.n
    X = X_all[:n]
    device = args.device
    out: dict = {"device": device, "n_images": n, "repeats": args.repeats}

    peak = matmul_peak(device)
    out["matmul_peak_gflops"] = peak
    print(f"matmul peak ({device}, fp32, {torch.get_num_threads()} threads): {peak:.1f} GFLOP/s")

    rows = []
    # Every preset at K = 10, flat also at K = 100, and C also as the paper's DCGMM-C (top
    # K = 36), the configuration whose cost the anchors give.
    runs = [("flat", 100)] + [(p, 10) for p in PRESETS] + [("C", 36)]
    runs = [(layers, k, False) for layers, k in runs] + [(*run, True) for run in COMPILED]
    if args.quick:
        runs = [("flat", 100, False), ("C", 10, False), ("C", 36, False), ("C", 10, True)]
    for layers, k, compiled in runs:
        speed, model = training_speed(
            X, layers=layers, k=k, device=device, repeats=args.repeats, compile=compiled
        )
        flop = train_flop_per_image(model)
        row = {
            "preset": layers,
            "k": k,
            "compile": compiled,
            "train_images_per_s": speed,
            "score_images_per_s": scoring_speed(model, X),
            "train_mflop_per_image": flop / 1e6,
            "achieved_gflops": speed * flop / 1e9,
        }
        if (layers, k) == ("C", 36):
            row["issue_mflop_per_image"] = args.c_mflop
        _against_peak(row, peak)
        rows.append(row)
        print(
            f"{layers:>5} K={k:<4} {'compiled' if compiled else 'eager':8} train {speed:9,.0f} "
            f"img/s ({row['train_mflop_per_image']:.2f} "
            f"MFLOP/img, {row['achieved_gflops']:.1f} GFLOP/s = {row['fraction_of_peak']:.0%} "
            f"of peak)  score {row['score_images_per_s']:9,.0f} img/s",
            flush=True,
        )
        if "issue_mflop_per_image" in row:
            print(
                f"      C at the issue's {args.c_mflop:g} MFLOP/img: "
                f"{row['fraction_of_issue_peak_implied']:.0%} of the "
                f"{row['issue_peak_implied_images_per_s']:,.0f} img/s the peak implies",
                flush=True,
            )
    out["presets"] = rows

    if not args.skip_sklearn and not args.quick:
        gm, gm_seconds = fit_timed(
            GaussianMixture(100, covariance_type="diag", reg_covar=0.05, random_state=0), X_all
        )
        flat, flat_seconds = fit_timed(
            DeepConvGMM(100, layers="flat", max_iter=6, device=device, random_state=0), X_all
        )
        # The linear scaling rule (README, "Speed"): 10x the batch and both learning rates.
        large = {"batch_size": 1000, "learning_rate": 1.0, "learning_rate_final": 0.2}
        flat_large, large_seconds = fit_timed(
            DeepConvGMM(100, layers="flat", max_iter=6, device=device, random_state=0, **large),
            X_all,
        )
        out["flat_vs_sklearn"] = {
            "k": 100,
            "gm_seconds": gm_seconds,
            "gm_iterations": int(gm.n_iter_),
            "gm_test_log_likelihood": float(gm.score(X_test)),
            "flat_seconds": flat_seconds,
            "flat_epochs": int(flat.n_iter_),
            "flat_test_log_likelihood": float(flat.score(X_test)),
            "speed_up": gm_seconds / flat_seconds,
            "large_batch_params": large,
            "large_batch_seconds": large_seconds,
            "large_batch_test_log_likelihood": float(flat_large.score(X_test)),
            "large_batch_speed_up": gm_seconds / large_seconds,
        }
        r = out["flat_vs_sklearn"]
        print(
            f"K=100 full MNIST: GaussianMixture {gm_seconds:.1f} s (LL {r['gm_test_log_likelihood']:.2f}) "
            f"vs flat {flat_seconds:.1f} s (LL {r['flat_test_log_likelihood']:.2f}): "
            f"{r['speed_up']:.1f}x; batch 1000 {large_seconds:.1f} s "
            f"(LL {r['large_batch_test_log_likelihood']:.2f}): {r['large_batch_speed_up']:.1f}x",
            flush=True,
        )

    scaling: dict = {"batch_size": [], "k": [], "image_side": [], "n": []}
    batches = [50, 100, 500] if args.quick else [25, 50, 100, 200, 500, 1000]
    for b in batches:
        for layers in ("flat", "C"):
            speed, _ = training_speed(X, layers=layers, k=10, device=device, batch_size=b)
            scaling["batch_size"].append({"layers": layers, "batch_size": b, "images_per_s": speed})
    for k in [10, 100] if args.quick else [10, 25, 100, 400]:
        speed, _ = training_speed(X, layers="flat", k=k, device=device)
        scaling["k"].append({"layers": "flat", "k": k, "images_per_s": speed})
    for side in [14, 28] if args.quick else [14, 21, 28]:
        speed, _ = training_speed(resize(X, side), layers="auto", k=10, device=device)
        scaling["image_side"].append({"layers": "auto", "side": side, "images_per_s": speed})
    for size in [500, 1000] if args.quick else [2500, 10000, 60000]:
        _, seconds = fit_timed(
            DeepConvGMM(10, layers="flat", max_iter=2, device=device, random_state=0),
            X_all[:size],
        )
        scaling["n"].append({"layers": "flat", "n": size, "fit_seconds": seconds})
    out["scaling"] = scaling
    for key, values in scaling.items():
        print(f"scaling with {key}: {values}", flush=True)

    if args.ddp and device == "cpu":
        out["ddp"] = ddp_speed(X, epochs=2)
        print(f"data-parallel: {out['ddp']}", flush=True)

    # The peak read again at the end: a machine that was slower at the start (shared or
    # throttled CPUs) would otherwise inflate every fraction; the larger reading counts.
    peak_end = matmul_peak(device)
    out["matmul_peak_gflops_start_end"] = [peak, peak_end]
    if peak_end > peak:
        out["matmul_peak_gflops"] = peak = peak_end
        for row in rows:
            _against_peak(row, peak)
    print(f"matmul peak at the end: {peak_end:.1f} GFLOP/s; fractions use {peak:.1f}")
    save("speed" if device == "cpu" else f"speed_{device.split(':')[0]}", out)
    _plot(scaling, device)


def _plot(scaling: dict, device: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for layers in ("flat", "C"):
        rows = [r for r in scaling["batch_size"] if r["layers"] == layers]
        axes[0].loglog(
            [r["batch_size"] for r in rows], [r["images_per_s"] for r in rows], "o-", label=layers
        )
    axes[0].set(xlabel="batch size", ylabel="training images/s", title="batch size")
    axes[0].legend()
    axes[1].loglog([r["k"] for r in scaling["k"]], [r["images_per_s"] for r in scaling["k"]], "o-")
    axes[1].set(xlabel="K (flat)", ylabel="training images/s", title="components")
    axes[2].plot(
        [r["side"] for r in scaling["image_side"]],
        [r["images_per_s"] for r in scaling["image_side"]],
        "o-",
    )
    axes[2].set(xlabel="image side (auto stack)", ylabel="training images/s", title="image size")
    axes[3].loglog([r["n"] for r in scaling["n"]], [r["fit_seconds"] for r in scaling["n"]], "o-")
    axes[3].set(xlabel="N (flat, 2 epochs)", ylabel="fit seconds", title="data size")
    fig.suptitle(f"DeepConvGMM training speed ({device})")
    fig.tight_layout()
    path = RESULTS / ("speed_scaling.png" if device == "cpu" else "speed_scaling_gpu.png")
    fig.savefig(path, dpi=100)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
