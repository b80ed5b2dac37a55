"""The PyTorch engine of skdcgmm: kernels, layers, annealing and the layer stack.

This subpackage depends on torch only; it knows nothing of scikit-learn.
"""

from .annealing import PlateauSchedule, TimeSchedule
from .factor import FactorGMMLayer
from .folding import Folding
from .gmm import GMMLayer
from .pooling import Pooling
from .sampling import SamplingOptions
from .stack import DCGMMStack

__all__ = [
    "DCGMMStack",
    "FactorGMMLayer",
    "Folding",
    "GMMLayer",
    "PlateauSchedule",
    "Pooling",
    "SamplingOptions",
    "TimeSchedule",
]
