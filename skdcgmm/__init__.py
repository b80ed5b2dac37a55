"""skdcgmm: Deep Convolutional Gaussian Mixture Models with a scikit-learn interface."""

from ._estimator import DeepConvGMM
from .layers import GMM

__version__ = "0.1.0"

__all__ = ["GMM", "DeepConvGMM", "__version__"]
