"""Bounded inference memory: peak RSS of scoring MNIST with the paper's architecture C.

A "C" model (the paper's preset; ``layers="auto"`` is "C49" since issue 22) is fitted briefly; then,
for every size N of a growing slice of the 70,000 MNIST images (train + test), a fresh process loads
the model and the data and runs ``score_samples``, ``predict_proba`` and ``transform`` (of the
pooled first layer, 11 x 11 x 25 features per image). Reported: its peak RSS before and during
inference. Inference runs in chunks of at most ``skdcgmm._estimator._CPU_INFERENCE_BYTES`` of
activations (``_INFERENCE_BYTES`` on a GPU) and fills preallocated outputs, so the growth with N is
the output arrays only.

Run: ``SKDCGMM_DATA=../shared/data python benchmarks/bench_memory.py``
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import tempfile
import time

import numpy as np
from _common import fit_timed, load, run_child, save

from skdcgmm import DeepConvGMM


def _child(model_path: str, n: int) -> None:
    X, _, Xt, _ = load("mnist")
    X = np.concatenate([X, Xt])[:n]
    with open(model_path, "rb") as f:
        model = pickle.load(f)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tic = time.perf_counter()
    model.score_samples(X)
    model.predict_proba(X)
    features = model.set_params(transform_layer=2).transform(X)
    seconds = time.perf_counter() - tic
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "n_images": n,
        "rss_before_mb": before,
        "peak_rss_mb": peak,
        "inference_increase_mb": peak - before,
        "transform_output_mb": features.nbytes / 2**20,
        "seconds": seconds,
    }
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[7000, 35000, 70000])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return
    X, _, _, _ = load("mnist")
    model, seconds = fit_timed(DeepConvGMM(10, layers="C", max_iter=1, random_state=0), X[:5000])
    print(f"fitted {model.layers_} on 5,000 images in {seconds:.1f} s")
    with tempfile.NamedTemporaryFile(suffix=".pkl") as f:
        pickle.dump(model, f)
        f.flush()
        rows = [run_child(__file__, "--child", f.name, n) for n in args.sizes]
    for row in rows:
        print(
            f"N={row['n_images']:>6}: RSS before {row['rss_before_mb']:7.1f} MB, peak "
            f"{row['peak_rss_mb']:7.1f} MB (+{row['inference_increase_mb']:6.1f} MB; transform "
            f"output {row['transform_output_mb']:6.1f} MB), {row['seconds']:.1f} s"
        )
    save("memory", {"rows": rows})


if __name__ == "__main__":
    main()
