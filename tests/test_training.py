"""The SGD loop of skdcgmm._training."""

import math
import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from skdcgmm._training import TrainingConfig, new_state, train
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


def test_verbose_2_prints_one_line_per_epoch(capsys):
    stack, X, g = _setup()
    train(stack, X, _config(max_iter=3, verbose=2), g)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch")]
    assert len(lines) == 3
    assert "loss=" in lines[0] and "sigma=" in lines[0] and "images/s" in lines[0]


def test_verbose_1_without_tqdm_prints_plain_lines(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails as if not installed
    stack, X, g = _setup()
    train(stack, X, _config(max_iter=2, verbose=1), g)
    out = capsys.readouterr()
    assert sum(line.startswith("Epoch") for line in out.out.splitlines()) == 2
    assert "img/s" not in out.err


def test_verbose_1_shows_a_tqdm_bar_per_epoch(capsys):
    pytest.importorskip("tqdm")
    stack, X, g = _setup()
    train(stack, X, _config(max_iter=2, verbose=1), g)
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err
    assert "200/200" in err and "loss=" in err and "sigma=" in err and "img/s" in err


def test_history_has_one_row_per_epoch_and_layer():
    g = torch.Generator().manual_seed(0)
    from skdcgmm.nn import Folding

    stack = DCGMMStack(
        [
            GMMLayer((2, 2, 3), 4, generator=g),
            Folding((2, 2, 4), (2, 2), (2, 2)),
            GMMLayer((1, 1, 16), 2, generator=g),
        ]
    )
    X = torch.rand(100, 4, 3, generator=g)
    result = train(stack, X, _config(max_iter=4, batch_size=10), g)
    h = result.history
    assert h["loss"] == result.loss_curve and len(h["loss"]) == 4
    assert np.asarray(h["layer_loss"]).shape == (4, 2)
    assert np.allclose(np.asarray(h["layer_loss"]).sum(axis=1), h["loss"])
    sigma = np.asarray(h["sigma"])
    assert sigma.shape == (4, 2) and (np.diff(sigma, axis=0) <= 0).all()
    assert sigma[-1].tolist() == pytest.approx([0.01, 0.01])  # annealed by half of 4 epochs
    assert np.asarray(h["learning_rate"])[-1].tolist() == pytest.approx([0.02, 0.02])
    assert all(v > 0 for v in h["images_per_second"])
    assert all(math.isnan(v) for v in h["validation_score"])


def test_early_stopping_keeps_the_best_validated_parameters():
    stack, X, g = _setup(n=400)
    config = _config(
        max_iter=40, early_stopping=True, validation_fraction=0.25, tol=1.0, n_iter_no_change=3
    )
    result = train(stack, X, config, g)
    scores = result.history["validation_score"]
    assert result.converged and len(scores) < 40 and all(math.isfinite(v) for v in scores)
    # Annealing ends after 20 epochs; the best annealed epoch's parameters are kept.
    assert result.best_validation_score == max(scores[19:])


def test_state_carries_the_schedule_over_single_passes():
    stack, X, g = _setup()
    config = _config(max_iter=4)
    state = new_state(stack, config)
    for _ in range(4):
        result = train(stack, X, config, g, state, single_pass=True)
        assert result.n_iter == 1
    assert state.epochs == pytest.approx(4.0)
    assert float(stack.top.sigma) == pytest.approx(0.01)  # annealed over the first 2 calls


def test_keyboard_interrupt_stops_cleanly_and_warns(monkeypatch):
    stack, X, g = _setup()
    calls = {"n": 0}
    original = DCGMMStack.training_losses

    def interrupted(self, x):
        calls["n"] += 1
        if calls["n"] == 25:  # in the third epoch of 10 batches
            raise KeyboardInterrupt
        return original(self, x)

    monkeypatch.setattr(DCGMMStack, "training_losses", interrupted)
    with pytest.warns(UserWarning, match="interrupted"):
        result = train(stack, X, _config(max_iter=5), g)
    assert result.interrupted and result.n_iter == 2 and len(result.loss_curve) == 2
    assert not stack.training
    assert all(torch.isfinite(p).all() for p in stack.parameters())


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


def _conv_setup(seed=0):
    from skdcgmm.nn import Folding, Pooling

    g = torch.Generator().manual_seed(seed)
    fold = Folding((8, 8, 1), (3, 3), (1, 1))
    lower = GMMLayer(fold.output_shape, 4, generator=g)
    pool = Pooling(lower.output_shape, (2, 2), (2, 2))
    top_fold = Folding(pool.output_shape, pool.output_shape[:2], pool.output_shape[:2])
    top = GMMLayer(top_fold.output_shape, 3, generator=g)
    stack = DCGMMStack([fold, lower, pool, top_fold, top])
    X = torch.rand(90, 64, 1, generator=g) * (torch.rand(90, 64, 1, generator=g) > 0.5)
    return stack, X


def test_compiled_training_matches_eager_with_one_graph_per_annealing_state():
    from torch._dynamo.utils import counters

    results, stacks = [], []
    for compiled in (False, True):
        stack, X = _conv_setup()
        torch._dynamo.reset()  # count this fit's graphs, none reused from earlier tests
        counters.clear()
        config = _config(max_iter=4, batch_size=20, compile=compiled, waits=(0.0, 0.25))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results.append(train(stack, X, config, torch.Generator().manual_seed(1)))
        if any("torch.compile is unavailable" in str(w.message) for w in caught):
            pytest.skip("torch.compile is unavailable on this machine")
        stacks.append(stack)
    # Batches of 20 and a last one of 10 (run eagerly); each GMM layer's kernel turns into the
    # identity once, at its own time: three annealing states, so three graphs.
    assert counters["stats"]["unique_graphs"] == 3
    eager, compiled = results
    np.testing.assert_allclose(compiled.loss_curve, eager.loss_curve, rtol=1e-5)
    for a, b in zip(stacks[0].parameters(), stacks[1].parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("where", ["torch.compile", "first call"])
def test_compile_falls_back_to_eager_with_one_warning(monkeypatch, where):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    if where == "torch.compile":
        monkeypatch.setattr(torch, "compile", broken)
    else:
        monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: broken)
    curves = []
    for compiled in (False, True):
        stack, X = _conv_setup()
        config = _config(max_iter=2, batch_size=20, compile=compiled)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            curves.append(train(stack, X, config, torch.Generator().manual_seed(1)).loss_curve)
        messages = [str(w.message) for w in caught if "torch.compile" in str(w.message)]
        assert len(messages) == compiled
    assert "RuntimeError: no C++ compiler found" in messages[0]
    assert curves[0] == curves[1]  # eager from the first step on: the same fit exactly


def test_compiled_graphs_are_kept_per_architecture_and_reused():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    # A limit of 2 graphs per code object: one flat fit needs both (kernel smoothing on, then
    # off), so three architectures fit only with a code copy (and graph cache) each.
    with torch._dynamo.config.patch(recompile_limit=2):
        for _ in range(2):  # the second round reuses every graph
            for d in (2, 3, 5):
                stack, X, g = _setup(d=d)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    train(stack, X, _config(max_iter=2, compile=True), g)
                if "unique_graphs" not in counters["stats"]:
                    pytest.skip("torch.compile is unavailable on this machine")
    assert counters["stats"]["unique_graphs"] == 6
    assert not counters["unimplemented"] and not counters["graph_break"]
