"""Annealing schedules of skdcgmm.nn.annealing."""

import pytest
import torch

from skdcgmm.nn import PlateauSchedule, TimeSchedule


def test_time_schedule_reaches_floor_at_stop_and_is_monotone():
    sched = TimeSchedule(3.0, 0.01, 0.1, 0.01, n_steps=100, stop=0.5)
    sigmas, lrs = zip(*(sched.step() for _ in range(100)))
    assert all(a >= b for a, b in zip(sigmas, sigmas[1:]))
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert sigmas[48] > 0.01 and sigmas[49] == 0.01 and sigmas[-1] == 0.01
    assert lrs[49] == 0.01 and sched.finished


def test_time_schedule_holds_before_start():
    sched = TimeSchedule(2.0, 0.01, 0.1, 0.1, n_steps=10, start=0.3, stop=0.8)
    assert [sched.step()[0] for _ in range(3)] == [2.0, 2.0, 2.0]
    assert not sched.finished


def test_time_schedule_warm_start_below_floor_stays():
    sched = TimeSchedule(0.01, 0.01, 0.1, 0.01, n_steps=10)
    assert sched.step()[0] == 0.01


def test_plateau_flat_loss_shrinks_sigma_each_window_after_the_second():
    sched = PlateauSchedule(1.0, 0.01, 0.1, 0.01, window=10, gamma=0.9)
    sigmas = [sched.step(torch.tensor(-5.0))[0] for _ in range(50)]
    # windows end at steps 10, 20 (no action), then 30, 40, 50 (stalled -> shrink)
    assert sigmas[28] == 1.0
    assert sigmas[29] == pytest.approx(0.9)
    assert sigmas[39] == pytest.approx(0.81)
    assert sigmas[49] == pytest.approx(0.729)


def test_plateau_steadily_improving_loss_does_not_shrink():
    sched = PlateauSchedule(1.0, 0.01, 0.1, 0.01, window=10)
    for t in range(150):  # 15 windows of a constant slope: rho = 1 / (windows - 2) > delta
        sigma, lr = sched.step(torch.tensor(float(t)))
    assert sigma == 1.0 and lr == 0.1


def test_plateau_respects_floors():
    sched = PlateauSchedule(0.02, 0.01, 0.1, 0.05, window=1)
    for _ in range(50):
        sigma, lr = sched.step(torch.tensor(0.0))
    assert sigma == 0.01 and lr == 0.05 and sched.finished


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (TimeSchedule, {"n_steps": 0}),
        (TimeSchedule, {"n_steps": 10, "start": 0.6, "stop": 0.5}),
        (PlateauSchedule, {"window": 0}),
        (PlateauSchedule, {"gamma": 1.5}),
    ],
)
def test_invalid_settings_raise(cls, kwargs):
    with pytest.raises(ValueError):
        cls(1.0, 0.01, 0.1, 0.01, **kwargs)
