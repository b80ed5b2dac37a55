"""One contract, every layer type: shapes, dtype and device kept, finite, stateless forward."""

import copy

import pytest
import torch

from skdcgmm.nn import Folding, GMMLayer, Pooling

LAYERS = {
    "folding": lambda: Folding((9, 7, 2), (3, 2), (2, 1)),
    "folding-whole": lambda: Folding((4, 4, 3), (4, 4), (4, 4)),
    "pooling-max": lambda: Pooling((7, 5, 4), (2, 2), (2, 2)),
    "pooling-avg": lambda: Pooling((7, 5, 4), (3, 2), (2, 2), mode="avg"),
    "gmm-shared": lambda: GMMLayer((3, 4, 5), 6, generator=torch.Generator().manual_seed(0)),
    "gmm-per-position": lambda: GMMLayer(
        (3, 4, 5), 6, shared=False, generator=torch.Generator().manual_seed(0)
    ),
}


@pytest.mark.parametrize("name", LAYERS)
class TestLayerContract:
    def _input(self, layer, dtype=torch.float32, n=4):
        h, w, d = layer.input_shape
        return torch.rand(n, h * w, d, dtype=dtype, generator=torch.Generator().manual_seed(1))

    def test_output_matches_output_shape(self, name):
        layer = LAYERS[name]()
        out = layer(self._input(layer))
        h, w, d = layer.output_shape
        assert out.shape == (4, h * w, d)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_dtype_and_device_kept_and_finite(self, name, dtype):
        layer = LAYERS[name]().to(dtype)
        x = self._input(layer, dtype)
        out = layer(x)
        assert out.dtype == dtype and out.device == x.device
        assert torch.isfinite(out).all()

    def test_forward_stores_nothing(self, name):
        layer = LAYERS[name]()
        before = {k: copy.copy(v) for k, v in vars(layer).items() if not k.startswith("_")}
        state = {k: v.clone() for k, v in layer.state_dict().items()}
        layer(self._input(layer))
        after = {k: v for k, v in vars(layer).items() if not k.startswith("_")}
        assert before.keys() == after.keys()
        for key, value in layer.state_dict().items():
            assert torch.equal(value, state[key])

    def test_wrong_shape_rejected(self, name):
        layer = LAYERS[name]()
        h, w, d = layer.input_shape
        with pytest.raises(ValueError, match="expects"):
            layer(torch.zeros(2, h * w + 1, d))

    def test_topdown_inverts_shapes(self, name):
        layer = LAYERS[name]()
        h, w, d = layer.output_shape
        x = torch.rand(3, h * w, d)
        back = layer.topdown(x, generator=torch.Generator().manual_seed(0))
        hi, wi, di = layer.input_shape
        assert back.shape == (3, hi * wi, di) and torch.isfinite(back).all()
