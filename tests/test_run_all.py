"""The benchmark report builder (benchmarks/run_all.py) on small synthetic results files."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

RUN_ALL = Path(__file__).parents[1] / "benchmarks" / "run_all.py"


@pytest.fixture(scope="module")
def run_all():
    return load_script("run_all")


@pytest.fixture
def no_machine(run_all, monkeypatch):
    """Fail if the report falls back to this machine's hardware (it imports torch)."""

    def fail():
        raise AssertionError("machine_now() called although the files record the hardware")

    monkeypatch.setattr(run_all, "machine_now", fail)


HARDWARE = {
    "date": "2030-01-02 03:04:05 UTC",
    "cpu_model": "Test CPU 9000",
    "cpu_count": 4,
    "torch_threads": 4,
    "memory_gb": 15.5,
    "torch": "9.9.9",
    "cuda": None,
    "commit": "abc1234-dirty",
}

RESULTS = {
    "extensions": {
        "seeds": [0, 1],
        "summary": [
            {"dataset": "fashion-mnist", "protocol": "one-class", "model": "top_refit=em",
             "roc_auc_mean": 0.92114, "roc_auc_std": 0.0021, "roc_auc_per_seed": [0.919, 0.923]},
            {"dataset": "mnist", "protocol": "clustering", "model": "DeepConvGMM(flat)",
             "accuracy_mean": 0.55, "accuracy_std": 0.0, "accuracy_per_seed": [0.55],
             "nmi_mean": 0.5, "nmi_std": 0.0, "nmi_per_seed": [0.5]},
            {"dataset": "mnist", "protocol": "samples", "model": "top_refit=em, floor 0.01",
             "ndb_k_mean": 0.687, "ndb_k_std": 0.0065, "ndb_k_per_seed": [0.68, 0.693]},
        ],
    },
    "defaults": {
        "seed": 0,
        "reg_covar": 0.05,
        "rows": [
            {"row": "flat vs GaussianMixture (MNIST 60k)", "K": 100, "em_seconds": 63.0,
             "em_iterations": 39, "em_test_log_likelihood": 212.88, "seconds": 5.2,
             "epochs": 6, "test_log_likelihood": 217.45, "speedup": 12.1},
            {"row": "deep default (C, MNIST 60k)", "K": 10, "seconds": 46.4, "epochs": 3,
             "accuracy": 0.6094, "nmi": 0.6012},
            {"row": "samples (mnist, 20000 images)", "K": 25, "seconds": 44.4, "epochs": 9,
             "ndb_k": 0.7, "em_ndb_k": 0.76},
        ],
    },
    "flat_vs_sklearn": {
        "data": "MNIST",
        "min_variance": 0.05,
        "rows": [
            {"model": "GaussianMixture(diag, EM)", "K": 10, "fit_seconds": 11.5, "n_iter": 25,
             "test_log_likelihood": 142.03, "accuracy": 0.541, "nmi": 0.49, "ari": 0.34},
            {"model": "DeepConvGMM(flat, 5 epochs)", "K": 10, "fit_seconds": 4.4, "n_iter": 5,
             "test_log_likelihood": 167.53, "accuracy": 0.55, "nmi": 0.5, "ari": 0.36,
             "speedup_vs_em": 2.6, "test_ll_relative_gap": -0.1796},
        ],
    },
    "clustering": {
        "deep": "C",
        "rows": [
            {"dataset": "mnist", "model": "DeepConvGMM(C)", "fit_seconds": 363.5,
             "accuracy": 0.6741, "nmi": 0.634, "ari": 0.551},
            {"dataset": "mnist", "model": "linear probe (C, layer 2)",
             "probe_train_samples": 20000, "test_accuracy": 0.9717},
        ],
    },
    "outliers": {
        "rows": [
            {"dataset": "mnist", "protocol": "one-class", "class": c, "model": m, "roc_auc": a}
            for c in (0, 1)
            for m, a in (("GMM", 0.90 + c / 100), ("DeepConvGMM(C)", 0.97 + c / 100))
        ],
        "note": "Measured before the default changed.",
    },
    "representation": {
        "rows": [
            {"dataset": "fashion-mnist", "protocol": "one-class", "class": 0, "model": m,
             "roc_auc": a}
            for m, a in (("pixels", 0.92), ("DeepConvGMM(C)", 0.90), ("features", 0.91))
        ],
    },
    "presets": {
        "rows": [
            {"preset": "C", "images": 10000, "epochs": 1, "fit_seconds": 3.6,
             "train_images_per_s": 2749.6, "score_images_per_s": 1588.8,
             "peak_rss_mb": 561.5, "training_extra_mb": 25.8, "parameters": 63735},
        ],
    },
    "sampling": {
        "components": 100,
        "rows": [
            {"dataset": "mnist", "model": "test set (floor)", "fit_seconds": None,
             "ndb_k": 0.29, "js": 0.0047, "samples_per_second": None},
            {"dataset": "mnist", "model": "DeepConvGMM(flat)", "fit_seconds": 16.2,
             "ndb_k": 0.66, "ndb_k_std": 0.0253, "js": 0.0669, "samples_per_second": 23781.2},
        ],
    },
    "memory": {
        "rows": [
            {"n_images": 7000, "rss_before_mb": 600.0, "peak_rss_mb": 700.0,
             "inference_increase_mb": 100.0, "transform_output_mb": 16.2, "seconds": 3.3},
        ],
    },
    "speed": {
        "device": "cpu",
        "n_images": 10000,
        "repeats": 3,
        "matmul_peak_gflops": 300.0,
        "presets": [
            {"preset": "C", "k": 10, "train_images_per_s": 5000.0, "score_images_per_s": 3000.0,
             "train_mflop_per_image": 6.0, "achieved_gflops": 30.0, "fraction_of_peak": 0.1,
             "issue_mflop_per_image": 10.0, "issue_peak_implied_images_per_s": 30000.0,
             "fraction_of_issue_peak_implied": 0.1667, "compile": True},
        ],
        "flat_vs_sklearn": {"k": 100, "gm_seconds": 40.0, "gm_iterations": 25,
                            "gm_test_log_likelihood": 213.0, "flat_seconds": 8.0,
                            "flat_epochs": 6, "flat_test_log_likelihood": 217.0,
                            "speed_up": 5.0},
    },
    "profile": {
        "n_images": 10000,
        "threads": 2,
        "models": [
            {"layers": "C", "k": 10, "ms_per_step": 8.5, "profiled_ms_per_step": 9.0,
             "categories": [
                 {"category": "convolution (log-scores of patches)", "ms_per_step": 3.6,
                  "share_of_profiled_step": 0.4},
                 {"category": "matmuls", "ms_per_step": 0.45, "share_of_profiled_step": 0.05},
             ]},
            {"layers": "C", "k": 10, "compile": True, "ms_per_step": 7.1,
             "profiled_ms_per_step": 7.5, "categories": []},
        ],
    },
}  # fmt: skip


def write(directory, name, payload, hardware=HARDWARE):
    data = {"benchmark": name, **payload}
    if hardware is not None:
        data["hardware"] = hardware
    (directory / f"{name}.json").write_text(json.dumps(data))


def test_renders_a_table_per_benchmark(run_all, tmp_path, no_machine):
    for name, payload in RESULTS.items():
        write(tmp_path, name, payload)
    report = run_all.build_report(tmp_path, names=list(RESULTS))

    assert report.startswith("# Benchmark results\n")
    for title, _ in run_all.SECTIONS.values():
        assert f"\n## {title}\n" in report
    assert (
        "| flat vs GaussianMixture (MNIST 60k) | 100 | 5.2 | 6 | test log-lik. 217.45 | "
        "63.0 s (39 iter.), test log-lik. 212.88; default 12.1x faster |" in report
    )
    deep_row = "| deep default (C, MNIST 60k) | 10 | 46.4 | 3 | accuracy 0.609, NMI 0.601 | – |"
    assert deep_row in report
    assert "| samples (mnist, 20000 images) | 25 | 44.4 | 9 | NDB/K 0.700 | NDB/K 0.760 |" in report
    assert "Settings: `seed=0`, `reg_covar=0.05`." in report
    extensions = [  # with the number of seeds behind each row
        "| fashion-mnist | one-class | top_refit=em | 2 | 0.9211 ± 0.0021 | – | – | – |",
        "| mnist | samples | top_refit=em, floor 0.01 | 2 | – | – | – | 0.6870 ± 0.0065 |",
        "| mnist | clustering | DeepConvGMM(flat) | 1 | – | 0.5500 | 0.5000 |",
    ]
    assert all(line in report for line in extensions)
    assert "| 10 | DeepConvGMM(flat, 5 epochs) | 4.4 | 5 | 167.53 | 2.60 | -0.1796 |" in report
    assert "| mnist | DeepConvGMM(C) | 363.5 | 0.674 | 0.634 | 0.551 |" in report
    assert "| mnist | linear probe (C, layer 2) | 20,000 | 0.9717 |" in report
    # Outliers: mean over the classes per model, the best in bold.
    assert "| mnist | one-class | 2 | 0.9050 | **0.9750** |" in report
    assert "| fashion-mnist | one-class | 1 | **0.9200** | 0.9000 | 0.9100 |" in report
    assert "what is missing is in the features" in report
    assert "\nNote: Measured before the default changed.\n" in report  # the saved note
    assert report.count("Note: ") == 1  # the representation results have none
    assert "| C | 63,735 | 3.6 | 2,750 | 1,589 | 562 | 26 |" in report
    assert "| mnist | `test set (floor)` | 0.290 | – | 0.0047 | – | – |" in report
    assert "| mnist | `DeepConvGMM(flat)` | 0.660 | 0.025 | 0.0669 | 23,781 | 16.2 |" in report
    assert "| 7,000 | 600 | 700 | 100 | 16 | 3.3 |" in report
    assert "Settings: `deep=C`." in report
    assert "10,000 MNIST images (cpu), the best of 3 fits;" in report
    assert "| C | 10 | yes | 5,000 | 3,000 | 6.00 | 30.0 | 10 % |" in report
    assert (
        "Preset C with K = 10 (the paper's DCGMM-C, compiled) at the cost the performance issue "
        "gives it (10.0 MFLOP per image and step, the reference implementation's accounting): "
        "5,000 images/s = 17 % of the 30,000 images/s the peak implies." in report
    )
    assert "vs flat DeepConvGMM 8.0 s (6 epochs, 217.00): 5.0x faster." in report
    assert "*C* (K = 10): 8.50 ms per step without the profiler, 9.00 ms profiled." in report
    assert "*C* (K = 10, compiled): 7.10 ms per step without the profiler" in report
    assert "| convolution (log-scores of patches) | 3.60 | 40 % |" in report
    # Hardware as recorded, nothing filled in from this machine.
    assert "## Hardware" in report
    row = (
        "| `presets` | 2030-01-02 03:04:05 UTC | Test CPU 9000 | 4 | 4 | 15.5 | 9.9.9 | none "
        "| `abc1234-dirty` |"
    )
    assert row in report
    assert "†" not in report and "‡" not in report and "(commit)" not in report
    # Every table is a block of its own: a blank line before and after.
    lines = report.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and not lines[i - 1].startswith("|"):
            assert lines[i - 1] == ""
        if line.startswith("|") and i + 1 < len(lines) and not lines[i + 1].startswith("|"):
            assert lines[i + 1] == ""


def test_missing_and_unreadable_files(run_all, tmp_path, no_machine):
    (tmp_path / "clustering.json").write_text("{not json")
    report = run_all.build_report(tmp_path, names=["memory", "clustering"])
    assert "*Not run yet*: no `memory.json`" in report
    assert "--only memory" in report
    assert "could not read `clustering.json`" in report
    assert "## Hardware" not in report  # nothing loaded, nothing to describe


def test_unknown_layout_and_benchmark_do_not_crash(run_all, tmp_path, no_machine):
    write(tmp_path, "presets", {"rows": [{"unexpected": 1}]})
    write(tmp_path, "new_thing", {"rows": [{"a": 1, "b": 0.5, "nested": {"x": 1}}]})
    report = run_all.build_report(tmp_path, names=["presets", "new_thing"])
    assert "| – | – | – | – | – | – | – |" in report  # known benchmark, unknown fields
    assert "## New thing" in report
    assert "| a | b |" in report and "| 1 | 0.5000 |" in report


def test_missing_hardware_is_filled_from_this_machine(run_all, tmp_path, monkeypatch):
    monkeypatch.setattr(
        run_all, "machine_now", lambda: {"cpu_model": "Here CPU", "cpu_count": 2, "cuda": None}
    )
    write(tmp_path, "presets", RESULTS["presets"], hardware={"cpu_count": 8, "torch": "2.0"})
    report = run_all.build_report(tmp_path, names=["presets"])
    row = next(line for line in report.splitlines() if line.startswith("| `presets`"))
    assert "Here CPU †" in row and "| 8 |" in row and "2.0" in row and "none †" in row
    assert "UTC ‡" in row  # no date recorded: the file's modification time
    assert "† not recorded in the results file" in report
    # The commit is never taken from this checkout: it may not be the code that measured.
    assert row.endswith("| – |") and "– (commit): the results file does not record" in report


def test_readme_markers(run_all, tmp_path, monkeypatch, no_machine):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    write(results, "presets", RESULTS["presets"])
    monkeypatch.setattr(run_all, "discover", lambda: {"presets": Path("bench_presets.py")})
    readme = tmp_path / "README.md"
    text = f"# Title\n\n## Benchmarks\n\nIntro.\n\n{run_all.START}\nold\n{run_all.END}\n\nAfter.\n"
    readme.write_text(text)

    run_all.write_reports(results, readme)

    assert (results / "README.md").read_text().startswith("# Benchmark results")
    updated = readme.read_text()
    assert "old" not in updated and updated.endswith(f"{run_all.END}\n\nAfter.\n")
    inside = updated.split(run_all.START)[1].split(run_all.END)[0]
    assert "\n### Presets: speed and memory (MNIST)\n" in inside  # nested under "## Benchmarks"
    assert "# Benchmark results" not in inside
    assert "(benchmarks/results/presets.json)" in inside

    readme.write_text("# No markers\n")
    run_all.write_reports(results, readme)
    assert readme.read_text() == "# No markers\n"


def test_select(run_all):
    names = ["flat_vs_sklearn", "clustering", "memory"]
    assert run_all.select(names) == names
    assert run_all.select(names, only=["bench_memory.py", "clustering"]) == ["clustering", "memory"]
    assert run_all.select(names, skip=["flat-vs-sklearn"]) == ["clustering", "memory"]
    with pytest.raises(ValueError, match="unknown"):
        run_all.select(names, only=["nope"])


def test_discovers_the_benchmark_scripts(run_all):
    scripts = run_all.discover()
    assert {"defaults", "flat_vs_sklearn", "clustering", "outliers", "presets"} <= set(scripts)
    assert list(scripts)[:2] == ["defaults", "flat_vs_sklearn"]  # the headline figures first
    assert all(path.name == f"bench_{name}.py" for name, path in scripts.items())


def test_runs_scripts_in_sequence(run_all, tmp_path):
    (tmp_path / "bench_ok.py").write_text("print('fine')\n")
    (tmp_path / "bench_broken.py").write_text("raise SystemExit(3)\n")
    scripts = run_all.discover(tmp_path)
    assert list(scripts) == ["broken", "ok"]
    done = run_all.run_benchmarks(["ok", "broken"], scripts)
    assert [(name, code) for name, code, _ in done] == [("ok", 0), ("broken", 3)]


def test_clustering_over_seeds_is_reported_as_mean_and_spread(run_all):
    data = {
        "deep": "C",
        "seeds": [0, 1],
        "rows": [
            {"dataset": "mnist", "seed": s, "model": "m", "fit_seconds": 1.0, "accuracy": a,
             "nmi": 0.5, "ari": 0.4}
            for s, a in [(0, 0.6), (1, 0.4)]
        ],
    }  # fmt: skip
    data["summary"] = load_benchmark("clustering").summarise(data["rows"])
    text = "\n".join(run_all.section_clustering(data))
    assert (
        "| mnist | m | 2 | 1.0 | 0.500 ± 0.100 | 0.500 ± 0.000 | 0.400 ± 0.000 | 0.600 / 0.400 |"
        in text
    )
    assert "`seeds=[0, 1]`" in text


def test_extensions_summary_lists_per_seed_figures_in_seed_order():
    # rows merged with --keep arrive in any seed order; the per-seed lists must follow `seeds`
    rows = [
        {"dataset": "d", "protocol": "one-class", "seed": s, "class": c, "model": "m",
         "roc_auc": auc}
        for s, c, auc in [(2, 0, 0.7), (2, 1, 0.9), (0, 0, 0.5), (1, 0, 0.6)]
    ]  # fmt: skip
    (entry,) = load_benchmark("extensions").summarise(rows)
    assert entry["seeds"] == [0, 1, 2]
    assert entry["roc_auc_per_seed"] == pytest.approx([0.5, 0.6, 0.8])
    assert entry["roc_auc_mean"] == pytest.approx((0.5 + 0.6 + 0.8) / 3)


def load_benchmark(name):
    """The benchmark script ``bench_<name>.py``, loaded as a module."""
    return load_script(f"bench_{name}")


def load_script(stem):
    """``benchmarks/<stem>.py``, loaded as a module (with ``benchmarks`` importable, for the
    scripts' ``_common``)."""
    spec = importlib.util.spec_from_file_location(
        f"skdcgmm_bench_{stem}", RUN_ALL.parent / f"{stem}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(RUN_ALL.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(RUN_ALL.parent))
    return module


@pytest.mark.parametrize("layers", ["C", "flat"])
def test_representation_benchmark_reads_the_top_layers_input(layers):
    """bench_representation fits its GaussianMixture on exactly what the top GMM layer reads."""
    import numpy as np
    import torch

    from skdcgmm import DeepConvGMM

    X = np.random.RandomState(0).rand(20, 28 * 28)
    model = DeepConvGMM(2, layers=layers, max_iter=1, random_state=0).fit(X)
    features = load_benchmark("representation").top_input(model, X)
    with torch.no_grad():
        expected = model.module_.double().top_input(torch.from_numpy(X).view(20, 784, 1))
    np.testing.assert_allclose(features, expected.flatten(1).numpy(), rtol=1e-12, atol=1e-12)


def test_code_version_ignores_saved_results(tmp_path, tmp_path_factory, monkeypatch):
    """Rows record the code that measured them: results written by an earlier run (outputs,
    not code) leave the commit clean, a changed source file marks it dirty."""
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    common = load_script("_common")
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (results / "r.json").write_text("{}")

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       cwd=tmp_path, check=True, capture_output=True)  # fmt: skip

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    monkeypatch.setattr(common, "RESULTS", results)
    clean = common.code_version()
    assert clean and not clean.endswith("-dirty")
    (results / "r.json").write_text('{"rows": []}')
    assert common.code_version() == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert common.code_version() == f"{clean}-dirty"
    outside = tmp_path_factory.mktemp("no_git")  # beside the repository, not in it
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(outside.parent))
    monkeypatch.setattr(common, "RESULTS", outside / "results")
    assert common.code_version() is None


def test_benchmarks_measure_the_checkouts_package(tmp_path):
    """An installed skdcgmm (here a stale one on PYTHONPATH) is not what the benchmarks measure:
    they import the package of their own checkout, whose commit they record."""
    import os
    import subprocess

    stale = tmp_path / "skdcgmm"
    stale.mkdir()
    (stale / "__init__.py").write_text("raise ImportError('the stale install was imported')\n")
    code = "import _common, skdcgmm; print(skdcgmm.__file__)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=RUN_ALL.parent, env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert Path(out.stdout.strip()) == RUN_ALL.parents[1] / "skdcgmm" / "__init__.py"
