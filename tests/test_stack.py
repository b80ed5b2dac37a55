"""DCGMMStack: shape chaining, per-layer detached losses, likelihood and sampling."""

import pytest
import torch

from skdcgmm.nn import DCGMMStack, GMMLayer


def _gmm(shape, k, seed=0):
    return GMMLayer(shape, k, generator=torch.Generator().manual_seed(seed))


def test_shapes_must_chain():
    with pytest.raises(ValueError, match="do not chain"):
        DCGMMStack([_gmm((1, 1, 4), 3), _gmm((1, 1, 5), 2)])
    with pytest.raises(ValueError, match="at least one layer"):
        DCGMMStack([])


def test_two_gmm_layers_train_on_detached_inputs():
    stack = DCGMMStack([_gmm((2, 2, 4), 3), _gmm((2, 2, 3), 2, seed=1)])
    x = torch.rand(5, 4, 4)
    losses = stack.training_losses(x)
    assert len(losses) == 2
    # The upper loss does not reach the lower layer's parameters (method §7).
    grads = torch.autograd.grad(losses[1], stack.layers[0].means, allow_unused=True)
    assert grads[0] is None
    assert stack(x).shape == (5, 4, 2)
    assert stack(x, upto=0).shape == (5, 4, 3)
    assert stack.log_likelihood(x).shape == (5,)


def test_flat_stack_sampling():
    stack = DCGMMStack([_gmm((1, 1, 6), 4)])
    x, comps = stack.sample(10, generator=torch.Generator().manual_seed(0))
    assert x.shape == (10, 1, 6) and comps.shape == (10, 1)
    fixed = torch.full((10, 1), 2)
    _, comps = stack.sample(10, components=fixed)
    assert torch.equal(comps, fixed)


def test_sampling_through_layers_without_topdown_is_refused():
    class Identity(torch.nn.Module):
        input_shape = output_shape = (1, 1, 6)

        def forward(self, x):
            return x

    stack = DCGMMStack([Identity(), _gmm((1, 1, 6), 4)])
    with pytest.raises(NotImplementedError, match="Identity"):
        stack.sample(2)


@pytest.mark.parametrize("preset", ["C", "D", "E"])
@pytest.mark.parametrize("annealed", [False, True])
def test_training_losses_of_the_fused_folding_equal_the_layer_by_layer_losses(preset, annealed):
    """The training path (convolutions, component-major layouts, shared maxima, floored
    responsibilities) gives the losses and gradients of every layer applied on its own."""
    from skdcgmm.layers import build_stack, resolve_layers

    g = torch.Generator().manual_seed(0)
    stack = build_stack(resolve_layers(preset, (28, 28, 1)), (28, 28, 1), 10, g).double()
    if annealed:
        for layer in stack.gmm_layers:
            layer.set_sigma(0.01)
    x = torch.rand(3, 784, 1, generator=g, dtype=torch.float64)
    losses = stack.training_losses(x)
    got = torch.autograd.grad(sum(losses), list(stack.parameters()))
    expected, h = [], x
    for layer in stack.layers:  # the plain path: every layer on its own
        if isinstance(layer, GMMLayer):
            scores = layer.log_scores(h.detach())
            expected.append(layer.annealed_loss(scores))
            h = layer.responsibilities(scores)
        else:
            h = layer(h)
    want = torch.autograd.grad(sum(expected), list(stack.parameters()))
    assert len(losses) == len(expected) == len(stack.gmm_layers)
    for a, b in zip(losses, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_training_responsibilities_are_the_softmax_without_tiny_values():
    from skdcgmm.nn.gmm import training_responsibilities

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 6, 10, generator=g) * 60  # gaps of hundreds: tiny probabilities
    before = scores.clone()
    got = training_responsibilities(scores)
    assert torch.equal(scores, before)  # computed in a buffer of its own
    exact = torch.softmax(scores.double(), dim=-1)
    # As float32's own softmax, up to its rounding, except that values below 1e-15 are 0.
    torch.testing.assert_close(got.double(), exact, rtol=1e-5, atol=1e-15)
    assert ((got == 0) | (got > 1e-15)).all()  # nothing denormal, nor squaring to one, is left
    assert (got[exact < 6e-16] == 0).all()
    assert (got[exact > 2e-15] > 0).all()
    # A given maximum is used as it is.
    torch.testing.assert_close(training_responsibilities(scores, scores.amax(-1)), got)
    # Scores that require gradients give the same, detached, responsibilities.
    tracked = scores.clone().requires_grad_()
    detached = training_responsibilities(tracked)
    assert not detached.requires_grad
    torch.testing.assert_close(detached, got)


def test_floored_softmax_is_the_same_written_out_and_fused():
    # The fused form is what GPUs run: checked against the CPU's written-out form here.
    from skdcgmm.nn.gmm import _floored_softmax

    g = torch.Generator().manual_seed(2)
    scores = torch.randn(3, 7, 25, generator=g) * 40
    peak = scores.amax(-1)
    fused = _floored_softmax(scores, peak, written_out=False)
    torch.testing.assert_close(_floored_softmax(scores, peak, written_out=True), fused)
    torch.testing.assert_close(fused.sum(-1), torch.ones(3, 7))
    assert fused.min() > 0  # the floor: exp(-35) relative to the maximum, before thresholding
