"""Extensions beyond the paper (issue 22): the top layer refitted by EM, against flat baselines.

One SGD fit of the paper's deep model (``DeepConvGMM(K, layers="C")``; the default is now C49,
measured with ``--stacks C49``) per task,
then its top layer refitted by EM on the fixed features, as ``top_refit="em"`` does after SGD
(the estimator's own refit step on a copy), at several variance floors of the refit. Beside
them the flat baselines: ``GaussianMixture(diag)`` with the best ``reg_covar`` of a small grid
(held-out log-likelihood) and ``DeepConvGMM(K, layers="flat")``, all with their defaults.

Protocols: *one-class* (fit on class c, ROC-AUC of ``score_samples`` on the test set with class c
the inliers, K = 10), *leave-out* (fit on the other 9 classes, the held-out class the outliers,
K = 25), *clustering* (all training images, K = 10: test accuracy and NMI) and *samples* (the
first 20,000 training images, K = 25: NDB/K of 2,000 samples on 100 k-means bins of those
images, mean over bin seeds 0-2; GaussianMixture's samples clipped to [0, 1]).

Run: ``SKDCGMM_DATA=../shared/data python benchmarks/bench_extensions.py`` (add ``--seeds 0 1 2``;
``--keep`` adds to the saved rows instead of replacing them). ``--stacks`` adds fits with other
layer stacks (EM refit at each of ``--floors``; the default's is 0.005); ``--stacks-only`` fits
only those; ``--regs`` adds refits with an additive variance regularisation
(``top_refit_reg_covar``) at each floor; ``--factors`` adds refits whose top layer then gets
that many common factors (``top_factors``) at each floor; ``--shrinkages`` adds refits whose
variances are shrunk toward the pooled within-component ones (``top_refit_shrinkage``) at each
floor; ``--no-plain-refit`` leaves out the ``--stacks`` refits without those settings.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json

import numpy as np
import torch
from _common import (
    CODE_VERSION,
    RESULTS,
    best_gaussian_mixture,
    fit_timed,
    holdout,
    load,
    save,
)
from sklearn.metrics import normalized_mutual_info_score, roc_auc_score

import skdcgmm._estimator as estimator_module
from skdcgmm import DeepConvGMM
from skdcgmm._input import positions
from skdcgmm.layers import GMM, Fold, Pool
from skdcgmm.metrics import NDB, clustering_accuracy
from skdcgmm.nn import GMMLayer

K = {"one-class": 10, "leave-out": 25, "clustering": 10, "samples": 25}
SAMPLE_TRAIN, N_SAMPLES = 20_000, 2_000
#: Images whose layer inputs give the data-based initial means; fine-tuning epochs, batch size
#: and rate (a multiple of the fit's final rate: 5 is its initial one).
N_INIT_IMAGES, FINETUNE_EPOCHS, FINETUNE_BATCH, FINETUNE_RATE = 1_000, 5, 256, 5.0
#: The refit floor of the ``--variants`` (C's measured floor, the default when they ran).
DEFAULT_FLOOR = 0.01
#: Layer stacks measured with ``--stacks`` (fitted with every other option at its default):
#: presets by name, and C with 3x3 patches and average pooling (issue 22: do smaller patches
#: keep the grey-level detail that 8x8 prototypes lose?).
STACKS = {
    "E": "E",
    "C3avg": (Fold(3, 1), GMM(25), Pool(2, mode="avg"), Fold(), GMM(wait=0.1)),
    # C with 49 first-layer components (a scratch screen of Fashion-MNIST clustering ranked it
    # first, at floor 0.005), now the default
    "C49": "C49",
}


def refitted(
    model: DeepConvGMM,
    X,
    floor: float | None,
    reg: float = 0.0,
    factors: int | None = None,
    shrinkage: float = 0.0,
) -> DeepConvGMM:
    """A copy of ``model`` with its top layer refitted by EM (variance floor ``floor``, additive
    regularisation ``reg``, variance shrinkage ``shrinkage``), then given ``factors`` common
    factors (``top_factors``)."""
    model = copy.deepcopy(model).set_params(
        top_refit="em", top_refit_min_variance=floor, top_refit_reg_covar=reg,
        top_refit_shrinkage=shrinkage, top_factors=factors,
    )  # fmt: skip
    shape = positions(model.image_shape_)
    model.em_n_iter_ = model._refit_top(model.module_, _data(model, X), shape, model.image_shape_)
    return model


def _data(model: DeepConvGMM, X) -> torch.Tensor:
    shape = positions(model.image_shape_)
    return torch.as_tensor(X, dtype=torch.float32, device=model.device_).view(len(X), *shape)


@torch.no_grad()
def init_means_from_data(stack, x: torch.Tensor, generator: torch.Generator) -> None:
    """Every GMM layer's means from randomly chosen inputs of that layer (one batch ``x``,
    forwarded through the layers below, which are initialised first)."""
    for layer in stack.layers:
        if isinstance(layer, GMMLayer):
            n, n_pos, dim = x.shape
            k = layer.n_components
            if layer.shared:  # any vector of any image and position
                pick = torch.randperm(n * n_pos, generator=generator)[:k]
                layer.means.copy_(x.reshape(-1, dim)[pick].expand_as(layer.means))
            else:  # per position: vectors of random images at that position
                rows = torch.randint(n, (n_pos, k), generator=generator)
                layer.means.copy_(x[rows, torch.arange(n_pos)[:, None]])
        x = layer(x)


@contextlib.contextmanager
def data_initialised(X, seed: int):
    """New stacks built by ``DeepConvGMM.fit`` start from :func:`init_means_from_data`."""
    rng = np.random.RandomState(seed)
    images = X[rng.choice(len(X), min(N_INIT_IMAGES, len(X)), replace=False)]
    build = estimator_module.build_stack

    def build_from_data(specs, image_shape, n_components, generator):
        stack = build(specs, image_shape, n_components, generator)
        x = torch.as_tensor(images, dtype=torch.float32).view(len(images), *positions(image_shape))
        init_means_from_data(stack, x, generator)
        return stack

    estimator_module.build_stack = build_from_data
    try:
        yield
    finally:
        estimator_module.build_stack = build


def exact_finetuned(model: DeepConvGMM, X, seed: int) -> DeepConvGMM:
    """A copy of ``model`` after ``FINETUNE_EPOCHS`` epochs of SGD on every GMM layer's exact
    log-likelihood, each on its detached input."""
    model = copy.deepcopy(model)
    stack, data = model.module_, _data(model, X)
    rate = float(np.min(model.history_["learning_rate"][-1])) * FINETUNE_RATE
    gmms = [layer for layer in stack.layers if isinstance(layer, GMMLayer)]
    optimizers = [torch.optim.SGD(layer.param_groups(rate)) for layer in gmms]
    generator = torch.Generator().manual_seed(seed)
    for _ in range(FINETUNE_EPOCHS):
        for rows in torch.randperm(len(data), generator=generator).split(FINETUNE_BATCH):
            x, loss = data[rows], 0.0
            for layer in stack.layers:
                x = x.detach()
                if isinstance(layer, GMMLayer):
                    loss = loss - layer.log_likelihood(x).mean()
                x = layer(x)
            for optimizer in optimizers:
                optimizer.zero_grad()
            loss.backward()
            for optimizer, layer in zip(optimizers, gmms):
                optimizer.step()
                layer.project_()
    return model


def refits(
    model: DeepConvGMM,
    X,
    floors,
    regs=(),
    prefix: str = "",
    factors=(),
    shrinkages=(),
    plain: bool = True,
) -> list[tuple[str, DeepConvGMM]]:
    """``model`` refitted at each floor, without (unless not ``plain``) and then with each
    additive regularisation of ``regs``, then with each number of common factors of
    ``factors``, then with each variance shrinkage of ``shrinkages``, labelled
    ``prefix + "top_refit=em[, floor f][, reg r][, factors d][, shrinkage s]"``."""
    settings = [(f, {}) for f in floors] if plain else []
    settings += [(f, {"reg": r}) for f in floors for r in regs]
    settings += [(f, {"factors": d}) for f in floors for d in factors]
    settings += [(f, {"shrinkage": s}) for f in floors for s in shrinkages]
    return [
        (
            prefix + "top_refit=em" + ("" if f is None else f", floor {f}")
            + "".join(f", {name} {value}" for name, value in extra.items() if value),
            refitted(model, X, f, **extra),
        )
        for f, extra in settings
    ]  # fmt: skip


def models(
    k: int,
    X,
    seed: int,
    floors,
    variants=(),
    stacks=(),
    stacks_only=False,
    regs=(),
    factors=(),
    shrinkages=(),
    plain=True,
) -> list[tuple[str, object]]:
    out = []
    for name in stacks:
        sgd = fit_timed(DeepConvGMM(k, layers=STACKS[name], top_refit=None, random_state=seed), X)
        out += refits(
            sgd[0], X, floors, regs, prefix=f"layers={name}, ", factors=factors,
            shrinkages=shrinkages, plain=plain,
        )  # fmt: skip
    if stacks_only:
        return out
    X_fit, X_val = holdout(X, seed=seed)
    em, _, reg = best_gaussian_mixture(k, X_fit, X_val, seed)
    flat = fit_timed(DeepConvGMM(k, layers="flat", random_state=seed), X)[0]
    deep = fit_timed(DeepConvGMM(k, layers="C", top_refit=None, random_state=seed), X)[0]
    out += [(f"GaussianMixture(reg_covar={reg})", em), ("DeepConvGMM(flat)", flat)]
    out.append(("DeepConvGMM (paper: SGD only)", deep))
    out += refits(deep, X, floors, regs)
    if "data-init" in variants:
        with data_initialised(X, seed):
            initialised = fit_timed(
                DeepConvGMM(k, layers="C", top_refit=None, random_state=seed), X
            )[0]
        label = f"data init + top_refit=em, floor {DEFAULT_FLOOR}"
        out.append((label, refitted(initialised, X, DEFAULT_FLOOR)))
    if "exact-ft" in variants:
        tuned = exact_finetuned(deep, X, seed)
        label = f"exact-LL fine-tune + top_refit=em, floor {DEFAULT_FLOOR}"
        out.append((label, refitted(tuned, X, DEFAULT_FLOOR)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["fashion-mnist", "mnist"])
    parser.add_argument("--protocols", nargs="+", default=["one-class", "clustering"])
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--floors",
        type=lambda v: None if v == "layer" else float(v),
        nargs="+",
        default=[None, 0.01, 0.002],
        help="variance floors of the EM refit ('layer': the top layer's own)",
    )
    parser.add_argument(
        "--regs",
        type=float,
        nargs="*",
        default=[],
        help="additive variance regularisations (top_refit_reg_covar), each also refitted "
        "at every floor",
    )
    parser.add_argument(
        "--factors",
        type=int,
        nargs="*",
        default=[],
        help="numbers of common factors of the top layer (top_factors), each also refitted "
        "at every floor",
    )
    parser.add_argument(
        "--shrinkages",
        type=float,
        nargs="*",
        default=[],
        help="shrinkages of the refitted variances toward the pooled ones "
        "(top_refit_shrinkage), each also refitted at every floor",
    )
    parser.add_argument(
        "--variants",
        nargs="*",
        choices=["data-init", "exact-ft"],
        default=[],
        help="extensions tried and not kept, each with the default EM refit (see above)",
    )
    parser.add_argument("--stacks", nargs="*", choices=list(STACKS), default=[],
                        help="other layer stacks, refitted at each of --floors")  # fmt: skip
    parser.add_argument("--stacks-only", action="store_true",
                        help="fit only the --stacks models (no baselines)")  # fmt: skip
    parser.add_argument("--no-plain-refit", action="store_true",
                        help="refit the --stacks models only with the --regs, --factors and "
                        "--shrinkages settings, not also plainly at each floor")  # fmt: skip
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the saved rows that this run does not measure again",
    )
    args = parser.parse_args()

    rows = []
    saved = RESULTS / "extensions.json"
    kept = json.loads(saved.read_text())["rows"] if args.keep and saved.exists() else []
    for name in args.datasets:
        X, y, Xt, yt = load(name)
        for protocol in args.protocols:
            tasks = [None] if protocol in ("clustering", "samples") else args.classes
            bins = None
            if protocol == "samples":
                bins = [NDB(100, random_state=s).fit(X[:SAMPLE_TRAIN]) for s in (0, 1, 2)]
            for seed in args.seeds:
                for cls in tasks:
                    if protocol == "clustering":
                        train = X
                    elif protocol == "samples":
                        train = X[:SAMPLE_TRAIN]
                    else:
                        train = X[y == cls] if protocol == "one-class" else X[y != cls]
                        inliers = yt == cls if protocol == "one-class" else yt != cls
                    for label, model in models(
                        K[protocol], train, seed, args.floors, args.variants, args.stacks,
                        args.stacks_only, args.regs, args.factors, args.shrinkages,
                        not args.no_plain_refit,
                    ):  # fmt: skip
                        row = {"dataset": name, "protocol": protocol, "seed": seed,
                               "class": cls, "model": label}  # fmt: skip
                        if protocol == "clustering":
                            pred = model.predict(Xt)
                            row["accuracy"] = clustering_accuracy(yt, pred)
                            row["nmi"] = normalized_mutual_info_score(yt, pred)
                            figure = f"acc {row['accuracy']:.4f} NMI {row['nmi']:.4f}"
                        elif protocol == "samples":
                            drawn = np.clip(model.sample(N_SAMPLES)[0], 0.0, 1.0)
                            row["ndb_k"] = float(np.mean([b.score(drawn).ndb_k for b in bins]))
                            figure = f"NDB/K {row['ndb_k']:.3f}"
                        else:
                            row["roc_auc"] = float(roc_auc_score(inliers, model.score_samples(Xt)))
                            figure = f"AUC {row['roc_auc']:.4f}"
                        row["em_n_iter"] = getattr(model, "em_n_iter_", None)
                        row["commit"] = CODE_VERSION  # the code that measured the row
                        print(f"{name} {protocol} seed {seed} class {cls} {label}: {figure}",
                              flush=True)  # fmt: skip
                        rows.append(row)
            # Saved after every protocol, so that a long run cut short keeps what it measured.
            measured = {_key(row) for row in rows}
            every = [row for row in kept if _key(row) not in measured] + rows
            summary = summarise(every)
            seeds = sorted({row["seed"] for row in every})
            save("extensions", {"seeds": seeds, "rows": every, "summary": summary})
    for entry in summary:
        print(entry, flush=True)


def _key(row: dict) -> tuple:
    return row["dataset"], row["protocol"], row["seed"], row["class"], row["model"]


def summarise(rows: list[dict]) -> list[dict]:
    """Per (data set, protocol, model): the mean over classes of every seed, then mean and
    standard deviation over the seeds."""
    groups: dict[tuple, dict[int, list[dict]]] = {}
    for row in rows:
        key = (row["dataset"], row["protocol"], row["model"])
        groups.setdefault(key, {}).setdefault(row["seed"], []).append(row)
    out = []
    for (dataset, protocol, model), by_seed in sorted(groups.items(), key=str):
        seeds = sorted(by_seed)
        entry = {"dataset": dataset, "protocol": protocol, "model": model, "seeds": seeds}
        for metric in ("roc_auc", "accuracy", "nmi", "ndb_k"):
            if metric not in by_seed[seeds[0]][0]:
                continue
            per_seed = [float(np.mean([r[metric] for r in by_seed[seed]])) for seed in seeds]
            entry[f"{metric}_mean"] = float(np.mean(per_seed))
            entry[f"{metric}_std"] = float(np.std(per_seed))
            entry[f"{metric}_per_seed"] = per_seed
        out.append(entry)
    return out


if __name__ == "__main__":
    main()
