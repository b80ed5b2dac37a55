"""skdcgmm: Deep Convolutional Gaussian Mixture Models with a scikit-learn interface."""

from ._estimator import DeepConvGMM
from ._outlier import DeepConvGMMOutlierDetector
from .layers import GMM, Fold, Pool

__version__ = "0.1.0"

__all__ = ["GMM", "DeepConvGMM", "DeepConvGMMOutlierDetector", "Fold", "Pool", "__version__"]
