"""What a user gets with the defaults: every row with no options, beside its baseline.

1. Flat model: ``DeepConvGMM(100, layers="flat").fit(X)`` on the 60,000 MNIST training images vs
   ``GaussianMixture(100, covariance_type="diag", reg_covar=0.05)`` (EM): fit time, speed-up and
   test log-likelihood per image (both exact mixture log-likelihoods).
2. Deep model: ``DeepConvGMM(10).fit(X)`` (``layers="auto"``) on 60,000 MNIST images: the epochs the
   default plan takes, fit time, and test clustering accuracy / NMI.
3. Samples: ``DeepConvGMM(25).fit(X[:20000]).sample(2000)`` vs ``GaussianMixture(25, diag,
   reg_covar=0.05)`` sampled the same way (clipped to [0, 1]), NDB/K on 100 k-means bins of the
   20,000 training images (mean over bin seeds 0-2), on MNIST and Fashion-MNIST.

Run: ``SKDCGMM_DATA=../shared/data python benchmarks/bench_defaults.py``
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import AUTO_LAYERS, fit_timed, load, save
from sklearn.metrics import normalized_mutual_info_score
from sklearn.mixture import GaussianMixture

from skdcgmm import DeepConvGMM
from skdcgmm.metrics import NDB, clustering_accuracy

REG_COVAR = 0.05  # the flat model's min_variance


def flat_row(X, Xt, k: int, seed: int) -> dict:
    em, em_s = fit_timed(
        GaussianMixture(k, covariance_type="diag", reg_covar=REG_COVAR, random_state=seed), X
    )
    flat, flat_s = fit_timed(DeepConvGMM(k, layers="flat", random_state=seed), X)
    row = {
        "row": "flat vs GaussianMixture (MNIST 60k)",
        "K": k,
        "em_seconds": em_s,
        "em_iterations": int(em.n_iter_),
        "em_test_log_likelihood": float(em.score(Xt)),
        "seconds": flat_s,
        "epochs": int(flat.n_iter_),
        "test_log_likelihood": float(flat.score(Xt)),
        "speedup": em_s / flat_s,
    }
    print(
        f"flat K={k}: {flat_s:.1f} s ({row['epochs']} epochs), test LL "
        f"{row['test_log_likelihood']:.2f} | EM {em_s:.1f} s ({row['em_iterations']} iter), "
        f"test LL {row['em_test_log_likelihood']:.2f} | speed-up {row['speedup']:.1f}x",
        flush=True,
    )
    return row


def deep_row(X, y, Xt, yt, seed: int) -> dict:
    model, seconds = fit_timed(DeepConvGMM(10, random_state=seed), X)
    pred = model.predict(Xt)
    row = {
        "row": f"deep default ({AUTO_LAYERS}, MNIST 60k)",
        "K": 10,
        "seconds": seconds,
        "epochs": int(model.n_iter_),
        "accuracy": clustering_accuracy(yt, pred),
        "nmi": normalized_mutual_info_score(yt, pred),
    }
    print(
        f"deep default: {seconds:.1f} s ({row['epochs']} epochs), test accuracy "
        f"{row['accuracy']:.4f}, NMI {row['nmi']:.4f}",
        flush=True,
    )
    return row


def sample_row(name: str, X, k: int, n_train: int, n_samples: int, seed: int) -> dict:
    X = X[:n_train]
    bins = [NDB(100, random_state=s).fit(X) for s in (0, 1, 2)]
    model, seconds = fit_timed(DeepConvGMM(k, random_state=seed), X)
    em, _ = fit_timed(
        GaussianMixture(k, covariance_type="diag", reg_covar=REG_COVAR, random_state=seed), X
    )
    deep_samples = model.sample(n_samples)[0]
    em_samples = np.clip(em.sample(n_samples)[0], 0.0, 1.0)
    deep_ndb = [b.score(deep_samples).ndb_k for b in bins]
    em_ndb = [b.score(em_samples).ndb_k for b in bins]
    row = {
        "row": f"samples ({name}, {n_train} images)",
        "K": k,
        "seconds": seconds,
        "epochs": int(model.n_iter_),
        "ndb_k": float(np.mean(deep_ndb)),
        "ndb_k_per_bin_seed": deep_ndb,
        "em_ndb_k": float(np.mean(em_ndb)),
        "em_ndb_k_per_bin_seed": em_ndb,
    }
    print(
        f"samples {name}: NDB/K default {row['ndb_k']:.3f} vs GaussianMixture "
        f"{row['em_ndb_k']:.3f} (fit {seconds:.1f} s, {row['epochs']} epochs)",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flat-components", type=int, default=100)
    parser.add_argument("--sample-components", type=int, default=25)
    parser.add_argument("--sample-train", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    args = parser.parse_args()

    X, y, Xt, yt = load("mnist")
    rows = [flat_row(X, Xt, args.flat_components, args.seed), deep_row(X, y, Xt, yt, args.seed)]
    for name in args.datasets:
        Xs = X if name == "mnist" else load(name)[0]
        rows.append(
            sample_row(name, Xs, args.sample_components, args.sample_train, args.samples, args.seed)
        )
    save("defaults", {"seed": args.seed, "reg_covar": REG_COVAR, "rows": rows})


if __name__ == "__main__":
    main()
