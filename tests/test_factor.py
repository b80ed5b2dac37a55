"""The top layer with common factor loadings (skdcgmm.nn.factor) against dense formulas."""

from __future__ import annotations

import pytest
import torch

from skdcgmm.nn import FactorGMMLayer, GMMLayer
from skdcgmm.nn.factor import fit_factor_layer

N, D, K, FACTORS = 2000, 10, 3, 3


def _data(seed: int = 0) -> torch.Tensor:
    """Three clusters that vary together along two directions, plus noise: ``(N, 1, D)``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(K, (N,), generator=g)
    centres = 3.0 * torch.randn(K, D, generator=g)
    loadings = torch.randn(D, 2, generator=g)
    x = torch.randn(N, 2, generator=g) @ loadings.T + centres[labels]
    return (x + 0.3 * torch.randn(N, D, generator=g))[:, None]


def _start(x: torch.Tensor) -> GMMLayer:
    g = torch.Generator().manual_seed(1)
    layer = GMMLayer((1, 1, D), K, min_variance=0.01, generator=g)
    layer.means.data.copy_(x[torch.randperm(N, generator=g)[:K], 0][None])
    return layer


@pytest.fixture(scope="module")
def fitted():
    x = _data()
    layer = _start(x)
    factor, result = fit_factor_layer(
        layer, lambda: x.split(300), FACTORS, max_iter=200, tol=1e-9,
        generator=torch.Generator().manual_seed(2),
    )  # fmt: skip
    return x, layer, factor.double(), result


def _dense(factor: FactorGMMLayer):
    """Every component's mean and covariance ``A Omega_k A^T + Psi``, from the buffers."""
    chol = factor.base_cholesky
    base = chol @ chol.T
    means, covs = [], []
    for k in range(factor.n_components):
        root = factor.factor_scale[k]
        xi = torch.linalg.solve(base, factor.factor_means[k])
        means.append(factor.offset + factor.loadings @ xi)
        covs.append(factor.loadings @ root @ root.T @ factor.loadings.T + factor.noise.diag())
    return torch.stack(means), torch.stack(covs)


def test_log_likelihood_is_the_dense_gaussian_mixture(fitted):
    x, _, factor, _ = fitted
    means, covs = _dense(factor)
    per_component = torch.stack(
        [torch.distributions.MultivariateNormal(m, c).log_prob(x[:, 0].double()) for m, c in
         zip(means, covs)], dim=1,
    ) + factor.log_weights()[0]  # fmt: skip
    expected = per_component.logsumexp(1)
    torch.testing.assert_close(factor.log_likelihood(x.double())[:, 0], expected, atol=1e-3, rtol=0)
    # Responsibilities are the posterior of the same mixture; means_ are the components'.
    posterior = (per_component - expected[:, None]).exp()
    torch.testing.assert_close(factor(x.double())[:, 0], posterior, atol=1e-4, rtol=0)
    torch.testing.assert_close(factor.means[0], means, atol=1e-4, rtol=0)
    # precisions are the inverse standard deviations of the marginal variances.
    variances = covs.diagonal(dim1=-2, dim2=-1)
    torch.testing.assert_close(factor.precisions[0] ** -2, variances, atol=1e-4, rtol=1e-4)


def test_em_raises_the_likelihood_and_beats_the_diagonal_start(fitted):
    x, layer, factor, result = fitted
    history = result.log_likelihood
    assert result.converged and len(history) == result.n_iter + 1 >= 3
    assert all(b >= a - 1e-9 for a, b in zip(history, history[1:]))
    mean = float(factor.log_likelihood(x.double()).mean())
    assert mean == pytest.approx(history[-1], abs=1e-3)
    # Data made of correlated clusters: the factor model fits far better than diagonal EM.
    with torch.no_grad():
        diagonal = float(layer.log_likelihood(x).mean())
    assert mean > diagonal + 1.0
    # The start is not changed; the annealing state carries over.
    assert type(layer) is GMMLayer and torch.equal(factor.sigma.float(), layer.sigma)
    # A component's covariance is at least the noise: Omega_k is positive semi-definite.
    _, covs = _dense(factor)
    assert (torch.linalg.eigvalsh(covs - factor.noise.diag()) > -1e-6).all()
    assert (factor.noise >= 0.01 * (1 - 1e-6)).all()


def test_samples_have_the_components_moments(fitted):
    _, _, factor, _ = fitted
    means, covs = _dense(factor)
    n = 100_000
    drawn = factor.sample_vectors(
        torch.full((n, 1), 1, dtype=torch.long), torch.Generator().manual_seed(3)
    )[:, 0]
    scale = covs[1].diagonal().sqrt().max()
    assert float((drawn.mean(0) - means[1]).abs().max()) < 0.03 * scale
    assert float((torch.cov(drawn.T) - covs[1]).abs().max()) < 0.03 * scale**2
    # noise_divisor scales the spread around the mean.
    half = factor.sample_vectors(
        torch.full((n, 1), 1, dtype=torch.long), torch.Generator().manual_seed(3),
        noise_divisor=2.0,
    )[:, 0]  # fmt: skip
    centre = factor.means[0, 1]
    torch.testing.assert_close(half - centre, (drawn - centre) / 2, atol=1e-9, rtol=1e-9)


def test_diagonal_twin_and_errors(fitted):
    _, _, factor, _ = fitted
    twin = factor.diagonal()
    assert type(twin) is GMMLayer
    for name in ("means", "precisions", "logits", "sigma"):
        assert torch.equal(getattr(twin, name), getattr(factor, name))
    assert twin.precision_max == factor.precision_max
    with pytest.raises(RuntimeError, match="not trained by SGD"):
        factor.training_outputs(factor.log_scores(_data()[:5].double()))
    with pytest.raises(ValueError, match="one vector per input"):
        FactorGMMLayer((2, 2, D), K, 2)
    with pytest.raises(ValueError, match="n_factors must lie in"):
        FactorGMMLayer((1, 1, D), K, D)
    x = _data()
    with pytest.raises(ValueError, match="one position"):
        fit_factor_layer(GMMLayer((2, 1, D), K), lambda: [x.expand(N, 2, D)], 2)
    with pytest.raises(ValueError, match="min_variance"):
        fit_factor_layer(_start(x), lambda: [x], 2, min_variance=0.0)
