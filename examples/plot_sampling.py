"""
===================================================
Sampling, sharpening and in-painting with a DCGMM
===================================================

Fit a convolutional :class:`~skdcgmm.DeepConvGMM` to scikit-learn's 8x8 digits and generate
images top-down: plain samples (patches folded back and averaged, hence blurry), samples
*sharpened* by gradient ascent on the first GMM layer's log-likelihood, and in-paintings of
the right half of test digits. Sample quality is measured with NDB/K
(:func:`skdcgmm.metrics.ndb_score`) against the training images, next to a flat
:class:`~sklearn.mixture.GaussianMixture`.
"""

# %%
# Fit the models
# --------------
import numpy as np
from sklearn.datasets import load_digits
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split

from skdcgmm import DeepConvGMM
from skdcgmm.metrics import ndb_score

X, y = load_digits(return_X_y=True)
X_train, X_test = train_test_split(X / 16.0, test_size=0.2, random_state=0)

deep = DeepConvGMM(n_components=25, max_iter=10, random_state=0).fit(X_train)
flat = GaussianMixture(25, covariance_type="diag", reg_covar=0.05, random_state=0).fit(X_train)
print("layers:", deep.layers_)

# %%
# Generate
# --------
# ``noise_divisor`` and ``floor_noise=False`` keep samples near the component means, as the
# paper's sampler does; ``sharpening_steps`` turns sharpening on.
n = 400
plain, _ = deep.sample(n, noise_divisor=5, floor_noise=False)
sharp, _ = deep.sample(n, noise_divisor=5, floor_noise=False, sharpening_steps=50)
flat_samples = np.clip(flat.sample(n)[0], 0, 1)

for name, samples in [
    ("test images (floor)", X_test),
    ("GaussianMixture", flat_samples),
    ("DCGMM", plain),
    ("DCGMM + sharpening", sharp),
]:
    result = ndb_score(X_train, samples, n_bins=10, random_state=0)
    print(f"{name:>20}: NDB/K {result.ndb_k:.2f}, JS {result.js:.4f}")

# %%
# In-painting
# -----------
# The right half of every test digit is missing; the model fills it from what the top GMM
# layer recognises in the left half.
mask = np.zeros((8, 8), dtype=bool)
mask[:, 4:] = True
images = X_test[:8].reshape(8, 8, 8)
filled = deep.inpaint(images, mask, sharpening_steps=50)

# %%
# Pictures
# --------
try:
    import matplotlib.pyplot as plt
except ImportError:  # plotting is optional
    plt = None

if plt is not None:
    from skdcgmm.plotting import plot_images, plot_prototypes

    fig, axes = plt.subplots(1, 3, figsize=(12, 4.5))
    plot_images(flat_samples[:36], ax=axes[0], title="GaussianMixture")
    plot_images(plain[:36], ax=axes[1], title="DCGMM")
    plot_images(sharp[:36], ax=axes[2], title="DCGMM + sharpening")
    fig.savefig("sampling_digits.png", dpi=100)

    holes = np.where(mask, 0.5, images)  # the masked input, missing pixels grey
    fig, ax = plt.subplots(figsize=(8, 3.5))
    plot_images(
        np.concatenate([images, holes, filled]),
        n_cols=8,
        ax=ax,
        title="originals / masked / in-painted",
    )
    fig.savefig("inpainting_digits.png", dpi=100)

    plot_prototypes(deep).savefig("prototypes_digits.png", dpi=100)
    plt.show()
