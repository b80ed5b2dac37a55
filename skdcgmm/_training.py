"""The minibatch SGD loop over a :class:`~skdcgmm.nn.DCGMMStack`.

Epochs over index batches shuffled with the fit's own generator, data resident on the device,
one SGD optimiser and one annealing schedule per GMM layer, loss bookkeeping and convergence
in the vocabulary of scikit-learn's MLP (``loss_curve_``, ``n_iter_``, ``tol``,
``n_iter_no_change``). The loop knows no GMM formulas: layers give losses, schedules give rates.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from .nn import DCGMMStack, PlateauSchedule, TimeSchedule

__all__ = ["TrainingConfig", "TrainingResult", "train"]


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of one call of :func:`train` (validated by the estimator)."""

    max_iter: int
    batch_size: int
    learning_rate: float
    learning_rate_final: float
    annealing: str = "time"  # "time" or "plateau"
    sigma_min: float = 0.01
    anneal_stop: float = 0.5  # fraction of the planned steps by which a time schedule ends
    plateau_window: int = 100
    tol: float = 1e-4
    n_iter_no_change: int = 5
    verbose: int = 0
    waits: tuple[float, ...] = ()  # per GMM layer: fraction of the planned steps spent frozen


@dataclass
class TrainingResult:
    loss_curve: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False


def _make_schedule(layer, config: TrainingConfig, n_steps: int):
    sigma0 = float(layer.sigma)
    if config.annealing == "time":
        return TimeSchedule(
            sigma0,
            config.sigma_min,
            config.learning_rate,
            config.learning_rate_final,
            n_steps,
            stop=config.anneal_stop,
        )
    return PlateauSchedule(
        sigma0,
        config.sigma_min,
        config.learning_rate,
        config.learning_rate_final,
        window=config.plateau_window,
    )


def _set_learning_rate(optimizer: torch.optim.Optimizer, learning_rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = learning_rate * group["factor"]


def train(
    stack: DCGMMStack, X: Tensor, config: TrainingConfig, generator: torch.Generator
) -> TrainingResult:
    """Fit ``stack`` on ``X`` ``(N, L0, D0)`` (already on the stack's device) in place.

    ``loss_curve`` holds one value per epoch: the negated annealed log-likelihood summed over GMM
    layers, averaged over the epoch's samples (lower is better). Raises ``ValueError`` as soon
    as an epoch's loss is not finite, so training never returns a model with NaN parameters.
    """
    n_samples = X.shape[0]
    batch_size = min(config.batch_size, n_samples)
    n_batches = math.ceil(n_samples / batch_size)
    layers = stack.gmm_layers
    n_steps = config.max_iter * n_batches
    waits = config.waits or (0.0,) * len(layers)
    if len(waits) != len(layers):
        raise ValueError(f"Got {len(waits)} waits for {len(layers)} GMM layers.")
    first_steps = [int(w * n_steps) for w in waits]  # a layer learns from this step on
    schedules = [
        _make_schedule(layer, config, n_steps - first) for layer, first in zip(layers, first_steps)
    ]
    optimizers = [
        torch.optim.SGD(layer.param_groups(config.learning_rate), lr=config.learning_rate)
        for layer in layers
    ]
    result = TrainingResult()
    best_loss, no_improvement = math.inf, 0
    stack.train()
    step = 0
    low, high = float(X.min()), float(X.max())
    for epoch in range(config.max_iter):
        tic = time.perf_counter()
        # Shuffle on the CPU generator (same order on every device), then move the indices once.
        order = torch.randperm(n_samples, generator=generator).to(X.device)
        epoch_sum = torch.zeros((), device=X.device)
        for start in range(0, n_samples, batch_size):
            batch = X[order[start : start + batch_size]]  # (B, L0, D0)
            losses = stack.training_losses(batch)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            active = [step >= first for first in first_steps]
            objective = sum(loss for loss, on in zip(losses, active) if on)
            if torch.is_tensor(objective):  # at least one layer is learning
                (-objective).backward()
            step += 1
            for layer, optimizer, schedule, loss, on in zip(
                layers, optimizers, schedules, losses, active
            ):
                if not on:
                    continue
                optimizer.step()
                layer.project_()
                sigma, learning_rate = schedule.step(loss.detach())
                layer.set_sigma(sigma)
                _set_learning_rate(optimizer, learning_rate)
            epoch_sum += torch.stack(losses).detach().sum() * batch.shape[0]
        epoch_loss = -float(epoch_sum) / n_samples
        if not math.isfinite(epoch_loss):
            raise ValueError(
                f"Training diverged: the loss became {epoch_loss} in epoch {epoch + 1}. "
                f"Lower learning_rate (got {config.learning_rate}) or rescale the data to [0, 1]."
            )
        result.loss_curve.append(epoch_loss)
        result.n_iter = epoch + 1
        if config.verbose:
            speed = n_samples / max(time.perf_counter() - tic, 1e-12)
            sigmas = ", ".join(f"{s.sigma:.3g}" for s in schedules)
            print(
                f"Epoch {epoch + 1}/{config.max_iter}: loss={epoch_loss:.6g}, sigma=[{sigmas}], "
                f"lr={schedules[-1].learning_rate:.3g}, {speed:,.0f} images/s",
                flush=True,
            )
        # Convergence is judged only once annealing has ended: before that the objective moves.
        if all(s.finished for s in schedules):
            if epoch_loss > best_loss - config.tol * abs(best_loss):
                no_improvement += 1
            else:
                no_improvement = 0
            best_loss = min(best_loss, epoch_loss)
            if no_improvement >= config.n_iter_no_change:
                result.converged = True
                if config.verbose:
                    print(
                        f"Converged: training loss did not improve more than tol={config.tol} "
                        f"(relative) for {config.n_iter_no_change} consecutive epochs.",
                        flush=True,
                    )
                break
    # Overshooting steps can leave means far outside the data with a finite loss: refuse to
    # return such a model (transient excursions that training recovers from are fine).
    diverged = stack.diverged_layers(low, high)
    if diverged:
        raise ValueError(
            f"Training diverged: the means of layer(s) {diverged} ended far outside the range "
            f"of their inputs. Lower learning_rate (got {config.learning_rate}) or the GMM "
            "specs' lr_means."
        )
    stack.eval()
    stack.zero_grad(set_to_none=True)  # the fitted model carries no stale gradients
    if not result.converged:
        warnings.warn(
            f"DeepConvGMM: maximum iterations ({config.max_iter}) reached and the optimisation "
            "has not converged yet.",
            ConvergenceWarning,
            stacklevel=4,  # train <- DeepConvGMM._fit <- fit <- the caller
        )
    return result
