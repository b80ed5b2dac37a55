"""Run every benchmark in sequence and write the Markdown report of their results.

Every ``bench_*.py`` next to this file runs in its own subprocess, one after the other (so
no two share the CPU), and saves its JSON in ``benchmarks/results/``. Then the report is
built from those JSON files: ``benchmarks/results/README.md``, one table per benchmark plus
the hardware each ran on. When the top-level ``README.md`` holds the markers
``<!-- results:start -->`` and ``<!-- results:end -->``, the same report replaces what lies
between them (headings nested under the section that holds the markers).

Run: ``SKDCGMM_DATA=../shared/data python benchmarks/run_all.py`` (tens of minutes on a CPU)

    python benchmarks/run_all.py --only clustering presets   # just these two, then the report
    python benchmarks/run_all.py --skip outliers sampling    # all but these
    python benchmarks/run_all.py --report-only               # rebuild the report from the JSON

This module imports neither torch nor skdcgmm (the report builder is cheap to import and test);
the hardware of results files that do not record it is read from this machine, lazily.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ROOT_README = HERE.parent / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
MISSING = "–"


# ---------------------------------------------------------------------------------------------
# Running the benchmarks
# ---------------------------------------------------------------------------------------------


def discover(directory: Path = HERE) -> dict[str, Path]:
    """``{name: script}`` of the benchmark scripts: ``bench_clustering.py`` is ``clustering``.

    In the order of :data:`SECTIONS` (the headline figures first), then alphabetically.
    """
    found = {p.stem[len("bench_") :]: p for p in sorted(directory.glob("bench_*.py"))}
    order = [n for n in SECTIONS if n in found] + [n for n in found if n not in SECTIONS]
    return {n: found[n] for n in order}


def _name(text: str) -> str:
    """A benchmark name from what a user may type: ``bench_presets.py`` -> ``presets``."""
    name = Path(text).name
    name = name[: -len(".py")] if name.endswith(".py") else name
    name = name[len("bench_") :] if name.startswith("bench_") else name
    return name.replace("-", "_")


def select(available: Sequence[str], only=None, skip=None) -> list[str]:
    """The benchmarks to run, in ``available`` order; unknown names raise ``ValueError``."""
    only = [_name(n) for n in only or []]
    skip = [_name(n) for n in skip or []]
    unknown = sorted(set(only + skip) - set(available))
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; available: {list(available)}")
    return [n for n in available if (not only or n in only) and n not in skip]


def run_benchmarks(names: Sequence[str], scripts: dict[str, Path]) -> list[tuple[str, int, float]]:
    """Run the scripts one after the other; ``(name, return code, seconds)`` of each."""
    done = []
    for i, name in enumerate(names, 1):
        script = scripts[name]
        print(f"\n=== [{i}/{len(names)}] {script.name} ===", flush=True)
        tic = time.perf_counter()
        code = subprocess.run([sys.executable, str(script)], cwd=HERE).returncode
        seconds = time.perf_counter() - tic
        status = "ok" if code == 0 else f"FAILED (exit code {code})"
        print(f"=== {script.name}: {status} after {seconds / 60:.1f} min ===", flush=True)
        done.append((name, code, seconds))
    return done


# ---------------------------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------------------------


def fmt(value, digits: int = 3) -> str:
    """A table cell: floats with ``digits`` decimals, thousands separators, ``–`` if missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value).replace("|", "\\|")


def table(rows: Sequence[dict], columns: Sequence[tuple[str, str | Callable, int]]) -> str:
    """A Markdown table: ``columns`` are ``(header, key or function of the row, decimals)``."""
    lines = [
        "| " + " | ".join(h for h, _, _ in columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    for row in rows:
        cells = []
        for _, key, digits in columns:
            value = key(row) if callable(key) else row.get(key)
            cells.append(fmt(value, digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _settings(data: dict, keys: Sequence[str]) -> str:
    found = [f"`{k}={data[k]}`" for k in keys if k in data]
    return f"Settings: {', '.join(found)}." if found else ""


# ---------------------------------------------------------------------------------------------
# One section per benchmark
# ---------------------------------------------------------------------------------------------


def section_flat_vs_sklearn(data: dict) -> list[str]:
    rows = data.get("rows", [])
    out = [
        'Flat `DeepConvGMM` (SGD) vs `GaussianMixture(covariance_type="diag")` (EM), same '
        "process and CPU; test log-likelihood is the mean exact log-density of the test "
        "images (higher is better); the speed-up and relative gap are against EM at the same K "
        "(a negative gap: better than EM); accuracy, NMI and ARI of the test clusters at K = 10.",
    ]
    if "data" in data or "min_variance" in data:
        out.append(
            f"Data: {data.get('data', MISSING)}; variance floor / `reg_covar` "
            f"{data.get('min_variance', MISSING)}."
        )
    out.append(
        table(
            rows,
            [
                ("K", "K", 0),
                ("model", "model", 0),
                ("fit (s)", "fit_seconds", 1),
                ("iterations", "n_iter", 0),
                ("test log-lik.", "test_log_likelihood", 2),
                ("speed-up vs EM", lambda r: r.get("speedup_vs_em"), 2),
                ("rel. test-LL gap", "test_ll_relative_gap", 4),
                ("accuracy", "accuracy", 3),
                ("NMI", "nmi", 3),
                ("ARI", "ari", 3),
            ],
        )
    )
    return out


def _mean_std(key: str):
    def cell(row: dict) -> str:
        mean, std = row.get(f"{key}_mean"), row.get(f"{key}_std")
        return MISSING if mean is None else f"{mean:.3f} ± {std:.3f}"

    return cell


def _default_figure(row: dict) -> str | None:
    """What the default model reached in a row of ``bench_defaults``."""
    if "test_log_likelihood" in row:
        return f"test log-lik. {fmt(row['test_log_likelihood'], 2)}"
    if "accuracy" in row:
        return f"accuracy {fmt(row['accuracy'])}, NMI {fmt(row.get('nmi'))}"
    if "ndb_k" in row:
        return f"NDB/K {fmt(row['ndb_k'])}"
    return None


def _baseline_figure(row: dict) -> str | None:
    """The GaussianMixture baseline of a row of ``bench_defaults`` (None: no baseline)."""
    if "em_test_log_likelihood" in row:
        return (
            f"{fmt(row.get('em_seconds'), 1)} s ({fmt(row.get('em_iterations'))} iter.), "
            f"test log-lik. {fmt(row['em_test_log_likelihood'], 2)}; default "
            f"{fmt(row.get('speedup'), 1)}x faster"
        )
    if "em_ndb_k" in row:
        return f"NDB/K {fmt(row['em_ndb_k'])}"
    return None


def section_defaults(data: dict) -> list[str]:
    return [
        'What a user gets with no options (`DeepConvGMM(K)`, `layers="flat"` for the flat '
        'row), beside `GaussianMixture(K, covariance_type="diag")` with the same variance '
        "floor as `reg_covar`; NDB/K (lower is better) on 100 k-means bins of the training "
        "images, mean over the bin seeds.",
        _settings(data, ["seed", "reg_covar"]),
        table(
            data.get("rows", []),
            [
                ("row", "row", 0),
                ("K", "K", 0),
                ("fit (s)", "seconds", 1),
                ("epochs", "epochs", 0),
                ("default", _default_figure, 0),
                ("GaussianMixture", _baseline_figure, 0),
            ],
        ),
    ]


def section_clustering(data: dict) -> list[str]:
    rows = data.get("rows", [])
    clusters = [r for r in rows if "accuracy" in r]
    probes = [r for r in rows if "test_accuracy" in r]
    summary = data.get("summary")
    out = [
        "10 clusters fitted on the training images, evaluated on the test images: accuracy "
        "under the Hungarian matching of clusters to classes, NMI and ARI.",
        _settings(data, ["deep", "steps", "epochs", "seeds"]),
    ]
    if summary:  # several seeds: mean ± standard deviation, and every seed's accuracy
        out.append(
            table(
                summary,
                [
                    ("dataset", "dataset", 0),
                    ("model", "model", 0),
                    ("seeds", "n_seeds", 0),
                    ("fit (s)", "fit_seconds_mean", 1),
                    ("accuracy", _mean_std("accuracy"), 0),
                    ("NMI", _mean_std("nmi"), 0),
                    ("ARI", _mean_std("ari"), 0),
                    (
                        "accuracy per seed",
                        lambda r: " / ".join(f"{a:.3f}" for a in r["accuracies"]),
                        0,
                    ),
                ],
            )
        )
    else:
        out.append(
            table(
                clusters,
                [
                    ("dataset", "dataset", 0),
                    ("model", "model", 0),
                    ("fit (s)", "fit_seconds", 1),
                    ("accuracy", "accuracy", 3),
                    ("NMI", "nmi", 3),
                    ("ARI", "ari", 3),
                ],
            )
        )
    if probes:
        out += [
            "Linear probe: logistic regression on the `transform` features, test accuracy.",
            table(
                probes,
                [
                    ("dataset", "dataset", 0),
                    ("features", "model", 0),
                    ("training images", "probe_train_samples", 0),
                    ("test accuracy", "test_accuracy", 4),
                ],
            ),
        ]
    return out


def section_outliers(data: dict) -> list[str]:
    rows = data.get("rows", [])
    groups: dict[tuple[str, str], dict[str, list[float]]] = {}
    models: list[str] = []
    for row in rows:
        key = (row.get("dataset", MISSING), row.get("protocol", MISSING))
        model = row.get("model", MISSING)
        if model not in models:
            models.append(model)
        groups.setdefault(key, {}).setdefault(model, []).append(row.get("roc_auc"))
    if not rows and data.get("mean_auc"):  # only the summary was stored
        for key, auc in data["mean_auc"].items():
            dataset, protocol, model = key.split("/", 2)
            if model not in models:
                models.append(model)
            groups.setdefault((dataset, protocol), {})[model] = [auc]
    summary = []
    for (dataset, protocol), by_model in groups.items():
        means = {m: _mean(v) for m, v in by_model.items()}
        best = max((v for v in means.values() if v is not None), default=None)
        row = {
            "dataset": dataset,
            "protocol": protocol,
            "classes": max(len(v) for v in by_model.values()),
        }
        for model in models:
            value = means.get(model)
            cell = fmt(value, 4)
            row[model] = f"**{cell}**" if value is not None and value == best else cell
        summary.append(row)
    return [
        "Mean ROC-AUC of `score_samples` over the classes (best per row in bold). *one-class*: "
        "fitted on one class, that class is the inliers; *leave-out*: fitted on the other "
        "nine classes, the held-out class is the outliers.",
        _settings(data, ["deep", "steps", "epochs"]),
        table(
            summary,
            [("dataset", "dataset", 0), ("protocol", "protocol", 0), ("classes", "classes", 0)]
            + [(m, m, 0) for m in models],
        ),
    ]


def section_representation(data: dict) -> list[str]:
    intro = (
        "One-class protocol, mean ROC-AUC over the classes: a `GaussianMixture(diag)` on the "
        "pixels, the deep model's `score_samples`, and a `GaussianMixture(diag)` fitted on the "
        "input of the deep model's top GMM layer. Where the last is below the first, a top layer "
        "of the same kind fitted by EM instead of SGD does not reach the pixel baseline either: "
        "what is missing is in the features, not in the training of the top layer."
    )
    return [intro, *section_outliers(data)[1:]]


def section_presets(data: dict) -> list[str]:
    rows = data.get("rows", [])
    first = rows[0] if rows else {}
    return [
        "Training and scoring throughput and peak resident memory of every preset, each in a "
        f"fresh process ({fmt(first.get('images'))} MNIST images, {fmt(first.get('epochs'))} "
        "epoch(s), K = 10); *training extra* is the peak minus the memory before the fit.",
        table(
            rows,
            [
                ("preset", "preset", 0),
                ("parameters", "parameters", 0),
                ("fit (s)", "fit_seconds", 1),
                ("train images/s", "train_images_per_s", 0),
                ("score images/s", "score_images_per_s", 0),
                ("peak RSS (MB)", "peak_rss_mb", 0),
                ("training extra (MB)", "training_extra_mb", 0),
            ],
        ),
    ]


def section_sampling(data: dict) -> list[str]:
    return [
        "Sample quality against the training images: NDB/K (fraction of the 100 k-means bins "
        "whose proportion differs significantly) and the Jensen-Shannon divergence of the bin "
        "proportions (both lower is better; the test set is the floor), and sampling speed. "
        "Where the run used several k-means seeds for the bins, both are means over them and "
        "*±* is the standard deviation of NDB/K over those seeds.",
        _settings(data, ["components", "epochs", "bin_seeds"]),
        table(
            data.get("rows", []),
            [
                ("dataset", "dataset", 0),
                ("model / sampler options", lambda r: f"`{r.get('model', MISSING)}`", 0),
                ("NDB/K", "ndb_k", 3),
                ("±", "ndb_k_std", 3),
                ("JS", "js", 4),
                ("samples/s", "samples_per_second", 0),
                ("fit (s)", "fit_seconds", 1),
            ],
        ),
    ]


def section_memory(data: dict) -> list[str]:
    return [
        "Peak resident memory of inference (`score_samples`, `predict_proba` and `transform` "
        "of the pooled first layer) of the default architecture on growing slices of the "
        "70,000 MNIST images, each size in a fresh process.",
        table(
            data.get("rows", []),
            [
                ("images", "n_images", 0),
                ("RSS before (MB)", "rss_before_mb", 0),
                ("peak RSS (MB)", "peak_rss_mb", 0),
                ("inference increase (MB)", "inference_increase_mb", 0),
                ("transform output (MB)", "transform_output_mb", 0),
                ("time (s)", "seconds", 1),
            ],
        ),
    ]


def section_speed(data: dict) -> list[str]:
    peak = data.get("matmul_peak_gflops")
    lines = [
        f"Training images/s of the last (annealed) epoch of a 2-epoch fit on "
        f"{fmt(data.get('n_images'))} MNIST images ({data.get('device', MISSING)}), the best "
        f"of {fmt(data.get('repeats', 1))} fits; matmul "
        f"FLOP per image and step = `8 L D K` summed over GMM layers; fp32 matmul peak "
        f"measured in the same run: {fmt(peak, 1)} GFLOP/s.",
        table(
            data.get("presets", []),
            [
                ("preset", "preset", 0),
                ("K", "k", 0),
                ("compiled", lambda r: "yes" if r.get("compile") else "no", 0),
                ("train images/s", "train_images_per_s", 0),
                ("score images/s", "score_images_per_s", 0),
                ("MFLOP/image", "train_mflop_per_image", 2),
                ("GFLOP/s", "achieved_gflops", 1),
                ("of peak", lambda r: f"{100 * r['fraction_of_peak']:.0f} %", 0),
            ],
        ),
    ]
    for row in data.get("presets", []):
        if "fraction_of_issue_peak_implied" in row:
            how = "compiled" if row.get("compile") else "eager"
            lines.append(
                f"Preset {row['preset']} with K = {row['k']} (the paper's DCGMM-C, {how}) at the cost "
                f"the performance issue gives it ({fmt(row['issue_mflop_per_image'], 1)} MFLOP per "
                f"image and step, the reference implementation's accounting): "
                f"{fmt(row['train_images_per_s'], 0)} images/s = "
                f"{100 * row['fraction_of_issue_peak_implied']:.0f} % of the "
                f"{fmt(row['issue_peak_implied_images_per_s'], 0)} images/s the peak implies."
            )
    versus = data.get("flat_vs_sklearn")
    if versus:
        lines.append(
            f"Full MNIST, K = {versus['k']}: `GaussianMixture(diag)` {fmt(versus['gm_seconds'], 1)}"
            f" s ({versus['gm_iterations']} EM iterations, test log-likelihood "
            f"{fmt(versus['gm_test_log_likelihood'], 2)}) vs flat DeepConvGMM "
            f"{fmt(versus['flat_seconds'], 1)} s ({versus['flat_epochs']} epochs, "
            f"{fmt(versus['flat_test_log_likelihood'], 2)}): {fmt(versus['speed_up'], 1)}x faster."
        )
        if "large_batch_seconds" in versus:
            lines.append(
                f"With batch 1000 and learning rates 1.0 → 0.2 (linear scaling, 6 epochs): "
                f"{fmt(versus['large_batch_seconds'], 1)} s, test log-likelihood "
                f"{fmt(versus['large_batch_test_log_likelihood'], 2)}: "
                f"{fmt(versus['large_batch_speed_up'], 1)}x faster than `GaussianMixture`."
            )
    ddp = data.get("ddp")
    if ddp:
        lines.append(
            f"Data-parallel ({ddp['processes_x_threads']}, preset {ddp['preset']}): "
            f"{fmt(ddp['ddp_images_per_s'], 0)} images/s vs {fmt(ddp['single_images_per_s'], 0)}"
            f" in one process with {ddp['single_threads']} threads; largest difference of the "
            f"top-layer means {ddp['max_abs_mean_difference']:.1e}."
        )
    if data.get("scaling"):
        lines.append("Scaling with batch size, K, image size and N: `speed_scaling.png`.")
    return lines


def section_profile(data: dict) -> list[str]:
    lines = [
        "One annealed training epoch under `torch.profiler` (batches of 100, "
        f"{fmt(data.get('n_images'))} MNIST images, {fmt(data.get('threads'))} threads): "
        "self CPU time per SGD step by category, and the step time without the profiler. "
        "The profiler slows small operators down; Python's own time is in neither column."
    ]
    for model in data.get("models", []):
        lines.append(
            f"*{model.get('layers', MISSING)}* (K = {fmt(model.get('k'))}"
            f"{', compiled' if model.get('compile') else ''}): "
            f"{fmt(model.get('ms_per_step'), 2)} ms per step without the profiler, "
            f"{fmt(model.get('profiled_ms_per_step'), 2)} ms profiled."
        )
        lines.append(
            table(
                model.get("categories", []),
                [
                    ("category", "category", 0),
                    ("ms per step", "ms_per_step", 2),
                    ("share", lambda r: f"{100 * r['share_of_profiled_step']:.0f} %", 0),
                ],
            )
        )
    return lines


def section_extensions(data: dict) -> list[str]:
    def with_spread(metric: str):
        def cell(row: dict) -> str | None:
            if f"{metric}_mean" not in row:
                return None
            mean, std = fmt(row[f"{metric}_mean"], 4), fmt(row.get(f"{metric}_std"), 4)
            return mean if len(row.get(f"{metric}_per_seed", [])) < 2 else f"{mean} ± {std}"

        return cell

    def n_seeds(row: dict) -> int | None:
        counts = [len(v) for k, v in row.items() if k.endswith("_per_seed")]
        return max(counts) if counts else None

    return [
        "Extensions beyond the paper against the flat baselines: one SGD fit of the deep model "
        "per task (the paper's method, `top_refit=None`), its top layer refitted by EM "
        '(`top_refit="em"`) at several variance floors, *reg* rows with an additive variance '
        "regularisation (`top_refit_reg_covar`), *factors d* rows with d common factors in "
        "the refitted top layer (`top_factors`), *shrinkage s* rows with the refitted "
        "variances shrunk toward the pooled ones (`top_refit_shrinkage`); *layers=C49, "
        "top_refit=em, floor 0.005, shrinkage 0.5* is "
        "what the default `DeepConvGMM()` fits (*layers=C49, top_refit=em, floor 0.005* its "
        "default until shrinkage). Mean over the classes (outlier protocols), then "
        "mean ± standard deviation over the seeds; NDB/K (samples, lower is better) of 2,000 "
        "samples of a model of 20,000 training images (K = 25). *data init* and *exact-LL "
        "fine-tune* (with the default refit) are extensions tried and not kept "
        "(`bench_extensions.py --variants`); *layers=…* rows are other layer stacks, refitted "
        "at the same floors (`--stacks`).",
        _settings(data, ["seeds"]),
        table(
            data.get("summary", []),
            [
                ("dataset", "dataset", 0),
                ("protocol", "protocol", 0),
                ("model", "model", 0),
                ("seeds", n_seeds, 0),
                ("ROC-AUC", with_spread("roc_auc"), 0),
                ("accuracy", with_spread("accuracy"), 0),
                ("NMI", with_spread("nmi"), 0),
                ("NDB/K", with_spread("ndb_k"), 0),
            ],
        ),
    ]


def section_generic(data: dict) -> list[str]:
    """Any other results file: every scalar field of its rows."""
    rows = [r for r in data.get("rows", []) if isinstance(r, dict)]
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if k not in keys and not isinstance(v, dict | list)]
    if not keys:
        return ["(no rows to show)"]
    return [table(rows, [(k, k, 4) for k in keys])]


#: name -> (title, section builder); benchmarks not listed get the generic table.
SECTIONS: dict[str, tuple[str, Callable[[dict], list[str]]]] = {
    "defaults": ("What the defaults give", section_defaults),
    "flat_vs_sklearn": ("Flat DeepConvGMM vs GaussianMixture (MNIST)", section_flat_vs_sklearn),
    "clustering": ("Clustering (MNIST, Fashion-MNIST)", section_clustering),
    "outliers": ("Outlier detection (ROC-AUC)", section_outliers),
    "representation": (
        "Outliers: the features or the top layer? (ROC-AUC)",
        section_representation,
    ),
    "extensions": ("Extensions: top-layer EM refit vs flat", section_extensions),
    "presets": ("Presets: speed and memory (MNIST)", section_presets),
    "sampling": ("Sampling quality (NDB/K, JS)", section_sampling),
    "memory": ("Inference memory (MNIST)", section_memory),
    "speed": ("Training speed against the matmul peak (MNIST)", section_speed),
    "profile": ("Where the training time goes (MNIST)", section_profile),
}


# ---------------------------------------------------------------------------------------------
# Hardware
# ---------------------------------------------------------------------------------------------


@functools.cache
def machine_now() -> dict:
    """This machine, described as ``_common.hardware()`` does (imports torch: called lazily)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    try:
        from _common import hardware

        info = hardware()
    except Exception:  # no torch or skdcgmm here: what can be found without them
        info = {"cpu_count": os.cpu_count()}
        try:
            info["torch"] = importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            pass
    info.pop("date", None)
    return info


HARDWARE_COLUMNS = [
    ("CPU", "cpu_model"),
    ("cores", "cpu_count"),
    ("torch threads", "torch_threads"),
    ("RAM (GiB)", "memory_gb"),
    ("torch", "torch"),
    ("CUDA device", "cuda"),
]


def hardware_section(runs: list[tuple[str, Path, dict]]) -> list[str]:
    """One row per results file: what it ran on and when; gaps filled from this machine."""
    rows, filled = [], False
    for name, path, data in runs:
        stored = data.get("hardware") or {}
        row = {"benchmark": f"`{name}`"}
        if stored.get("date"):
            row["date"] = stored["date"]
        else:
            row["date"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime(path.stat().st_mtime))
            row["date"] += " UTC ‡"
        for header, key in HARDWARE_COLUMNS:
            if key in stored:
                value = stored[key]
                if value is None and key == "cuda":
                    value = "none"
                elif key == "memory_gb" and isinstance(value, int | float):
                    value = f"{value:.1f}"
                row[header] = value
            else:
                value = machine_now().get(key)
                if key == "cuda" and value is None and key in machine_now():
                    value = "none"
                elif key == "memory_gb" and isinstance(value, int | float):
                    value = f"{value:.1f}"
                row[header] = f"{fmt(value)} †"
                filled = True
        # The code is never filled from this checkout: it may not be the one that measured.
        row["commit"] = f"`{stored['commit']}`" if stored.get("commit") else None
        rows.append(row)
    out = [
        table(
            rows,
            [("benchmark", "benchmark", 0), ("run", "date", 0)]
            + [(h, h, 1) for h, _ in HARDWARE_COLUMNS]
            + [("commit", "commit", 0)],
        )
    ]
    if filled:
        out.append(
            "† not recorded in the results file: read from the machine that wrote this report, "
            "at report time (the benchmark may have run elsewhere)."
        )
    if any(r["commit"] is None for r in rows):
        out.append(
            f"{MISSING} (commit): the results file does not record the code that measured it."
        )
    if any(r["date"].endswith("‡") for r in rows):
        out.append("‡ not recorded in the results file: the file's modification time.")
    return out


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def load_results(path: Path):
    """The JSON of ``path``, None if it does not exist, or the error message as a string."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return f"could not read `{path.name}`: {error}"
    return data if isinstance(data, dict) else f"`{path.name}` does not hold a JSON object"


def build_report(
    results_dir: Path = RESULTS,
    names: Sequence[str] | None = None,
    *,
    heading_level: int = 1,
    link_prefix: str = "",
    title: bool = True,
) -> str:
    """The Markdown report of the results files ``<results_dir>/<name>.json``.

    ``names``: the benchmarks to report, default every ``bench_*.py`` next to this file.
    ``heading_level``: level of the title (sections one below). ``link_prefix``: prepended to
    the results file names in links (the report's location relative to ``results_dir``).
    """
    results_dir = Path(results_dir)
    names = list(discover()) if names is None else list(names)
    h = "#" * heading_level
    lines: list[str] = []
    if title:
        lines += [
            f"{h} Benchmark results",
            "",
            "Generated by `python benchmarks/run_all.py` from the JSON files in "
            "`benchmarks/results/`; rerun one benchmark with `python benchmarks/run_all.py "
            "--only NAME`, or rebuild this report alone with `--report-only`.",
            "",
        ]
    loaded = []
    for name in names:
        title_text, builder = SECTIONS.get(name, (name.replace("_", " ").capitalize(), None))
        path = results_dir / f"{name}.json"
        lines += [f"{h}# {title_text}", ""]
        data = load_results(path)
        if data is None:
            lines += [
                f"*Not run yet*: no `{path.name}` (run `python benchmarks/run_all.py --only "
                f"{name}`).",
                "",
            ]
            continue
        if isinstance(data, str):
            lines += [f"*No results*: {data}.", ""]
            continue
        try:
            body = (builder or section_generic)(data)
        except Exception as error:  # a changed JSON layout must not stop the report
            body = [f"*Could not render `{path.name}`*: {type(error).__name__}: {error}."]
        if data.get("note"):  # what the saved figures predate or leave out
            body.append(f"Note: {data['note']}")
        body.append(f"Source: `bench_{name}.py`, [`{path.name}`]({link_prefix}{path.name}).")
        for paragraph in body:
            if paragraph:
                lines += [paragraph, ""]
        loaded.append((name, path, data))
    if loaded:
        lines += [f"{h}# Hardware", ""]
        for paragraph in hardware_section(loaded):
            lines += [paragraph, ""]
    return "\n".join(_blank_lines_between(lines)).rstrip() + "\n"


def _blank_lines_between(lines: list[str]) -> list[str]:
    """Split multi-line entries into lines and drop repeated blank lines."""
    out: list[str] = []
    for line in "\n".join(lines).split("\n"):
        if not (line == "" and out and out[-1] == ""):
            out.append(line)
    return out


def insert_between_markers(text: str, report: str) -> str | None:
    """``text`` with ``report`` between the results markers; None when they are missing."""
    start = text.find(START)
    end = text.find(END, start + len(START)) if start >= 0 else -1
    if end < 0:
        return None
    return text[: start + len(START)] + "\n\n" + report.strip() + "\n\n" + text[end:]


def enclosing_level(text: str) -> int:
    """Level of the last Markdown heading before the start marker (0 if none)."""
    before = text[: max(text.find(START), 0)]
    levels = [len(m.group(1)) for m in re.finditer(r"^(#{1,6})\s", before, re.MULTILINE)]
    return levels[-1] if levels else 0


def write_reports(results_dir: Path = RESULTS, readme: Path | None = ROOT_README) -> Path:
    """Write ``<results_dir>/README.md`` and, where it has the markers, ``readme``."""
    report = build_report(results_dir)
    target = Path(results_dir) / "README.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(report)
    print(f"wrote {target}")
    if readme is not None and Path(readme).exists():
        text = Path(readme).read_text()
        level = enclosing_level(text)
        prefix = os.path.relpath(Path(results_dir).resolve(), Path(readme).resolve().parent)
        nested = build_report(
            results_dir,
            heading_level=min(max(level, 1), 5),  # sections one below the enclosing one
            link_prefix=Path(prefix).as_posix() + "/",
            title=False,
        )
        updated = insert_between_markers(text, nested)
        if updated is None:
            print(f"{readme}: no {START} ... {END} markers, left as it is")
        elif updated != text:
            Path(readme).write_text(updated)
            print(f"updated the results section of {readme}")
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--skip", nargs="+", metavar="NAME", help="do not run these")
    parser.add_argument(
        "--report-only", action="store_true", help="run nothing, rebuild the report from the JSON"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    scripts = discover()
    if args.list:
        for name, script in scripts.items():
            print(f"{name:<18} {script.name}")
        return 0
    failed = []
    if not args.report_only:
        try:
            names = select(list(scripts), args.only, args.skip)
        except ValueError as error:
            parser.error(str(error))
        if "SKDCGMM_DATA" not in os.environ:
            print("warning: SKDCGMM_DATA is not set; benchmarks that need MNIST will fail")
        done = run_benchmarks(names, scripts)
        print("\nsummary:")
        for name, code, seconds in done:
            print(f"  {name:<18} {'ok' if code == 0 else 'FAILED':<7} {seconds / 60:6.1f} min")
        failed = [name for name, code, _ in done if code != 0]
    write_reports()
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
