"""Helpers shared by the benchmark scripts: data, baselines, step budgets, results files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

#: The checkout whose package the benchmarks measure, and whose commit they record: first on the
#: path, before any installed skdcgmm (a non-editable install of an older commit would be
#: measured and labelled with this checkout's commit).
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import skdcgmm  # noqa: E402
from skdcgmm import DeepConvGMM  # noqa: E402
from skdcgmm.datasets import load_fashion_mnist, load_mnist  # noqa: E402

if not Path(skdcgmm.__file__).resolve().is_relative_to(ROOT):
    raise ImportError(
        f"the benchmarks of {ROOT} must measure its skdcgmm, but {skdcgmm.__file__} was "
        "imported first: import _common before skdcgmm"
    )

RESULTS = Path(__file__).parent / "results"
LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}
#: The preset that ``layers="auto"`` gives 28x28 images: the benchmarks' default deep model.
AUTO_LAYERS = DeepConvGMM._auto_layers
#: reg_covar grid of the GaussianMixture baseline; the best value on held-out data is kept.
REG_GRID = (0.01, 0.05, 0.1)


def load(name: str):
    """``(X_train, y_train, X_test, y_test)`` of a data set, pixels in [0, 1]."""
    X, y = LOADERS[name]("train")
    Xt, yt = LOADERS[name]("test")
    return X, y, Xt, yt


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gb() -> float | None:
    """Physical memory in GiB, or None where it cannot be found out."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (AttributeError, OSError, ValueError):
        return None


def code_version() -> str | None:
    """The checkout's commit (``git describe --always``), with ``-dirty`` where code differs
    from it; saved results (``benchmarks/results``) are outputs, not code, and do not count.
    None outside git."""
    try:  # pathspecs: the whole work tree but the results folder
        described = _git(RESULTS.parent, "describe", "--always")
        changed = _git(RESULTS.parent, "status", "--porcelain", "--untracked-files=no", "--",
                       ":(top)", f":(exclude){RESULTS.name}")  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if not described:
        return None
    return f"{described}-dirty" if changed else described


def _git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise subprocess.SubprocessError(out.stderr.strip())
    return out.stdout.strip()


#: The code as the benchmark started (edits made while it runs are not the code that measured).
CODE_VERSION = code_version()


def hardware() -> dict:
    """What a benchmark ran on and when (stored in every results file)."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": memory_gb(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "commit": CODE_VERSION,
    }


def epochs(text: str):
    """An ``--epochs`` value: ``"auto"`` (the library's planned schedule) or an int."""
    return text if text == "auto" else int(text)


def fit_timed(model, X):
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    return model, time.perf_counter() - tic


def best_gaussian_mixture(k: int, X, X_val, seed: int = 0):
    """GaussianMixture(diag) with the reg_covar of REG_GRID scoring best on ``X_val``."""
    best = None
    for reg in REG_GRID:
        model, seconds = fit_timed(
            GaussianMixture(k, covariance_type="diag", reg_covar=reg, random_state=seed), X
        )
        score = model.score(X_val)
        if best is None or score > best[2]:
            best = (model, seconds, score, reg)
    return best[0], best[1], best[3]


def deep(k: int, layers, seed: int = 0, max_iter="auto", **params) -> DeepConvGMM:
    """``DeepConvGMM`` with the library's defaults but for ``layers``, ``max_iter``, ``params``."""
    return DeepConvGMM(k, layers=layers, max_iter=max_iter, random_state=seed, **params)


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "hardware": hardware(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=float))
    print(f"saved {path}")
    return path


def holdout(X, fraction: float = 0.1, seed: int = 0):
    """Split off a validation part (for choosing reg_covar)."""
    rng = np.random.RandomState(seed)
    idx = rng.permutation(len(X))
    n_val = max(1, int(fraction * len(X)))
    return X[idx[n_val:]], X[idx[:n_val]]


def run_child(script: str, *args) -> dict:
    """Run ``python script *args`` in a fresh process; return the JSON of its last line."""
    cmd = [sys.executable, script, *map(str, args)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])
