"""Pickling of the estimator: a versioned, device-free state (see "Persistence" in the README)."""

from __future__ import annotations

import inspect
import warnings

import torch

from ._utils import caller_stacklevel, resolve_device
from .layers import build_stack
from .nn.factor import FactorGMMLayer

__all__ = ["PICKLE_FORMAT", "PersistenceMixin"]

#: Version of the pickled state (``__getstate__``); increment on any change of its layout.
PICKLE_FORMAT = 1


class PersistenceMixin:
    """``__getstate__`` / ``__setstate__`` of :class:`~skdcgmm.DeepConvGMM`."""

    # Pickle format (see "Persistence" in the README). The state is the estimator's __dict__
    # with the torch module replaced by plain data, so that a pickle never holds a device
    # tensor or a module class:
    #   "_module_state": {name: CPU tensor} of DCGMMStack.state_dict(),
    #   "_module_geometry": n_components of the top GMM layer (with layers_ and image_shape_,
    #       enough to rebuild the stack with build_stack before loading the state dict; a
    #       top layer with common factors, top_factors, is told by its "loadings" entry),
    #   "device_": str, "_skdcgmm_format": int, "_skdcgmm_version": str.
    # Every other attribute is a plain Python/numpy value, a frozen spec of skdcgmm.layers or
    # an annealing schedule of skdcgmm.nn. A change to any of this increments PICKLE_FORMAT
    # and adds a conversion from the previous format to __setstate__.
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # a copy: object.__getstate__ returns __dict__
        module = state.pop("module_", None)
        if module is not None:
            # CPU tensors and the specs only, so a model fitted on a GPU loads on any machine.
            state["_module_state"] = {k: v.detach().cpu() for k, v in module.state_dict().items()}
            state["_module_geometry"] = module.top.n_components
            state["device_"] = str(state["device_"])
        state["_skdcgmm_format"] = PICKLE_FORMAT
        state["_skdcgmm_version"] = _version()
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        fmt = state.pop("_skdcgmm_format", PICKLE_FORMAT)
        saved_by = state.pop("_skdcgmm_version", "unknown")
        if fmt > PICKLE_FORMAT:
            raise ValueError(
                f"This model was saved by skdcgmm {saved_by} in pickle format {fmt}; this "
                f"skdcgmm ({_version()}) reads formats up to {PICKLE_FORMAT}. Upgrade skdcgmm."
            )
        module_state = state.pop("_module_state", None)
        geometry = state.pop("_module_geometry", None)
        # Parameters added after the model was saved (e.g. compile) take their defaults.
        for name, param in inspect.signature(type(self).__init__).parameters.items():
            if param.default is not param.empty:
                state.setdefault(name, param.default)
        # Fitted attributes added after the model was saved, derived from what it holds.
        if state.get("loss_curve_"):
            state.setdefault("lower_bound_", -state["loss_curve_"][-1])
            state.setdefault("em_n_iter_", 0)  # saved before top_refit existed: no EM refit
        super().__setstate__(state)
        if module_state is not None:
            try:
                device = resolve_device(self.device_)
            except ValueError:
                warnings.warn(
                    f"The model was saved on {self.device_!r}, which is not available here; "
                    "it is loaded on the CPU.",
                    UserWarning,
                    stacklevel=caller_stacklevel(),
                )
                device = torch.device("cpu")
            stack = build_stack(self.layers_, self.image_shape_, geometry, torch.Generator())
            loadings = module_state.get(f"layers.{len(stack.layers) - 1}.loadings")
            if loadings is not None:  # a top layer with common factors (top_factors)
                stack.layers[-1] = FactorGMMLayer.like(stack.top, loadings.shape[1])
            stack.load_state_dict(module_state)
            self.module_ = stack.to(device).eval()
            self.device_ = device


def _version() -> str:
    from . import __version__

    return __version__
