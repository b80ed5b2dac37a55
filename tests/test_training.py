"""The SGD loop of skdcgmm._training."""

import math

import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from skdcgmm._training import TrainingConfig, train
from skdcgmm.nn import DCGMMStack, GMMLayer


def _setup(k=4, n=200, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(k, d, generator=g)
    X = centers[torch.arange(n) % k] + 0.05 * torch.randn(n, d, generator=g)
    stack = DCGMMStack([GMMLayer((1, 1, d), k, generator=g)])
    return stack, X.view(n, 1, d), g


def _config(**kw):
    params = {"max_iter": 6, "batch_size": 20, "learning_rate": 0.1, "learning_rate_final": 0.02}
    return TrainingConfig(**{**params, **kw})


def test_loss_curve_decreases_and_annealing_finishes():
    stack, X, g = _setup()
    with pytest.warns(ConvergenceWarning):
        result = train(stack, X, _config(max_iter=8), g)
    assert result.n_iter == 8 and len(result.loss_curve) == 8 and not result.converged
    assert result.loss_curve[-1] < result.loss_curve[0]
    assert all(math.isfinite(v) for v in result.loss_curve)
    assert float(stack.top.sigma) == pytest.approx(0.01)  # the time schedule ended in time
    assert not stack.training  # left in eval mode


def test_loss_curve_is_negated_epoch_mean_of_the_annealed_objective():
    stack, X, g = _setup()
    # lr tiny: the parameters barely move, so the epoch mean equals a direct evaluation.
    result = train(
        stack,
        X,
        _config(max_iter=1, learning_rate=1e-12, learning_rate_final=1e-12, annealing="plateau"),
        g,
    )
    with torch.no_grad():
        direct = -stack.top.annealed_loss(stack.top.log_scores(X)).item()
    assert result.loss_curve[0] == pytest.approx(direct, rel=1e-5)


def test_converges_with_loose_tolerance():
    stack, X, g = _setup()
    result = train(stack, X, _config(max_iter=50, tol=1.0, n_iter_no_change=2), g)
    assert result.converged
    # Annealing ends at half of the 50 planned epochs; two epochs without improvement follow.
    assert result.n_iter == 27


def test_plateau_schedule_trains():
    stack, X, g = _setup()
    result = train(stack, X, _config(annealing="plateau", plateau_window=5), g)
    assert result.loss_curve[-1] < result.loss_curve[0]
    assert float(stack.top.sigma) < stack.top.sigma0


def test_non_finite_loss_raises():
    stack, X, g = _setup()
    with pytest.raises(ValueError, match="Training diverged"):
        train(stack, X * 1e30, _config(max_iter=1), g)


def test_verbose_prints_one_line_per_epoch(capsys):
    stack, X, g = _setup()
    train(stack, X, _config(max_iter=3, verbose=1), g)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch")]
    assert len(lines) == 3
    assert "loss=" in lines[0] and "sigma=" in lines[0] and "images/s" in lines[0]


def test_same_generator_seed_gives_identical_training():
    curves = []
    for _ in range(2):
        stack, X, _ = _setup()
        curves.append(
            train(stack, X, _config(max_iter=3), torch.Generator().manual_seed(5)).loss_curve
        )
    assert curves[0] == curves[1]


def test_waiting_layer_learns_only_after_its_wait(monkeypatch):
    from skdcgmm.nn import Folding

    g = torch.Generator().manual_seed(0)
    lower = GMMLayer((2, 2, 3), 4, generator=g)
    stack = DCGMMStack(
        [lower, Folding((2, 2, 4), (2, 2), (2, 2)), GMMLayer((1, 1, 16), 2, generator=g)]
    )
    X = torch.rand(100, 4, 3, generator=g)
    updates = {id(lower): 0, id(stack.top): 0}
    original = GMMLayer.project_

    def counting(self):
        updates[id(self)] += 1
        original(self)

    monkeypatch.setattr(GMMLayer, "project_", counting)
    sigma0 = float(stack.top.sigma)
    train(stack, X, _config(max_iter=2, batch_size=10, waits=(0.0, 0.5)), g)
    assert updates == {id(lower): 20, id(stack.top): 10}  # 20 steps; the top waits for 10
    assert float(stack.top.sigma) < sigma0  # and anneals within its own 10 steps
    with pytest.raises(ValueError, match="waits"):
        train(stack, X, _config(waits=(0.0,)), g)
