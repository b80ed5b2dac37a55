"""Expectation-maximisation refit of one GMM layer on fixed inputs (an extension of the method).

SGD on the annealed max-component loss leaves a layer at a hard-assignment solution: its
variances and weights are those of the components' winning vectors, not the maximum-likelihood
ones of the soft mixture. With the layers below fixed, the layer's inputs are fixed data, and
closed-form EM steps (soft responsibilities, then weighted means, variances and weights) raise
its exact log-likelihood monotonically from there. The SGD solution is the start, so EM needs no
k-means initialisation; variances stay within the layer's bounds (a lower floor may be asked
for: SGD needs its floor for stable steps, maximum likelihood does not).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from .functional import log_normaliser
from .gmm import GMMLayer

__all__ = ["EMResult", "em_refit_"]

#: Components whose total responsibility is below this keep their parameters (no data to refit).
_EMPTY = 1e-8


@dataclasses.dataclass(frozen=True)
class EMResult:
    """Outcome of :func:`em_refit_`.

    Attributes
    ----------
    n_iter : int
        EM steps taken.
    log_likelihood : list of float
        Mean exact log-likelihood per input vector before every step (the value the step
        starts from), then after the last one.
    converged : bool
        Whether the last step changed the mean log-likelihood by less than the tolerance.
    """

    n_iter: int
    log_likelihood: list[float]
    converged: bool


def em_refit_(
    layer: GMMLayer,
    chunks: Callable[[], Iterable[Tensor]],
    *,
    max_iter: int = 100,
    tol: float = 1e-4,
    min_variance: float | None = None,
    reg_variance: float = 0.0,
    shrinkage: float = 0.0,
) -> EMResult:
    """Refit ``layer``'s means, precisions and mixing weights by EM, in place.

    Every step makes one pass over the inputs: the E-step's responsibilities and the
    sufficient statistics are accumulated chunk by chunk in float64, so the inputs need not fit
    in one tensor (the M-step then sets every parameter in closed form). Shared layers pool the
    vectors of all positions; per-position layers refit every position's mixture on its own.

    Parameters
    ----------
    layer : GMMLayer
        The layer to refit; its current parameters are EM's start.
    chunks : callable
        Returns a fresh iterable of input chunks ``(n, L, D)`` (any dtype, the layer's device)
        at every call, one call per step.
    max_iter : int, default=100
        Most EM steps.
    tol : float, default=1e-4
        Stop when a step changes the mean log-likelihood per vector by less than
        ``tol * |log-likelihood|`` (relative, as the estimator's ``tol``: the log-likelihoods
        of high-dimensional layer inputs are in the thousands). Without ``reg_variance`` every
        step raises it; with it, a step may also lower it (the regularised fit is not the
        maximum-likelihood one), most of all the first one from an unregularised start.
    min_variance : float or None, default=None
        Lower bound of the refitted variances; ``None`` keeps the layer's own
        (``1 / precision_max**2``). The layer's bounds themselves are not changed, so later SGD
        steps clamp to them again.
    reg_variance : float, default=0.0
        Added to every refitted variance before the bounds apply (scikit-learn's
        ``reg_covar``): a component's variance is its data's variance plus ``reg_variance``,
        so narrow components are widened smoothly rather than clipped at the floor.
    shrinkage : float, default=0.0
        In ``[0, 1]``: every component's variances become ``(1 - shrinkage) var_k +
        shrinkage * var_pooled``, ``var_pooled`` the mixture's within-component variances
        (``sum_k pi_k var_k``, per position for per-position layers), before ``reg_variance``
        and the bounds apply. ``0`` is plain EM, ``1`` EM of a mixture whose components share
        one diagonal covariance (every step then raises that model's log-likelihood);
        in between, the variances are a compromise and a step may lower the log-likelihood.

    Returns
    -------
    EMResult
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}.")
    var_min = layer.precision_max**-2 if min_variance is None else float(min_variance)
    if not 0 < var_min < layer.precision_min**-2:
        raise ValueError(
            f"min_variance must lie in (0, max_variance={layer.precision_min**-2:g}), "
            f"got {min_variance!r}."
        )
    if not (math.isfinite(reg_variance) and reg_variance >= 0):
        raise ValueError(f"reg_variance must be finite and >= 0, got {reg_variance!r}.")
    if not 0 <= shrinkage <= 1:
        raise ValueError(f"shrinkage must lie in [0, 1], got {shrinkage!r}.")
    history: list[float] = []
    converged = False
    with torch.no_grad():
        work = copy.deepcopy(layer).double()  # the parameters in float64 while EM runs
        for step in range(max_iter + 1):
            count, total, first, second, log_lik = _statistics(work, chunks())
            history.append(log_lik / count)
            if step > 0 and abs(history[-1] - history[-2]) < tol * abs(history[-1]):
                converged = True
                break
            if step == max_iter:
                break
            _maximise(work, total, first, second, var_min, reg_variance, shrinkage)
        for name in ("means", "precisions", "logits"):
            getattr(layer, name).copy_(getattr(work, name))
    return EMResult(n_iter=len(history) - 1, log_likelihood=history, converged=converged)


def _maximise(
    layer: GMMLayer,
    total: Tensor,
    first: Tensor,
    second: Tensor,
    var_min: float,
    reg: float,
    shrinkage: float = 0.0,
) -> None:
    """The M-step: closed-form parameters from the statistics, variances shrunk toward the
    pooled ones by ``shrinkage``, plus ``reg``, in ``[var_min, max_variance]``; components
    without responsibility keep their means and variances."""
    keep = (total > _EMPTY)[..., None]  # (P, K, 1)
    weight = total.clamp_min(_EMPTY)[..., None]
    means = first / weight
    var_max = layer.precision_min**-2
    variances = second / weight - means * means
    if shrinkage > 0:  # sum_k pi_k var_k: the mean squared distance to the own component
        own = variances.clamp_min(0.0)
        pooled = (total[..., None] * own).sum(-2, keepdim=True) / total.sum(-1)[..., None, None]
        variances = (1 - shrinkage) * own + shrinkage * pooled
    variances = (variances + reg).clamp(var_min, var_max)
    layer.means.copy_(torch.where(keep, means, layer.means))
    layer.precisions.copy_(torch.where(keep, variances.rsqrt(), layer.precisions))
    shares = total / total.sum(dim=-1, keepdim=True)
    layer.logits.copy_(torch.log(shares.clamp_min(_EMPTY)))


def _statistics(layer: GMMLayer, chunks: Iterable[Tensor]):
    """One E-step pass: ``(count, sum r, sum r x, sum r x^2, sum log p)`` over the chunks.

    ``sum r`` is ``(P, K)``, the moments ``(P, K, D)``; shared layers sum over positions too.
    """
    count, log_lik = 0, 0.0
    total = first = second = None
    constant = log_normaliser(layer.input_shape[2])
    for x in chunks:
        x = x.to(torch.float64)
        scores = layer.log_scores(x)  # (n, L, K)
        norm = torch.logsumexp(scores, dim=-1, keepdim=True)
        resp = (scores - norm).exp()
        log_lik += float(norm.sum()) + constant * norm.numel()
        count += norm.numel()
        if layer.shared:
            r, v = resp.reshape(1, -1, resp.shape[-1]), x.reshape(1, -1, x.shape[-1])
        else:
            r, v = resp.transpose(0, 1), x.transpose(0, 1)  # (L, n, K), (L, n, D)
        parts = (r.sum(dim=1), r.transpose(1, 2) @ v, r.transpose(1, 2) @ (v * v))
        if total is None:
            total, first, second = parts
        else:
            total, first, second = total + parts[0], first + parts[1], second + parts[2]
    if count == 0:
        raise ValueError("em_refit_ got no input vectors.")
    if not math.isfinite(log_lik):
        raise ValueError("em_refit_: the log-likelihood of the inputs is not finite.")
    return count, total, first, second, log_lik
