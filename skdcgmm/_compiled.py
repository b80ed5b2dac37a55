"""The training losses of a stack through ``torch.compile``, with an eager fallback."""

from __future__ import annotations

import types
import warnings

import torch
from torch import Tensor

from ._utils import caller_stacklevel
from .nn import DCGMMStack

__all__ = ["CompiledLosses"]

#: Inductor options of the compiled training losses: keep the memory formats the code asks for
#: (channels-first convolution inside compiled graphs, see ``log_gaussian_diag_patches``).
_COMPILE_OPTIONS = {"layout_optimization": False}
#: Copies of ``DCGMMStack.training_losses`` by (stack repr, batch shape, dtype, device).
_LOSSES_CODE: dict[tuple, types.FunctionType] = {}


class CompiledLosses:
    """``stack.training_losses`` through ``torch.compile``, falling back to eager execution.

    Graphs are specialised on the batch size and on whether each layer's annealing kernel is
    still active (a bool that turns true once per layer), so a fit of ``m`` GMM layers
    compiles at most ``m + 1`` of them: only batches of the first size seen are compiled, the
    smaller last batch of an epoch runs eagerly. Stacks of the same architecture share the
    graphs. Where compilation fails (no C++ compiler, a platform torch.compile does not
    support), one warning is given and training goes on eagerly, with the same results.
    """

    def __init__(self, stack: DCGMMStack) -> None:
        self.stack = stack
        self.eager = stack.training_losses
        self.batch_size: int | None = None
        self.compiled = None

    def _losses_method(self, x: Tensor) -> types.MethodType:
        """``training_losses`` of the stack, bound to the code copy of its kind of input.

        torch.compile keeps its graphs per code object, at most torch._dynamo's
        ``recompile_limit`` (8) of them: every architecture and batch shape gets a copy of
        the code of its own, whose graphs later fits of the same kind reuse.
        """
        key = (repr(self.stack), tuple(x.shape), x.dtype, str(x.device))
        function = _LOSSES_CODE.get(key)
        if function is None:
            base = DCGMMStack.training_losses
            code = base.__code__.replace()  # a new code object: a cache of its own
            function = types.FunctionType(code, base.__globals__, base.__name__, base.__defaults__)
            _LOSSES_CODE[key] = function
        return types.MethodType(function, self.stack)

    def _fall_back(self, exc: Exception) -> None:
        self.compiled = None
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        warnings.warn(
            f"compile=True: torch.compile is unavailable here ({type(exc).__name__}: "
            f"{reason[:200]}); training runs eagerly.",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )

    def __call__(self, x: Tensor) -> list[Tensor]:
        if self.batch_size is None:
            self.batch_size = x.shape[0]
            try:
                self.compiled = torch.compile(
                    self._losses_method(x), dynamic=False, options=_COMPILE_OPTIONS
                )
            except Exception as exc:  # e.g. a Python version this torch cannot compile for
                self._fall_back(exc)
        if self.compiled is not None and x.shape[0] == self.batch_size:
            try:
                return self.compiled(x)
            except Exception as exc:  # the eager call below raises again if x is at fault
                self._fall_back(exc)
        return self.eager(x)
