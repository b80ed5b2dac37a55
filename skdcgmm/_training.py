"""The minibatch SGD loop over a :class:`~skdcgmm.nn.DCGMMStack`.

Epochs over index batches shuffled with the fit's own generator, one SGD optimiser and one
annealing schedule per GMM layer, loss bookkeeping, history, early stopping and convergence in
the vocabulary of scikit-learn's MLP (``loss_curve_``, ``n_iter_``, ``tol``, ``n_iter_no_change``,
``early_stopping``, ``validation_fraction``). The loop knows no GMM formulas: layers give losses,
schedules give rates.

Data is either a tensor resident on the stack's device or any numpy array (e.g. a
``np.memmap``) of which only the current batch is copied to the device. What must survive from
one call to the next (``partial_fit``) lives in :class:`TrainingState`: the schedules and the
training clock, measured in epochs (passes).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from ._compiled import CompiledLosses
from ._utils import caller_stacklevel, retain_freed_memory
from .nn import DCGMMStack, PlateauSchedule, TimeSchedule
from .nn.em import EMResult, em_refit_
from .nn.factor import fit_factor_layer

__all__ = [
    "TrainingConfig",
    "TrainingResult",
    "TrainingState",
    "new_state",
    "planned_epochs",
    "refit_top",
    "train",
]

#: Rows per forward pass when the validation objective is evaluated.
_VALIDATION_CHUNK = 1024
#: Bytes of top-layer inputs an EM refit keeps in memory (float32); above, every EM step
#: recomputes them through the layers below, chunk by chunk.
_EM_CACHE_BYTES = 2 * 2**30
#: Bytes of one EM chunk's float64 inputs (and as many of its other temporaries).
_EM_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of one call of :func:`train` (validated by the estimator)."""

    max_iter: int
    batch_size: int
    learning_rate: float
    learning_rate_final: float
    annealing: str = "time"  # "time" or "plateau"
    sigma_min: float = 0.01
    anneal_stop: float = 0.5  # fraction of the planned epochs by which a time schedule ends
    #: Epochs over which a time schedule anneals when fewer than ``anneal_stop * max_iter``:
    #: training is then planned over ``anneal_epochs / anneal_stop`` epochs (waits included)
    #: and runs on after annealing until it converges or reaches ``max_iter``.
    anneal_epochs: float | None = None
    #: Whether ``max_iter`` ending training unconverged gives a ``ConvergenceWarning``.
    warn_unconverged: bool = True
    plateau_window: int = 100
    tol: float = 1e-4
    n_iter_no_change: int = 5
    early_stopping: bool = False
    validation_fraction: float = 0.1
    verbose: int = 0
    waits: tuple[float, ...] = ()  # per GMM layer: fraction of the planned epochs spent frozen
    compile: bool = False  # training losses through torch.compile (eager where unavailable)


@dataclass
class TrainingState:
    """What carries over between calls of :func:`train` on the same stack.

    ``epochs`` is the training clock (passes completed, fractional inside a pass); a GMM layer
    learns from ``starts[i]`` epochs on, and its time schedule runs on its own clock
    ``epochs - starts[i]``.
    """

    schedules: list
    starts: list[float]
    epochs: float = 0.0


@dataclass
class TrainingResult:
    loss_curve: list[float] = field(default_factory=list)
    history: dict[str, list] = field(default_factory=dict)
    n_iter: int = 0
    converged: bool = False
    interrupted: bool = False
    best_validation_score: float | None = None
    #: The objective (negated loss) of the epoch whose parameters are kept: the last one, or
    #: the best validated one with early stopping.
    lower_bound: float = -math.inf


def planned_epochs(config: TrainingConfig) -> float:
    """Epochs a time schedule is planned over: ``max_iter``, or less with ``anneal_epochs``."""
    if config.anneal_epochs is None:
        return float(config.max_iter)
    return min(float(config.max_iter), config.anneal_epochs / config.anneal_stop)


def new_state(stack: DCGMMStack, config: TrainingConfig) -> TrainingState:
    """Fresh schedules from the layers' current annealing radius, planned over
    :func:`planned_epochs`; every GMM layer waits its fraction of that plan."""
    layers = stack.gmm_layers
    waits = config.waits or (0.0,) * len(layers)
    if len(waits) != len(layers):
        raise ValueError(f"Got {len(waits)} waits for {len(layers)} GMM layers.")
    planned = planned_epochs(config)
    starts = [w * planned for w in waits]
    schedules = []
    for layer, start in zip(layers, starts):
        sigma0 = float(layer.sigma)
        lr0, lr_min = config.learning_rate, config.learning_rate_final
        if config.annealing == "time":
            horizon = max(planned - start, 1e-9)
            schedules.append(
                TimeSchedule(
                    sigma0, config.sigma_min, lr0, lr_min, horizon, stop=config.anneal_stop
                )
            )
        else:
            schedules.append(
                PlateauSchedule(sigma0, config.sigma_min, lr0, lr_min, window=config.plateau_window)
            )
    return TrainingState(schedules, starts)


class _SGD:
    """Plain SGD (no momentum, no weight decay) over parameter groups with an ``"lr"`` each.

    The update of ``torch.optim.SGD`` at its defaults, without its first-use import of
    ``torch._dynamo``, which costs every new process about 2 s (as long as fitting the flat
    model to MNIST for two epochs).
    """

    def __init__(self, param_groups: list[dict]) -> None:
        self.param_groups = param_groups

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])


def _set_learning_rate(optimizer: _SGD, learning_rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = learning_rate * group["factor"]


def _fetch(data, index: Tensor, shape: tuple[int, int], device: torch.device) -> Tensor:
    """Rows ``index`` of ``data`` as a float32 ``(B, L0, D0)`` tensor on ``device``."""
    if torch.is_tensor(data):
        return data[index.to(data.device)]
    rows = np.sort(index.numpy())  # sorted: sequential reads from a memory map
    batch = torch.from_numpy(np.asarray(data[rows], dtype=np.float32))
    return batch.view(len(rows), *shape).to(device, non_blocking=True)


def _process_group():
    """``(torch.distributed, rank, world_size)`` inside an initialised process group, else None."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist, dist.get_rank(), dist.get_world_size()
    return None, 0, 1


def _synchronise(dist, stack: DCGMMStack, generator: torch.Generator, n_total: int) -> None:
    """Start every rank from rank 0's parameters and shuffling stream, on the same data size.

    Tensor collectives only, on the stack's device (what every backend supports).
    """
    device = stack.top.means.device
    extremes = torch.tensor([n_total, -n_total], dtype=torch.float64, device=device)
    dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
    largest, smallest = int(extremes[0]), -int(extremes[1])
    if largest != smallest:
        raise ValueError(
            "Data-parallel training needs the same data on every rank; got between "
            f"{smallest} and {largest} samples."
        )
    with torch.no_grad():
        for tensor in stack.state_dict().values():
            dist.broadcast(tensor, src=0)
    state = generator.get_state().to(device)
    dist.broadcast(state, src=0)
    generator.set_state(state.cpu())


def _objective(stack: DCGMMStack, data, index: Tensor, shape, device) -> float:
    """Mean over ``index`` rows of the summed annealed log-likelihoods (higher is better)."""
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(index), _VALIDATION_CHUNK):
            batch = _fetch(data, index[start : start + _VALIDATION_CHUNK], shape, device)
            total += float(torch.stack(stack.training_losses(batch)).sum()) * batch.shape[0]
    return total / len(index)


class _Progress:
    """Per-epoch progress: a tqdm bar (``verbose=1`` with tqdm installed) or plain lines."""

    def __init__(self, verbose: int) -> None:
        self.verbose, self.bar = verbose, None
        self._tqdm = None
        if verbose == 1:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
            else:
                self._tqdm = tqdm

    def start(self, epoch: int, n_epochs: int, n_samples: int) -> None:
        if self._tqdm is not None:
            self.bar = self._tqdm(
                total=n_samples, desc=f"Epoch {epoch}/{n_epochs}", unit="img", leave=True
            )

    def update(self, n: int, loss: Tensor | None) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if loss is not None:  # read back rarely: a float() syncs the device
                self.bar.set_postfix(loss=f"{-float(loss):.5g}", refresh=False)

    def end(self, line: str, postfix: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.close()
            self.bar = None
        elif self.verbose:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def train(
    stack: DCGMMStack,
    data,
    config: TrainingConfig,
    generator: torch.Generator,
    state: TrainingState | None = None,
    *,
    shape: tuple[int, int] | None = None,
    single_pass: bool = False,
    warn: bool = True,
) -> TrainingResult:
    """Fit ``stack`` on ``data`` in place; return the loss curve and per-epoch history.

    Parameters
    ----------
    stack : DCGMMStack
        The model, on its device.
    data : Tensor of shape (N, L0, D0) or ndarray of shape (N, L0 * D0)
        A tensor on the stack's device, or a numpy array (memory map) streamed batch by batch.
    config : TrainingConfig
    generator : torch.Generator
        CPU generator for shuffling and the validation split.
    state : TrainingState or None
        Schedules and clock to continue from (``partial_fit``); ``None`` starts afresh.
    shape : (L0, D0), optional
        Image layout of numpy rows; taken from the stack when omitted.
    single_pass : bool, default=False
        One pass, no convergence test, no early stopping, no ``ConvergenceWarning``
        (``partial_fit``).
    warn : bool, default=True
        Give a ``ConvergenceWarning`` when ``max_iter`` epochs end unconverged (and
        ``config.warn_unconverged``).

    ``loss_curve`` holds one value per epoch: the negated annealed log-likelihood summed over GMM
    layers, averaged over the epoch's samples (lower is better). Raises ``ValueError`` as soon
    as an epoch's loss is not finite, so training never returns a model with NaN parameters.
    A ``KeyboardInterrupt`` ends training after the current step with a warning; the model
    keeps the parameters reached (``result.interrupted``).
    """
    run = _Run.start(stack, data, config, generator, state, shape, single_pass)
    result = TrainingResult(history={key: [] for key in _HISTORY_KEYS})
    stopper = _Convergence(config.tol, config.n_iter_no_change)
    n_epochs = 1 if single_pass else config.max_iter
    stack.train()
    try:
        for epoch in range(n_epochs):
            tic = time.perf_counter()
            run.progress.start(epoch + 1, n_epochs, run.n_samples)
            layer_losses = run.epoch()
            epoch_loss = sum(layer_losses)
            _check_finite(epoch_loss, epoch, config)
            annealed = all(s.finished for s in run.state.schedules)
            score = run.validate(annealed, epoch)
            speed = run.n_samples / max(time.perf_counter() - tic, 1e-12)
            _record(result, epoch_loss, layer_losses, run.state, speed, score)
            run.report(epoch, n_epochs, epoch_loss, speed, score)
            if single_pass or not annealed:
                continue  # convergence is judged only once annealing has ended
            # Early stopping watches the validation score, otherwise the training loss.
            if stopper.update(-score if run.n_val else epoch_loss):
                result.converged = True
                if config.verbose:
                    what = "validation score" if run.n_val else "training loss"
                    print(
                        f"Converged: {what} did not improve more than tol={config.tol} "
                        f"(relative) for {config.n_iter_no_change} consecutive epochs.",
                        flush=True,
                    )
                break
    except KeyboardInterrupt:
        result.interrupted = True
        for layer in run.layers:  # a step may have been cut between the update and the projection
            layer.project_()
        warnings.warn(
            f"Training interrupted by the user after {result.n_iter} complete epoch(s); the "
            "model keeps the parameters reached so far.",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )
    finally:
        run.progress.close()
        stack.eval()
        stack.zero_grad(set_to_none=True)  # the fitted model carries no stale gradients
    run.finish(result)
    if (
        warn
        and config.warn_unconverged
        and not (result.converged or result.interrupted or single_pass)
    ):
        warnings.warn(
            f"DeepConvGMM: maximum iterations ({config.max_iter}) reached and the optimisation "
            "has not converged yet.",
            ConvergenceWarning,
            stacklevel=caller_stacklevel(),
        )
    return result


def refit_top(
    stack: DCGMMStack,
    data,
    *,
    shape: tuple[int, int],
    max_iter: int,
    tol: float,
    min_variance: float | None = None,
    reg_variance: float = 0.0,
    shrinkage: float = 0.0,
    n_factors: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[EMResult, ...]:
    """Refit the top GMM layer by EM on the inputs the fixed layers below give ``data``.

    The inputs are computed once and kept (float32) when they take at most 2 GiB, otherwise
    recomputed at every EM step; ``data`` is the training tensor or numpy array of
    :func:`train`. See :func:`skdcgmm.nn.em.em_refit_`. With ``n_factors``, the refitted
    layer is then replaced by a :class:`~skdcgmm.nn.factor.FactorGMMLayer` fitted from it on
    the same inputs (``min_variance`` is its noise floor, ``generator`` its random source).

    Returns the :class:`EMResult` of every step: the EM refit, then the factor fit if any.
    """
    top, device = stack.top, stack.top.means.device
    n_total = data.shape[0]
    length, dim = top.n_positions, top.input_shape[2]
    rows = max(1, _EM_CHUNK_BYTES // (8 * length * max(dim, top.n_components)))

    def computed(step: int):
        with torch.no_grad():
            for start in range(0, n_total, step):
                index = torch.arange(start, min(start + step, n_total))
                yield stack.top_input(_fetch(data, index, shape, device))

    if len(stack.layers) == 1 and torch.is_tensor(data):
        cache = data  # a flat model's top layer reads the training tensor itself
    elif n_total * length * dim * 4 <= _EM_CACHE_BYTES:
        cache = torch.cat(list(computed(_VALIDATION_CHUNK)))
    else:
        cache = None

    def chunks():
        if cache is None:
            return computed(rows)
        return (cache[i : i + rows] for i in range(0, n_total, rows))

    stack.eval()
    results = (
        em_refit_(
            top, chunks, max_iter=max_iter, tol=tol, min_variance=min_variance,
            reg_variance=reg_variance, shrinkage=shrinkage,
        ),
    )  # fmt: skip
    if n_factors is not None:
        factor, result = fit_factor_layer(
            top, chunks, n_factors, max_iter=max_iter, tol=tol, min_variance=min_variance,
            generator=generator,
        )  # fmt: skip
        stack.layers[-1] = factor.eval()
        results += (result,)
    return results


def _check_finite(epoch_loss: float, epoch: int, config: TrainingConfig) -> None:
    """Refuse a non-finite epoch loss: training never returns a model with NaN parameters."""
    if not math.isfinite(epoch_loss):
        raise ValueError(
            f"Training diverged: the loss became {epoch_loss} in epoch {epoch + 1}. "
            f"Lower learning_rate (got {config.learning_rate}) or rescale the data "
            "to [0, 1]."
        )


class _Convergence:
    """The ``tol`` / ``n_iter_no_change`` rule of scikit-learn's MLP on a loss to minimise."""

    def __init__(self, tol: float, n_iter_no_change: int) -> None:
        self.tol, self.patience = tol, n_iter_no_change
        self.best, self.no_improvement = math.inf, 0

    def update(self, current: float) -> bool:
        """Record one epoch's loss; whether it is ``patience`` epochs without improvement."""
        if current > self.best - self.tol * abs(self.best):
            self.no_improvement += 1
        else:
            self.no_improvement = 0
        self.best = min(self.best, current)
        return self.no_improvement >= self.patience


class _Run:
    """What one call of :func:`train` works with: the data split, optimisers, process group.

    :meth:`epoch` runs one pass of SGD steps, :meth:`validate` the early-stopping objective,
    :meth:`finish` restores the best validated parameters and checks for divergence.
    """

    @classmethod
    def start(cls, stack, data, config, generator, state, shape, single_pass) -> _Run:
        run = cls()
        run.stack, run.data, run.config, run.generator = stack, data, config, generator
        run.device = stack.top.means.device
        if run.device.type == "cpu":
            retain_freed_memory()  # no page faults for every step's temporaries
        if shape is None:
            shape = (stack.input_shape[0] * stack.input_shape[1], stack.input_shape[2])
        run.shape = shape
        run.state = new_state(stack, config) if state is None else state
        run.layers = stack.gmm_layers
        if torch.is_tensor(data):
            run.low, run.high = float(data.min()), float(data.max())
        else:
            run.low, run.high = float(np.min(data)), float(np.max(data))
        run._split(len(data), config.early_stopping and not single_pass)
        run.batch_size = min(config.batch_size, run.n_samples)
        run.n_batches = math.ceil(run.n_samples / run.batch_size)
        run.optimizers = []
        for layer, schedule in zip(run.layers, run.state.schedules):
            optimizer = _SGD(layer.param_groups(config.learning_rate))
            _set_learning_rate(optimizer, schedule.learning_rate)
            run.optimizers.append(optimizer)
        # Data-parallel (torchrun + torch.distributed): every rank holds the same data and model
        # and takes its share of every batch; gradients and losses are summed over the ranks, so
        # every rank takes the same steps as one process on the whole batch would.
        run.dist, run.rank, run.world = _process_group()
        if run.dist is not None:
            _synchronise(run.dist, stack, generator, len(data))
        run.losses = CompiledLosses(stack) if config.compile else stack.training_losses
        run.progress = _Progress(config.verbose if run.rank == 0 else 0)
        run.best_score, run.best_params = -math.inf, None
        return run

    def _split(self, n_total: int, validate: bool) -> None:
        """Validation split (early stopping): a random subset, fixed for the whole fit."""
        self.n_val, self.train_index = 0, torch.arange(n_total)
        if validate:
            fraction = self.config.validation_fraction
            self.n_val = math.ceil(fraction * n_total)
            if not 1 <= self.n_val < n_total:
                raise ValueError(
                    f"validation_fraction={fraction} leaves {self.n_val} of "
                    f"{n_total} samples for validation; need at least one on each side."
                )
            order = torch.randperm(n_total, generator=self.generator)
            self.val_index, self.train_index = order[: self.n_val], order[self.n_val :]
        self.n_samples = len(self.train_index)

    def epoch(self) -> list[float]:
        """One shuffled pass of SGD steps; every GMM layer's mean loss over the pass."""
        state, n_samples, batch_size = self.state, self.n_samples, self.batch_size
        epoch0 = state.epochs
        perm = self.train_index[torch.randperm(n_samples, generator=self.generator)]
        if torch.is_tensor(self.data):  # indices on the data's device once per epoch
            perm = perm.to(self.data.device)
        layer_sums = torch.zeros(len(self.layers), device=self.device)
        update_every = max(1, self.n_batches // 20)
        for b, start in enumerate(range(0, n_samples, batch_size)):
            rows = perm[start : start + batch_size]
            n_rows = len(rows)
            stacked = self._step(rows, at=epoch0 + (b + 1) / self.n_batches)
            layer_sums += stacked * n_rows
            self.progress.update(n_rows, stacked.sum() if b % update_every == 0 else None)
        return [-v / n_samples for v in layer_sums.tolist()]

    def _step(self, rows: Tensor, at: float) -> Tensor:
        """One SGD step of every active GMM layer on ``rows``; the layers' batch losses."""
        state, dist, n_rows = self.state, self.dist, len(rows)
        if dist is not None:
            rows = rows.tensor_split(self.world)[self.rank]
        batch = _fetch(self.data, rows, self.shape, self.device)
        active = [state.epochs >= first for first in state.starts]
        for optimizer in self.optimizers:
            optimizer.zero_grad()
        if len(rows):
            with torch.enable_grad():  # also inside a caller's torch.no_grad() block
                losses = self.losses(batch)
                objective = sum(loss for loss, on in zip(losses, active) if on)
                if torch.is_tensor(objective):  # at least one layer is learning
                    (-objective * (len(rows) / n_rows)).backward()
            stacked = torch.stack(losses).detach()
        else:  # a last batch smaller than the number of ranks
            stacked = torch.zeros(len(self.layers), device=self.device)
        if dist is not None:
            stacked = _all_reduce_step(dist, self.layers, stacked * (len(rows) / n_rows))
            losses = list(stacked)
        state.epochs = at
        for layer, optimizer, schedule, loss, on, first in zip(
            self.layers, self.optimizers, state.schedules, losses, active, state.starts
        ):
            if not on:
                continue
            optimizer.step()
            layer.project_()
            sigma, learning_rate = schedule.step(loss.detach(), at=state.epochs - first)
            layer.set_sigma(sigma)
            _set_learning_rate(optimizer, learning_rate)
        return stacked

    def validate(self, annealed: bool, epoch: int) -> float:
        """The validation objective (NaN without early stopping); keeps the best parameters."""
        if not self.n_val:
            return math.nan
        score = _objective(self.stack, self.data, self.val_index, self.shape, self.device)
        if annealed and score > self.best_score:  # only annealed objectives compare
            self.best_score, self.best_epoch = score, epoch
            self.best_params = copy.deepcopy(self.stack.state_dict())
        return score

    def report(self, epoch: int, n_epochs: int, loss: float, speed: float, score: float) -> None:
        """The end of an epoch on the progress bar or as a plain line."""
        sigmas = [s.sigma for s in self.state.schedules]
        rates = [s.learning_rate for s in self.state.schedules]
        line = (
            f"Epoch {epoch + 1}/{n_epochs}: loss={loss:.6g}, "
            f"sigma=[{', '.join(f'{v:.3g}' for v in sigmas)}], lr={rates[-1]:.3g}, "
            f"{speed:,.0f} images/s" + (f", validation score={score:.6g}" if self.n_val else "")
        )
        postfix = {"loss": f"{loss:.5g}", "sigma": f"{sigmas[-1]:.3g}"}
        if self.n_val:
            postfix["val"] = f"{score:.5g}"
        self.progress.end(line, postfix)

    def finish(self, result: TrainingResult) -> None:
        """Keep the best validated parameters; refuse a model whose means ran away."""
        if result.loss_curve:
            result.lower_bound = -result.loss_curve[-1]
        if self.best_params is not None:  # early stopping: keep the best validated parameters
            self.stack.load_state_dict(self.best_params)
            result.best_validation_score = self.best_score
            result.lower_bound = -result.loss_curve[self.best_epoch]
        # Overshooting steps can leave means far outside the data with a finite loss: refuse to
        # return such a model (transient excursions that training recovers from are fine).
        diverged = self.stack.diverged_layers(self.low, self.high)
        if diverged:
            raise ValueError(
                f"Training diverged: the means of layer(s) {diverged} ended far outside the "
                f"range of their inputs. Lower learning_rate (got {self.config.learning_rate}) "
                "or the GMM specs' lr_means."
            )


def _all_reduce_step(dist, layers, losses: Tensor) -> Tensor:
    """Sum every GMM layer's gradients and the (share-weighted) losses over the ranks."""
    grads = []
    for layer in layers:
        for p in layer.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads] + [losses])
    dist.all_reduce(flat)  # one collective per step
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
    return flat[offset:]


#: Per-epoch records of :attr:`TrainingResult.history` (per-layer entries are lists).
_HISTORY_KEYS = (
    "loss",
    "layer_loss",
    "sigma",
    "learning_rate",
    "images_per_second",
    "validation_score",
)


def _record(result, loss, layer_losses, state, speed, score) -> None:
    result.loss_curve.append(loss)
    result.n_iter += 1
    history = result.history
    history["loss"].append(loss)
    history["layer_loss"].append(layer_losses)
    history["sigma"].append([s.sigma for s in state.schedules])
    history["learning_rate"].append([s.learning_rate for s in state.schedules])
    history["images_per_second"].append(speed)
    history["validation_score"].append(score)
