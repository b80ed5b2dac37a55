"""Folding: hand-computed example, the method's index map, fold-back, shape algebra."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skdcgmm.nn import Folding
from skdcgmm.nn.folding import folding_output_shape


def _nhwc(n, h, w, c, seed=0):
    return torch.rand(
        n, h * w, c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def test_hand_computed_4x4_example():
    x = torch.arange(16.0).view(1, 16, 1)  # pixel (r, c) holds 4 r + c
    fold = Folding((4, 4, 1), (2, 2), (2, 2))
    expected = torch.tensor([[[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]])
    assert torch.equal(fold(x), expected.float())
    overlapping = Folding((4, 4, 1), (3, 3), (1, 1))
    assert overlapping.output_shape == (2, 2, 9)
    assert overlapping(x)[0, 3].tolist() == [5, 6, 7, 9, 10, 11, 13, 14, 15]


@pytest.mark.parametrize(
    "shape, patch, stride",
    [
        ((28, 28, 1), (8, 8), (2, 2)),
        ((28, 28, 3), (3, 3), (1, 1)),
        ((32, 32, 3), (12, 12), (5, 5)),
        ((28, 28, 3), (4, 4), (2, 2)),
        ((9, 13, 2), (2, 5), (3, 2)),
    ],
)
def test_matches_the_method_index_map(shape, patch, stride):
    """out[n, y', x', q] = in[n, y' sY + (q // C) // pW, x' sX + (q // C) % pW, q % C] (§4)."""
    (h, w, c), (_, pw), (sy, sx) = shape, patch, stride
    x = _nhwc(2, h, w, c)
    fold = Folding(shape, patch, stride)
    out = fold(x).view(2, *fold.output_shape)
    img = x.view(2, h, w, c)
    ho, wo, d = fold.output_shape
    ys = torch.arange(ho)[:, None, None] * sy + (torch.arange(d) // c // pw)[None, None, :]
    xs = torch.arange(wo)[None, :, None] * sx + (torch.arange(d) // c % pw)[None, None, :]
    ch = (torch.arange(d) % c)[None, None, :].expand(ho, wo, d)
    torch.testing.assert_close(out, img[:, ys, xs, ch])


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    c=st.integers(1, 3),
    ph=st.integers(1, 12),
    pw=st.integers(1, 12),
    sy=st.integers(1, 4),
    sx=st.integers(1, 4),
)
def test_shape_algebra_and_fold_back(h, w, c, ph, pw, sy, sx):
    if ph > h or pw > w:
        with pytest.raises(ValueError, match="larger than"):
            folding_output_shape((h, w, c), (ph, pw), (sy, sx))
        return
    fold = Folding((h, w, c), (ph, pw), (sy, sx))
    x = _nhwc(3, h, w, c)
    out = fold(x)
    ho, wo, d = fold.output_shape
    assert ho == (h - ph) // sy + 1 and wo == (w - pw) // sx + 1 and d == ph * pw * c
    assert out.shape == (3, ho * wo, d)
    back = fold.topdown(out)
    assert back.shape == x.shape
    rows = torch.zeros(h, dtype=torch.bool)
    cols = torch.zeros(w, dtype=torch.bool)
    for i in range(ho):
        rows[i * sy : i * sy + ph] = True
    for j in range(wo):
        cols[j * sx : j * sx + pw] = True
    covered = (rows[:, None] & cols[None, :]).reshape(-1)
    # Covered pixels are reproduced exactly (overlaps average equal values); others are 0.
    torch.testing.assert_close(back[:, covered], x[:, covered])
    assert (back[:, ~covered] == 0).all()


def test_whole_input_patch_is_a_reshape():
    fold = Folding((5, 4, 2), (5, 4), (5, 4))
    x = _nhwc(2, 5, 4, 2)
    assert fold.output_shape == (1, 1, 40)
    assert torch.equal(fold(x), x.reshape(2, 1, 40))


def test_bad_input_shape():
    with pytest.raises(ValueError, match="Folding expects"):
        Folding((4, 4, 1), (2, 2), (2, 2))(torch.zeros(1, 15, 1))
