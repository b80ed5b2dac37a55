"""Controllers of the annealing radius sigma and the learning rate of one GMM layer (§2.10).

Two schedules share one interface: ``step(loss)`` is called once per training step with that
step's batch-mean annealed log-likelihood (a 0-d tensor, higher is better) and returns the
``(sigma, learning_rate)`` to use from the next step on; ``finished`` tells whether both have
reached their floors.

* :class:`TimeSchedule` decays sigma and the learning rate geometrically over a fixed fraction of
  the planned steps, so annealing is guaranteed to end within the planned training.
* :class:`PlateauSchedule` is the reference's controller: it shrinks both by ``gamma`` whenever
  the block-averaged loss stops improving relative to its total improvement so far, with the
  division guarded.
"""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["PlateauSchedule", "TimeSchedule"]


class _Schedule:
    def __init__(self, sigma0: float, sigma_min: float, lr0: float, lr_min: float) -> None:
        if not (sigma0 > 0 and sigma_min > 0 and lr0 > 0 and lr_min > 0):
            raise ValueError(
                "sigma0, sigma_min, lr0 and lr_min must be > 0, got "
                f"{sigma0}, {sigma_min}, {lr0}, {lr_min}."
            )
        self.sigma0, self.lr0 = float(sigma0), float(lr0)
        # Floors never above the start: a warm start that is already annealed stays put.
        self.sigma_min, self.lr_min = min(sigma_min, sigma0), min(lr_min, lr0)
        self.sigma, self.learning_rate = self.sigma0, self.lr0

    @property
    def finished(self) -> bool:
        return self.sigma <= self.sigma_min and self.learning_rate <= self.lr_min

    def step(self, loss: Tensor, at: float | None = None) -> tuple[float, float]:
        raise NotImplementedError  # pragma: no cover


class TimeSchedule(_Schedule):
    """Geometric decay from the start values to the floors between two fractions of training.

    Parameters
    ----------
    sigma0, sigma_min : float
        Start and final annealing radius.
    lr0, lr_min : float
        Start and final learning rate.
    n_steps : float
        Planned length of training, in steps or in any other unit of time (e.g. epochs, with
        ``step(at=...)`` giving the time reached).
    start, stop : float, default=(0.0, 0.5)
        Fractions of ``n_steps`` between which the decay happens; the values are held at the
        start before ``start`` and at the floors after ``stop``.
    """

    def __init__(
        self,
        sigma0: float,
        sigma_min: float,
        lr0: float,
        lr_min: float,
        n_steps: float,
        *,
        start: float = 0.0,
        stop: float = 0.5,
    ) -> None:
        super().__init__(sigma0, sigma_min, lr0, lr_min)
        if not 0.0 <= start < stop <= 1.0:
            raise ValueError(f"Need 0 <= start < stop <= 1, got start={start}, stop={stop}.")
        if not n_steps > 0:
            raise ValueError(f"n_steps must be > 0, got {n_steps}.")
        self.t0 = start * n_steps
        self.t1 = stop * n_steps
        self.t: float = 0

    def _at(self, t: float) -> tuple[float, float]:
        frac = min(max((t - self.t0) / (self.t1 - self.t0), 0.0), 1.0)
        if frac >= 1.0:
            return self.sigma_min, self.lr_min
        sigma = self.sigma0 * math.exp(frac * math.log(self.sigma_min / self.sigma0))
        lr = self.lr0 * math.exp(frac * math.log(self.lr_min / self.lr0))
        return sigma, lr

    def step(self, loss: Tensor | None = None, at: float | None = None) -> tuple[float, float]:
        """Advance by one step, or to time ``at`` (same unit as ``n_steps``, e.g. epochs)."""
        self.t = self.t + 1 if at is None else at
        self.sigma, self.learning_rate = self._at(self.t)
        return self.sigma, self.learning_rate


class PlateauSchedule(_Schedule):
    """The reference's block-average plateau controller, with a guarded improvement ratio.

    Every ``window`` steps the mean loss ``A`` of the window is compared with the previous
    window's ``last`` and with the first window's ``l0``. When the relative improvement
    ``rho = (A - last) / |last - l0|`` lies in ``(-2 delta, delta)`` — progress has stalled —
    sigma and the learning rate shrink by ``gamma`` (not below their floors). Losses are summed
    on their device and read once per window, so no per-step host synchronisation happens.
    """

    def __init__(
        self,
        sigma0: float,
        sigma_min: float,
        lr0: float,
        lr_min: float,
        *,
        window: int = 100,
        delta: float = 0.05,
        gamma: float = 0.9,
    ) -> None:
        super().__init__(sigma0, sigma_min, lr0, lr_min)
        if window < 1 or not 0 < gamma < 1 or not delta > 0:
            raise ValueError(
                f"Need window >= 1, 0 < gamma < 1, delta > 0; got {window}, {gamma}, {delta}."
            )
        self.window, self.delta, self.gamma = int(window), float(delta), float(gamma)
        self._sum: Tensor | float = 0.0
        self._count = 0
        self._n_windows = 0
        self.first: float | None = None
        self.last: float | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_sum"] = float(state["_sum"])  # no device tensor in a pickle
        return state

    def step(self, loss: Tensor, at: float | None = None) -> tuple[float, float]:
        self._sum = self._sum + loss.detach()
        self._count += 1
        if self._count == self.window:
            self._end_window(float(self._sum) / self._count)
            self._sum, self._count = 0.0, 0
        return self.sigma, self.learning_rate

    def _end_window(self, mean: float) -> None:
        self._n_windows += 1
        if self._n_windows == 1:
            self.first = self.last = mean
            return
        if self._n_windows > 2:
            total = self.last - self.first
            rho = (mean - self.last) / max(abs(total), 1e-8)
            if -2.0 * self.delta < rho < self.delta:
                self.sigma = max(self.gamma * self.sigma, self.sigma_min)
                self.learning_rate = max(self.gamma * self.learning_rate, self.lr_min)
        self.last = mean
