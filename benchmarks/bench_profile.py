"""Where the training time goes: a torch-profiler breakdown of one annealed epoch.

For the paper's architecture ``"C"`` (``layers="auto"`` is ``"C49"`` since issue 22), eager and with
``compile=True``, and the flat model at K = 100, each in a process of its own, a model is
fitted with batches of 100 (the ``batch_size="auto"`` value from 10,000 images up) for 2 epochs
on ``--n`` MNIST images (annealing has ended by then); one more epoch (``partial_fit``) runs
plainly (its images/s in ``history_`` give the plain step time), and another under
``torch.profiler``. The self CPU time of every aten operator is summed into categories
(convolutions, matmuls, the max over K, other elementwise passes and sums, pooling, other
operators); the kernels that torch.compile generates (one fused kernel for the passes of a
graph) are a category of their own, as is the self time of autograd's nodes, and the
optimiser's step is shown apart (its operators are in the categories). All are per SGD step.
The profiler slows small operators down, so the profiled step can be longer than the plain
one, and Python's own time between the operators is in neither.

Run: ``SKDCGMM_DATA=../shared/data python benchmarks/bench_profile.py``
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch
from _common import load, run_child, save
from sklearn.exceptions import ConvergenceWarning
from torch.profiler import ProfilerActivity, profile

from skdcgmm import DeepConvGMM

#: aten operator -> category (operators not listed count as "other operators").
CATEGORIES = {
    "convolution (log-scores of patches)": (
        "aten::mkldnn_convolution",
        "aten::convolution_backward",
        "aten::_slow_conv2d_forward",
        "aten::_slow_conv2d_backward",
    ),
    "matmuls": ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm"),
    "max over K (loss and its gradient)": ("aten::max", "aten::amax", "aten::scatter_"),
    "elementwise passes and sums": (
        "aten::mul",
        "aten::sub",
        "aten::add",
        "aten::add_",
        "aten::div",
        "aten::div_",
        "aten::exp_",
        "aten::clamp_min_",
        "aten::threshold_",
        "aten::sum",
        "aten::log",
        "aten::_softmax",
        "aten::_log_softmax",
        "aten::maximum",
        "aten::cat",
        "aten::copy_",
        "aten::fill_",
    ),
    "pooling": ("aten::max_pool2d_with_indices", "aten::avg_pool2d"),
}
_OF = {op: category for category, ops in CATEGORIES.items() for op in ops}
OPTIMISER = "Optimizer.step#SGD.step"
#: Profiler ranges of compiled graphs: their self time is the generated kernels'.
FUSED, FUSED_PREFIX = "fused kernels (torch.compile)", "## Call CompiledFxGraph"


def breakdown(events, n_steps: int) -> tuple[list[dict], float]:
    """``([{category, ms_per_step}], profiled ms per step)`` from ``key_averages()`` events.

    The categories split the self time of the aten operators; "autograd nodes and other
    ranges" is the self time of everything else the profiler saw (autograd's backward nodes,
    ``record_function`` ranges). Together they make the profiled step. The optimiser's step
    (its operators included in the categories above) is added as a last, overlapping row.
    """
    totals: dict[str, float] = {category: 0.0 for category in CATEGORIES}
    totals["other operators"] = 0.0
    totals[FUSED] = 0.0
    totals["autograd nodes and other ranges"] = 0.0
    for event in events:
        if event.key.startswith("aten::"):
            category = _OF.get(event.key, "other operators")
        elif event.key.startswith(FUSED_PREFIX):
            category = FUSED
        else:
            category = "autograd nodes and other ranges"
        totals[category] += event.self_cpu_time_total
    profiled = sum(totals.values())
    optimiser = next((e.cpu_time_total for e in events if e.key == OPTIMISER), 0.0)
    rows = [{"category": c, "ms_per_step": us / 1e3 / n_steps} for c, us in totals.items()]
    rows.append(
        {"category": "(optimizer.step, included above)", "ms_per_step": optimiser / 1e3 / n_steps}
    )
    return rows, profiled / 1e3 / n_steps


def profile_model(X, layers: str, k: int, compiled: bool, batch_size: int = 100) -> dict:
    """Plain and profiled time per step of an annealed epoch of ``layers`` on ``X``."""
    model = DeepConvGMM(
        k, layers=layers, max_iter=2, batch_size=batch_size, random_state=0, compile=compiled
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
        model.partial_fit(X)  # an annealed epoch without the profiler (timed in history_)
        plain = batch_size / model.history_["images_per_second"][-1] * 1e3
        n_steps = -(-len(X) // batch_size)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.partial_fit(X)
    events = prof.key_averages()
    rows, profiled = breakdown(events, n_steps)
    for row in rows:
        row["share_of_profiled_step"] = row["ms_per_step"] / profiled
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    return {
        "layers": layers,
        "k": k,
        "compile": compiled,
        "batch_size": batch_size,
        "steps": n_steps,
        "ms_per_step": plain,
        "profiled_ms_per_step": profiled,
        "categories": rows,
        "top_operators": [
            {
                "operator": e.key,
                "ms_per_step": e.self_cpu_time_total / 1e3 / n_steps,
                "calls_per_step": e.count / n_steps,
            }
            for e in top
        ],
    }


def report(result: dict) -> None:
    images_per_s = result["batch_size"] / result["ms_per_step"] * 1e3
    print(
        f"\n{result['layers']} (K = {result['k']}{', compiled' if result['compile'] else ''}): "
        f"{result['ms_per_step']:.2f} ms per step of "
        f"{result['batch_size']} images ({images_per_s:,.0f} images/s); profiled "
        f"{result['profiled_ms_per_step']:.2f} ms",
        flush=True,
    )
    for row in result["categories"]:
        print(
            f"  {row['category']:<38} {row['ms_per_step']:6.2f} ms  "
            f"{row['share_of_profiled_step']:5.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="training images")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one model in a process of its own: profiles do not disturb each other
        layers, k, compiled = args.child
        X = load("mnist")[0][: args.n]
        print(json.dumps(profile_model(X, layers, int(k), compiled == "compiled")))
        return
    models = []
    for layers, k, how in [("C", 10, "eager"), ("C", 10, "compiled"), ("flat", 100, "eager")]:
        models.append(run_child(__file__, "--child", layers, k, how, "--n", args.n))
        report(models[-1])
    save("profile", {"n_images": args.n, "threads": torch.get_num_threads(), "models": models})


if __name__ == "__main__":
    main()
