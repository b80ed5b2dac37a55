"""A top GMM layer with common factor loadings (an extension of the method).

The top GMM layer of a deep stack models long vectors (C49's: 5,929 pooled responsibilities)
with diagonal Gaussians, which ignore how these features vary together. A mixture of common
factor analysers (Baek, McLachlan & Flack, IEEE TPAMI 32(7), 2010) keeps the model a Gaussian
mixture and adds that structure at little cost: component ``k`` is

    N(x | mu_0 + A xi_k, A Omega_k A^T + Psi),

with ``d`` loadings ``A`` (``D x d``) and a diagonal noise ``Psi`` shared by all components.
Here ``A`` spans the ``d`` leading principal directions of the inputs and ``Psi`` is their
variance outside that span (floored); the components' ``xi_k``, ``Omega_k`` and weights are
then fitted by exact EM. With ``u = A^T Psi^-1 (x - mu_0)`` and ``B = A^T Psi^-1 A``, ``u`` is a
sufficient statistic for the component: ``u | k ~ N(B xi_k, S_k)`` with ``S_k = B Omega_k B + B``,
and

    log p(x) = log N(x | mu_0, Psi) - log N(u | 0, B) + log sum_k pi_k N(u | m_k, S_k),

so EM runs on the ``d``-vectors ``u`` (``S_k >= B``: ``Omega_k`` positive semi-definite). The
layer is fitted on fixed inputs, after SGD; it is not trained by SGD.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from .em import EMResult
from .functional import log_normaliser
from .gmm import GMMLayer

__all__ = ["FactorGMMLayer", "fit_factor_layer"]

#: Components whose total responsibility is below this keep their parameters (as in EM).
_EMPTY = 1e-8
#: Extra random directions and power iterations of the randomised principal directions.
_OVERSAMPLE, _POWER_ITERATIONS = 10, 4


class FactorGMMLayer(GMMLayer):
    """GMM over one ``D``-vector per input with common factor loadings (see module docstring).

    Built by :func:`fit_factor_layer`; ``means`` and ``precisions`` hold every component's mean
    and the inverse standard deviations of its marginal variances (the diagonal of its
    covariance), so what reads a diagonal GMM (and :meth:`diagonal`) still finds one.

    Parameters
    ----------
    input_shape : tuple of int
        ``(1, 1, D)``: one vector per input (a top layer over the whole map).
    n_components : int
        Number of components ``K``.
    n_factors : int
        Number of common factors ``d``, ``1 <= d < D``.
    **kwargs
        Passed to :class:`GMMLayer` (``min_variance``, ``max_variance``, ``sigma0``,
        ``lr_factors``), for :meth:`diagonal`.
    """

    def __init__(
        self, input_shape: tuple[int, int, int], n_components: int, n_factors: int, **kwargs
    ) -> None:
        super().__init__(input_shape, n_components, shared=True, **kwargs)
        dim = self.input_shape[2]
        if self.n_positions != 1:
            raise ValueError(
                f"A FactorGMMLayer models one vector per input, got input_shape {input_shape}."
            )
        if not 1 <= n_factors < dim:
            raise ValueError(f"n_factors must lie in [1, {dim}), got {n_factors}.")
        self.n_factors = int(n_factors)
        k, d = self.n_components, self.n_factors
        eye = torch.eye(d).expand(k, d, d).clone()
        self.register_buffer("offset", torch.zeros(dim))  # mu_0
        self.register_buffer("loadings", torch.zeros(dim, d))  # A, orthonormal columns
        self.register_buffer("noise", torch.ones(dim))  # diag(Psi)
        self.register_buffer("noise_floor", torch.tensor(self.precision_max**-2))
        self.register_buffer("factor_means", torch.zeros(k, d))  # m_k = B xi_k
        self.register_buffer("factor_cholesky", eye)  # chol(S_k)
        self.register_buffer("base_cholesky", torch.eye(d))  # chol(B)
        self.register_buffer("factor_scale", torch.zeros(k, d, d))  # Omega_k^(1/2)
        for p in (self.means, self.precisions, self.logits):
            p.requires_grad_(False)

    @classmethod
    def like(cls, layer: GMMLayer, n_factors: int) -> FactorGMMLayer:
        """An unfitted layer with ``layer``'s shapes, bounds and annealing settings."""
        return cls(
            layer.input_shape, layer.n_components, n_factors,
            min_variance=layer.precision_max**-2, max_variance=layer.precision_min**-2,
            sigma0=layer.sigma0, lr_factors=layer.lr_factors,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_factors={self.n_factors}"

    # ------------------------------------------------------------------ scores
    def _log_scores(self, x: Tensor) -> Tensor:
        v = x[:, 0] - self.offset  # (N, D)
        u = v @ (self.loadings / self.noise[:, None])  # (N, d)
        base = -0.5 * (v * v / self.noise).sum(-1) - 0.5 * self.noise.log().sum()
        reference = _log_gaussian_u(u[None], self.base_cholesky[None])[0]  # (N,)
        diff = u[None] - self.factor_means[:, None]  # (K, N, d)
        within = _log_gaussian_u(diff, self.factor_cholesky)  # (K, N)
        scores = self.log_weights()[0][:, None] + within + (base - reference)[None]
        return scores.T[:, None]  # (N, 1, K)

    def log_scores_of_patches(self, x: Tensor, folding) -> Tensor:
        raise ValueError("A FactorGMMLayer scores whole vectors, not patches.")

    def training_outputs(self, log_scores: Tensor, with_responsibilities: bool = True):
        raise RuntimeError(
            "A FactorGMMLayer is fitted by fit_factor_layer, not trained by SGD: continue "
            "from its diagonal() layer."
        )

    # ------------------------------------------------------------------ sampling
    def sample_vectors(
        self,
        components: Tensor,
        generator: torch.Generator | None = None,
        *,
        noise_divisor: float = 1.0,
        floor_noise: bool = True,
    ) -> Tensor:
        """Draw ``x = mu_0 + A z + e`` with ``z ~ N(xi_k, Omega_k)``, ``e ~ N(0, Psi)`` (both
        scaled by ``1 / noise_divisor``) for components ``(n, 1)``: ``(n, 1, D)``.

        With ``floor_noise=False``, dimensions whose noise sits on the ``min_variance`` floor
        get no noise ``e`` (as :meth:`GMMLayer.sample_vectors`)."""
        k = components[:, 0]
        d, dtype, device = self.n_factors, self.offset.dtype, self.offset.device
        shape = (len(k), d)
        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        spread = (self.factor_scale[k] @ z[..., None])[..., 0] / noise_divisor  # (n, d)
        e = torch.randn((len(k), self.input_shape[2]), generator=generator, device=device,
                        dtype=dtype)  # fmt: skip
        std = self.noise.sqrt() / noise_divisor
        if not floor_noise:
            std = torch.where(self.noise <= self.noise_floor * (1 + 1e-6), 0.0, std)
        return (self.means[0, k] + spread @ self.loadings.T + std * e)[:, None]

    # ------------------------------------------------------------------ diagonal twin
    def diagonal(self) -> GMMLayer:
        """A plain :class:`GMMLayer` with this layer's weights, means, marginal variances and
        annealing state (e.g. to continue training by SGD)."""
        twin = GMMLayer(
            self.input_shape, self.n_components, shared=True,
            min_variance=self.precision_max**-2, max_variance=self.precision_min**-2,
            sigma0=self.sigma0, lr_factors=self.lr_factors,
        ).to(device=self.offset.device, dtype=self.offset.dtype)  # fmt: skip
        own = self.state_dict()
        twin.load_state_dict({name: own[name] for name in twin.state_dict()})
        return twin


def _log_gaussian_u(diff: Tensor, cholesky: Tensor) -> Tensor:
    """``log N(diff | 0, L L^T)`` without ``-d/2 log 2 pi``: ``(K, N, d), (K, d, d) -> (K, N)``."""
    z = torch.linalg.solve_triangular(cholesky, diff.transpose(1, 2), upper=False)
    half_log_det = cholesky.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K,)
    return -0.5 * (z * z).sum(1) - half_log_det[:, None]


def fit_factor_layer(
    layer: GMMLayer,
    chunks: Callable[[], Iterable[Tensor]],
    n_factors: int,
    *,
    max_iter: int = 100,
    tol: float = 1e-4,
    min_variance: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[FactorGMMLayer, EMResult]:
    """A :class:`FactorGMMLayer` fitted on the inputs of ``layer``, which it replaces.

    The loadings are the ``n_factors`` leading principal directions of the inputs (randomised
    subspace iteration, a few passes), the noise their variance outside that span. EM then
    starts from ``layer``'s responsibilities and stops as :func:`~skdcgmm.nn.em.em_refit_` does
    (relative change of the mean log-likelihood per vector below ``tol``); the log-likelihood
    rises at every step.

    Parameters
    ----------
    layer : GMMLayer
        A layer with one position (``input_shape`` ``(1, 1, D)``); its bounds, annealing
        state and responsibilities carry over. It is not changed.
    chunks : callable
        Returns a fresh iterable of input chunks ``(n, 1, D)`` (the layer's device) at every
        call; called about ``_POWER_ITERATIONS + 3`` times.
    n_factors : int
        Number of common factors ``d``, ``1 <= d < D``.
    max_iter : int, default=100
        Most EM steps.
    tol : float, default=1e-4
        Relative tolerance of the mean log-likelihood.
    min_variance : float or None, default=None
        Floor of the noise variances; ``None`` keeps ``layer``'s own.
    generator : torch.Generator or None
        Random source of the subspace iteration's start.

    Returns
    -------
    layer : FactorGMMLayer
    result : EMResult
        EM steps and the mean log-likelihood per vector before every step, then after the last.
    """
    if layer.n_positions != 1:
        raise ValueError(f"fit_factor_layer needs a layer with one position, got {layer}.")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}.")
    dim = layer.input_shape[2]
    var_min = layer.precision_max**-2 if min_variance is None else float(min_variance)
    var_max = layer.precision_min**-2
    if not 0 < var_min < var_max:
        raise ValueError(f"min_variance must lie in (0, {var_max:g}), got {min_variance!r}.")
    factor = FactorGMMLayer.like(layer, n_factors)
    device, f64 = layer.means.device, torch.float64
    with torch.no_grad():
        count, total, second = 0, torch.zeros(dim, dtype=f64, device=device), None
        for x in chunks():
            v = x[:, 0].to(f64)
            count, total = count + len(v), total + v.sum(0)
            second = (v * v).sum(0) if second is None else second + (v * v).sum(0)
        if count < 2:
            raise ValueError("fit_factor_layer needs at least 2 input vectors.")
        offset = total / count
        variance = (second / count - offset * offset).clamp_min(0.0)

        def covariance_times(q: Tensor) -> Tensor:  # C q, one pass
            out = torch.zeros_like(q)
            for x in chunks():
                v = x[:, 0].to(f64) - offset
                out += v.T @ (v @ q)
            return out / count

        width = min(dim, n_factors + _OVERSAMPLE)
        q = torch.randn(dim, width, generator=generator, dtype=f64).to(device)
        for _ in range(_POWER_ITERATIONS):
            q = torch.linalg.qr(covariance_times(q)).Q
        small = q.T @ covariance_times(q)
        values, vectors = torch.linalg.eigh((small + small.T) / 2)
        order = values.argsort(descending=True)[:n_factors]
        loadings, values = q @ vectors[:, order], values[order].clamp_min(0.0)
        noise = (variance - (loadings * loadings) @ values).clamp(var_min, var_max)
        weighted = loadings / noise[:, None]
        base = loadings.T @ weighted  # B
        us, resps, constant = [], [], 0.0
        for x in chunks():
            v = x[:, 0].to(f64) - offset
            u = v @ weighted
            us.append(u)
            resps.append(layer(x.to(layer.means.dtype))[:, 0].to(f64))
            constant += float(-0.5 * (v * v / noise).sum())
        u, resp = torch.cat(us), torch.cat(resps)
        base_chol = torch.linalg.cholesky(base)
        constant = (
            constant / count - 0.5 * float(noise.log().sum()) + log_normaliser(dim)
            - float(_log_gaussian_u(u[None], base_chol[None]).mean())
        )  # fmt: skip
        params = _maximise(u, resp, base_chol, None)  # the start: layer's responsibilities
        history: list[float] = []
        n_iter, converged = 0, False
        while True:
            resp, mean_log_lik = _expect(u, params)
            history.append(mean_log_lik + constant)
            if n_iter > 0 and abs(history[-1] - history[-2]) < tol * abs(history[-1]):
                converged = True
                break
            if n_iter == max_iter:
                break
            params = _maximise(u, resp, base_chol, params)
            n_iter += 1
        _set_parameters(factor, offset, loadings, noise, var_min, base_chol, *params)
    factor.load_state_dict(
        {**factor.state_dict(), "sigma": layer.sigma.detach().cpu().clone(),
         "kernel": layer.kernel.detach().cpu().clone()}
    )  # fmt: skip
    factor = factor.to(device=device, dtype=layer.means.dtype)
    return factor, EMResult(n_iter=n_iter, log_likelihood=history, converged=converged)


def _expect(u: Tensor, params) -> tuple[Tensor, float]:
    """The E-step on ``u``: responsibilities ``(N, K)`` and the mean ``log sum_k pi_k N(u|k)``."""
    means, covs, weights = params
    scores = _log_gaussian_u(u[None] - means[:, None], torch.linalg.cholesky(covs))
    scores = scores + weights.clamp_min(_EMPTY).log()[:, None]  # (K, N)
    norm = scores.logsumexp(0)
    return (scores - norm).exp().T, float(norm.mean())


def _maximise(u: Tensor, resp: Tensor, base_chol: Tensor, previous):
    """The M-step: weights, means ``m_k`` and covariances ``S_k >= B`` (the maximiser under
    that constraint: ``S_k``'s eigenvalues relative to ``B`` clipped at 1); components without
    responsibility keep their previous means and covariances (``0`` and ``B`` at the start)."""
    k, d = resp.shape[1], u.shape[1]
    total = resp.sum(0)
    weights = total / total.sum()
    base = base_chol @ base_chol.T
    if previous is None:
        means = torch.zeros(k, d, dtype=u.dtype, device=u.device)
        covs = base.expand(k, d, d).clone()
    else:
        means, covs = previous[0].clone(), previous[1].clone()
    for j in range(k):
        if total[j] <= _EMPTY:
            continue
        means[j] = resp[:, j] @ u / total[j]
        diff = u - means[j]
        scatter = (resp[:, j, None] * diff).T @ diff / total[j]
        covs[j] = _clip_to_base(scatter, base_chol)[0]
    return means, covs, weights


def _clip_to_base(scatter: Tensor, base_chol: Tensor) -> tuple[Tensor, Tensor]:
    """``(S, R)``: the covariance ``S >= B`` nearest in likelihood to ``scatter`` and a square
    root ``R`` of ``Omega = B^-1 (S - B) B^-1`` (``Omega = R R^T``), for ``B = L L^T``."""
    inner = torch.linalg.solve_triangular(base_chol, scatter, upper=False)
    inner = torch.linalg.solve_triangular(base_chol, inner.T, upper=False)  # L^-1 S L^-T
    values, vectors = torch.linalg.eigh((inner + inner.T) / 2)
    values = values.clamp_min(1.0)
    outer = base_chol @ vectors
    cov = (outer * values) @ outer.T
    root = torch.linalg.solve_triangular(base_chol.T, vectors * (values - 1.0).sqrt(), upper=True)
    return (cov + cov.T) / 2, root


def _set_parameters(
    factor: FactorGMMLayer, offset, loadings, noise, var_min, base_chol, means, covs, weights
) -> None:
    """Write the fitted parameters into ``factor``'s buffers, and its components' means and
    marginal variances into ``means`` / ``precisions``."""
    roots = torch.stack([_clip_to_base(cov, base_chol)[1] for cov in covs])  # (K, d, d)
    centres = torch.cholesky_solve(means.T, base_chol).T  # xi_k = B^-1 m_k
    spread = loadings @ roots  # (K, D, d): A Omega_k^(1/2)
    variances = noise + (spread * spread).sum(-1)  # diag(A Omega_k A^T + Psi): (K, D)
    low, high = factor.precision_max**-2, factor.precision_min**-2
    factor.offset.copy_(offset)
    factor.loadings.copy_(loadings)
    factor.noise.copy_(noise)
    factor.noise_floor.fill_(var_min)
    factor.factor_means.copy_(means)
    factor.factor_cholesky.copy_(torch.linalg.cholesky(covs))
    factor.base_cholesky.copy_(base_chol)
    factor.factor_scale.copy_(roots)
    factor.means.copy_((offset + centres @ loadings.T)[None])
    factor.precisions.copy_(variances.clamp(low, high).rsqrt()[None])
    factor.logits.copy_(weights.clamp_min(_EMPTY).log()[None])
