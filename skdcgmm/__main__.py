"""Demo: ``python -m skdcgmm`` fits DeepConvGMM and GaussianMixture on scikit-learn's digits.

Runs offline on the 8x8 digits bundled with scikit-learn, prints a side-by-side table of fit
time, held-out log-likelihood and clustering quality, and writes a PNG with 25 samples of every
model side by side (no plotting library needed).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split

from . import GMM, DeepConvGMM
from .metrics import clustering_accuracy
from .plotting import image_grid, save_png


def is_density(model: DeepConvGMM) -> bool:
    """Whether ``score_samples`` is an image log-density: a single GMM layer."""
    return sum(isinstance(spec, GMM) for spec in model.layers_) == 1


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(prog="python -m skdcgmm", description=__doc__)
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--max-iter", type=int, default=20, help="epochs of the DeepConvGMMs")
    parser.add_argument(
        "--output",
        default="skdcgmm_demo_samples.png",
        help="PNG of 25 samples per model (default: %(default)s; '' to skip)",
    )
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixels to [0, 1]
    X_train, X_test, _, y_test = train_test_split(
        X, y, test_size=0.3, random_state=args.random_state, stratify=y
    )
    models = {
        "DeepConvGMM (deep, auto)": DeepConvGMM(
            args.n_components, max_iter=args.max_iter, random_state=args.random_state
        ),
        "DeepConvGMM (flat, SGD)": DeepConvGMM(
            args.n_components, layers="flat", max_iter=args.max_iter, random_state=args.random_state
        ),
        "GaussianMixture (diag, EM)": GaussianMixture(
            args.n_components,
            covariance_type="diag",
            reg_covar=0.05,  # the same minimum variance as DeepConvGMM's default
            random_state=args.random_state,
        ),
    }
    print(
        f"Digits (8x8, {len(X_train)} train / {len(X_test)} test images), "
        f"{args.n_components} components\n"
    )
    header = f"{'model':<28}{'fit [s]':>9}{'test log-lik':>14}{'accuracy':>10}{'NMI':>7}{'ARI':>7}"
    print(header)
    print("-" * len(header))
    results = {}
    for name, model in models.items():
        tic = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_train)
        seconds = time.perf_counter() - tic
        labels = model.predict(X_test)
        # A deep model's score is the top layer's likelihood of lower-layer responsibilities,
        # not an image density, so it is not comparable and not shown.
        density = not isinstance(model, DeepConvGMM) or is_density(model)
        row = {
            "fit_seconds": seconds,
            "test_log_likelihood": float(model.score(X_test)) if density else float("nan"),
            "accuracy": clustering_accuracy(y_test, labels),
            "nmi": float(normalized_mutual_info_score(y_test, labels)),
            "ari": float(adjusted_rand_score(y_test, labels)),
        }
        results[name] = row
        print(
            f"{name:<28}{row['fit_seconds']:>9.2f}{row['test_log_likelihood']:>14.2f}"
            f"{row['accuracy']:>10.3f}{row['nmi']:>7.3f}{row['ari']:>7.3f}"
        )
    print("\naccuracy = Hungarian-matched clustering accuracy on the test set; test log-lik is")
    print(
        "the mean log-density of the test images (nan: a deep model's score is no image density)."
    )
    if args.output:
        grids = []
        for name, model in models.items():
            options = {"sharpening_steps": 20} if "deep" in name else {}
            if isinstance(model, DeepConvGMM):
                samples, _ = model.sample(25, **options)
            else:
                model.random_state = args.random_state
                samples = np.clip(model.sample(25)[0], 0.0, 1.0)
            grids.append(image_grid(samples, (8, 8), n_cols=5, pad_value=1.0))
        gap = np.ones((grids[0].shape[0], 4))
        save_png(args.output, np.hstack([grids[0], gap, grids[1], gap, grids[2]]), vmin=0, vmax=1)
        names = ", ".join(models)
        print(f"\nWrote {args.output}: 25 samples of each model, left to right: {names}")
    return results


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
