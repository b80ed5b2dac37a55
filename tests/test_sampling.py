"""Top-down generation of the engine: selection, noise, upsampling, sharpening, prototypes."""

import warnings

import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skdcgmm import DeepConvGMM
from skdcgmm.layers import PRESETS, build_stack, resolve_layers
from skdcgmm.nn import GMMLayer, Pooling, SamplingOptions
from skdcgmm.nn.sampling import generate, prototypes, sharpen, sharpen_to_drawn, variants


def _stack(name, shape=(28, 28, 1), k=5, seed=0):
    specs = resolve_layers(name, shape)
    return build_stack(specs, shape, k, torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def digits_model():
    """A small convolutional model fitted on the digits (8x8): the engine's test subject."""
    X = load_digits().data / 16.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return DeepConvGMM(10, max_iter=4, random_state=0).fit(X), X


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_generate_shapes_dtype_and_bounds_for_every_preset(name):
    stack = _stack(name)
    gen = torch.Generator().manual_seed(0)
    low, high = torch.zeros(784, 1), torch.full((784, 1), 0.5)
    x, comps = generate(stack, 6, SamplingOptions(), gen, bounds=(low, high))
    assert x.shape == (6, 784, 1) and x.dtype == torch.float32
    assert comps.shape == (6, 1) and comps.dtype == torch.int64
    assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 0.5
    assert ((comps >= 0) & (comps < 5)).all()


def test_generate_is_reproducible_and_honours_components():
    stack = _stack("C")
    opts = SamplingOptions(upsampling="sparse", top_s=2)
    a = generate(stack, 4, opts, torch.Generator().manual_seed(3))
    b = generate(stack, 4, opts, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    fixed = torch.tensor([[4], [0], [2], [2]])
    _, comps = generate(stack, 4, opts, torch.Generator().manual_seed(1), components=fixed)
    assert torch.equal(comps, fixed)


def test_top_s_one_picks_the_largest_control():
    layer = GMMLayer((2, 2, 3), 6, generator=torch.Generator().manual_seed(0))
    control = torch.rand(50, 4, 6, generator=torch.Generator().manual_seed(1))
    comps = layer.sample_components(50, control, top_s=1)
    assert torch.equal(comps, control.argmax(dim=-1))
    some = layer.sample_components(50, control, top_s=2)
    top2 = control.topk(2, dim=-1).indices
    assert (some.unsqueeze(-1) == top2).any(dim=-1).all()


def test_noise_divisor_and_floor_noise():
    layer = GMMLayer((1, 1, 4), 3, min_variance=0.05)
    with torch.no_grad():
        layer.precisions[0, :, :2] = 2.0  # learned variances; the last two stay on the floor
    comps = torch.zeros(20_000, 1, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    x = layer.sample_vectors(comps, gen, noise_divisor=4.0)
    std = x[:, 0].std(dim=0)
    torch.testing.assert_close(std[:2], torch.full((2,), 0.5 / 4), rtol=0.03, atol=0)
    quiet = layer.sample_vectors(comps, gen, noise_divisor=4.0, floor_noise=False)
    assert torch.equal(quiet[:, 0, 2:], layer.means[0, 0, 2:].expand(20_000, 2).detach())
    assert quiet[:, 0, :2].std(dim=0).min() > 0.1
    means = layer.sample_vectors(comps[:3], gen, noise_divisor=torch.inf)
    torch.testing.assert_close(means, layer.means[0, comps[:3, 0]].detach().unsqueeze(1))


def test_sparse_upsampling_marks_one_position_per_cell():
    pool = Pooling((5, 5, 3), (2, 2), (2, 2))
    pooled = torch.rand(4, 9, 3) + 0.1
    up = pool.topdown(pooled, torch.Generator().manual_seed(0), upsampling="sparse")
    dense = pool.topdown(pooled)
    torch.testing.assert_close(up.abs(), dense)
    positive = (up[..., 0] > 0).view(4, 5, 5)
    # cells of the 5x5 grid: rows/cols {0,1}, {2,3}, {4}
    cells = [(slice(0, 2), slice(0, 2)), (slice(2, 4), slice(4, 5)), (slice(4, 5), slice(4, 5))]
    for rows, cols in cells:
        assert (positive[:, rows, cols].flatten(1).sum(dim=1) == 1).all()
    with pytest.raises(ValueError, match="upsampling"):
        pool.topdown(pooled, upsampling="nearest")


def test_gmm_topdown_leaves_negative_positions_empty():
    layer = GMMLayer((2, 2, 3), 4)
    control = torch.rand(5, 4, 4)
    control[:, 1] = -control[:, 1]
    x = layer.topdown(control, torch.Generator().manual_seed(0))
    assert (x[:, 1] == 0).all() and (x[:, [0, 2, 3]] != 0).all()


def test_sharpening_raises_the_target_likelihood_of_every_sample(digits_model):
    model, _ = digits_model
    stack = model.module_
    gen = torch.Generator().manual_seed(0)
    blurred, _ = generate(stack, 40, SamplingOptions(), gen)
    target = 1  # the GMM layer above the first folding

    def target_ll(x):
        with torch.no_grad():
            h = stack.layers[0](x)
            return stack.layers[1].annealed_log_likelihood(stack.layers[1].log_scores(h)).mean(1)

    params = {k: v.clone() for k, v in stack.state_dict().items()}
    for weight in (0.0, 0.1):
        opts = SamplingOptions(sharpening_steps=30, reconstruction_weight=weight)
        sharp = sharpen(stack, blurred, 0, target, opts, bounds=(0.0, 1.0))
        before, after = target_ll(blurred.clamp(0, 1)), target_ll(sharp)
        assert (after >= before - 1e-4).all()
        assert (after - before).mean() > 0.1
        assert sharp.min() >= 0 and sharp.max() <= 1
    assert all(torch.equal(v, params[k]) for k, v in stack.state_dict().items())
    assert not any(p.grad is not None for p in stack.parameters())


def test_sharpening_moves_only_free_entries(digits_model):
    model, X = digits_model
    x = torch.as_tensor(X[:10], dtype=torch.float32).view(10, 64, 1)
    free = torch.zeros(1, 64, 1, dtype=torch.bool)
    free[0, :32] = True
    out = sharpen(model.module_, x, 0, 1, SamplingOptions(sharpening_steps=10), free=free)
    assert torch.equal(out[:, 32:], x[:, 32:])
    assert not torch.equal(out[:, :32], x[:, :32])


def test_variants_keep_the_top_cluster(digits_model):
    model, X = digits_model
    x = torch.as_tensor(X[:200], dtype=torch.float32).view(200, 64, 1)
    opts = SamplingOptions(top_s=1, noise_divisor=torch.inf)
    v = variants(model.module_, x, len(model.module_.layers) - 1, opts, None)
    assert v.shape == x.shape
    with torch.no_grad():
        same = model.module_(x).argmax(-1) == model.module_(v).argmax(-1)
    assert same.float().mean() > 0.8
    with pytest.raises(ValueError, match="GMM layer"):
        variants(model.module_, x, 0, opts, None)


def test_prototypes_shapes(digits_model):
    model, _ = digits_model
    stack = model.module_
    first = prototypes(stack, 1)
    assert first.shape == (25, 3, 3, 1)
    torch.testing.assert_close(first.reshape(25, 9), stack.layers[1].means[0].detach())
    top = prototypes(stack, -1 % len(stack.layers))
    assert top.shape == (10, 8, 8, 1) and torch.isfinite(top).all()
    with pytest.raises(ValueError, match="not a GMM layer"):
        prototypes(stack, 0)


def test_prototypes_of_a_middle_layer_are_cropped_to_its_receptive_field():
    stack = _stack("D", k=4)
    middle = [i for i, layer in enumerate(stack.layers) if isinstance(layer, GMMLayer)][1]
    protos = prototypes(stack, middle)
    # down from the middle GMM: Fold(4, 1) -> 4, Pool(2) -> (4 - 1) * 2 + 2 = 8, Fold(3, 1) -> 10
    assert protos.shape == (25, 10, 10, 1) and torch.isfinite(protos).all()


def _drawn_objective(stack, x, components, drawn, weight):
    """The objective of sharpening towards the drawn vector, written out for a C-like stack."""
    fold, first, pool, top_fold, top = stack.layers
    with torch.no_grad():
        scores = first.log_scores(fold(x))
        ll = first.annealed_log_likelihood(scores).mean(1)
        h = top_fold(pool(first.responsibilities(scores)))
        precision = top.precisions[0][components[:, 0]].unsqueeze(1)  # (n, 1, D)
        mismatch = ((h - drawn) * precision).pow(2).flatten(1).mean(1)
    return ll - weight * 0.5 * mismatch, mismatch


def test_sharpening_to_the_drawn_vector_raises_its_objective_for_every_sample(digits_model):
    model, _ = digits_model
    stack = model.module_
    assert len(stack.layers) == 5  # Fold, GMM, Pool, Fold, GMM: what _drawn_objective spells out
    top = stack.top
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        components = top.sample_components(30, None, gen)
        drawn = top.sample_vectors(components, gen)
    plain = SamplingOptions(noise_divisor=20, floor_noise=False)
    x0 = generate(stack, 30, plain, gen, components=components)[0].clamp(0, 1)
    params = {k: v.clone() for k, v in stack.state_dict().items()}
    for weight in (0.0, 200.0):
        opts = SamplingOptions(sharpening_steps=20, sharpening_target="drawn", match_weight=weight)
        x = sharpen_to_drawn(stack, x0, 4, components, drawn, opts, bounds=(0.0, 1.0))
        before, miss_before = _drawn_objective(stack, x0, components, drawn, weight)
        after, miss_after = _drawn_objective(stack, x, components, drawn, weight)
        assert (after >= before - 1e-4).all()
        assert (after - before).mean() > 0.1
        assert x.min() >= 0 and x.max() <= 1
        if weight:
            assert miss_after.mean() < miss_before.mean()
    assert all(torch.equal(v, params[k]) for k, v in stack.state_dict().items())
    assert not any(p.grad is not None for p in stack.parameters())


def test_drawn_target_sharpens_once_after_the_walk_down(digits_model):
    """Without steps it samples plainly; with steps, the walk down itself is not sharpened."""
    model, _ = digits_model
    stack = model.module_

    def run(**kw):
        gen = torch.Generator().manual_seed(3)
        return generate(stack, 20, SamplingOptions(noise_divisor=5, **kw), gen)

    plain, comps = run()
    assert torch.equal(run(sharpening_target="drawn")[0], plain)  # 0 steps: off
    assert torch.equal(run(start_noise_divisor=5)[0], plain)  # None means noise_divisor
    sharp, sharp_comps = run(sharpening_target="drawn", sharpening_steps=5)
    assert torch.equal(sharp_comps, comps) and not torch.equal(sharp, plain)
    other, _ = run(start_noise_divisor=torch.inf)  # the top layer's means, lower layers noisy
    assert not torch.equal(other, plain)


def test_variants_sharpen_towards_the_vector_drawn_at_their_root(digits_model):
    model, X = digits_model
    x = torch.as_tensor(X[:50], dtype=torch.float32).view(50, 64, 1)
    root = len(model.module_.layers) - 1
    opts = SamplingOptions(noise_divisor=20, sharpening_steps=10, sharpening_target="drawn")
    v = variants(model.module_, x, root, opts, torch.Generator().manual_seed(0), bounds=(0, 1))
    assert v.shape == x.shape and v.min() >= 0 and v.max() <= 1
    with torch.no_grad():
        same = model.module_(x).argmax(-1) == model.module_(v).argmax(-1)
    assert same.float().mean() > 0.8
