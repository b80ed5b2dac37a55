"""Pooling: ceil-mode sizes of the method's architectures, values, top-down upsampling."""

import pytest
import torch

from skdcgmm.nn import Pooling
from skdcgmm.nn.pooling import pooled_size


@pytest.mark.parametrize("size, expected", [(26, 13), (21, 11), (10, 5), (11, 6), (4, 2), (1, 1)])
def test_sizes_of_2x2_stride_2(size, expected):
    if size == 1:
        with pytest.raises(ValueError, match="larger than"):
            pooled_size(1, 2, 2)
        return
    assert pooled_size(size, 2, 2) == expected
    pool = Pooling((size, size, 3), (2, 2), (2, 2))
    x = torch.rand(2, size * size, 3)
    assert pool(x).shape == (2, expected * expected, 3)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_values_against_naive_windows(mode):
    h, w, k = 5, 7, 2
    x = torch.rand(3, h * w, k, dtype=torch.float64)
    pool = Pooling((h, w, k), (2, 3), (2, 2), mode=mode)
    out = pool(x).view(3, *pool.output_shape)
    img = x.view(3, h, w, k)
    for i in range(pool.output_shape[0]):
        for j in range(pool.output_shape[1]):
            window = img[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 3].reshape(3, -1, k)  # clipped
            ref = window.amax(1) if mode == "max" else window.mean(1)
            torch.testing.assert_close(out[:, i, j], ref)


def test_topdown_dense_upsampling():
    pool = Pooling((5, 5, 1), (2, 2), (2, 2))
    pooled = torch.arange(9.0).view(1, 9, 1)
    up = pool.topdown(pooled).view(5, 5)
    assert up[0, 0] == up[1, 1] == 0 and up[0, 2] == 1 and up[4, 4] == 8 and up[3, 4] == 5
    assert pool.topdown(pooled).shape == (1, 25, 1)


def test_bad_settings():
    with pytest.raises(ValueError, match="mode"):
        Pooling((4, 4, 1), (2, 2), (2, 2), mode="median")
    with pytest.raises(ValueError, match="Pooling expects"):
        Pooling((4, 4, 1), (2, 2), (2, 2))(torch.zeros(1, 4, 1))
