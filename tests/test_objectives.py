"""The subset-mixture ELBO (eq. 3) on a linear-Gaussian model where log p(x) is known in closed form.

z ~ N(0, I_d), x_i = W_i z + b_i + N(0, sigma_i^2 I) with W_i = Q_i diag(s_i) (Q_i orthogonal), so every
subset's exact posterior is a diagonal Gaussian: the prior expert times one expert per modality with
precision s_i^2 / sigma_i^2 and mean W_i^T (x_i - b_i) / s_i^2.
"""

import math

import pytest
import torch

from mmbench.errors import MMBenchError
from mmbench.fusion import Gaussian, product_of_experts, subset_weights, subsets
from mmbench.objectives import Likelihood, mixture_elbo

D = 3
NAMES = ["a", "b", "c"]


def make_model(seed=0):
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, sigma in zip(NAMES, [0.5, 0.8, 1.2]):
        q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
        s = 0.5 + torch.rand(D, generator=g, dtype=torch.float64) * 1.5
        params[name] = (q * s, torch.randn(D, generator=g, dtype=torch.float64), sigma, s)
    return params


def sample_data(params, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, D, generator=g, dtype=torch.float64)
    return {
        m: z @ W.T + b + sigma * torch.randn(n, D, generator=g, dtype=torch.float64)
        for m, (W, b, sigma, _) in params.items()
    }


def log_marginal(params, x):
    """log p(x) of the stacked x ~ N(b, W W^T + diag(sigma^2))."""
    W = torch.cat([params[m][0] for m in NAMES])
    b = torch.cat([params[m][1] for m in NAMES])
    noise = torch.cat([torch.full((D,), params[m][2] ** 2, dtype=torch.float64) for m in NAMES])
    cov = W @ W.T + torch.diag(noise)
    xs = torch.cat([x[m] for m in NAMES], -1)
    return torch.distributions.MultivariateNormal(b, cov).log_prob(xs)


def exact_posterior(params, x, subset):
    experts = []
    for m in subset:
        W, b, sigma, s = params[m]
        mean = (x[m] - b) @ W / s**2
        experts.append(Gaussian(mean, torch.log(sigma**2 / s**2).expand_as(mean)))
    return product_of_experts(experts, prior_expert=True)


def log_likelihood_fn(params, x):
    def fn(z, rows):
        return {
            m: Likelihood("normal", params[m][2]).log_prob(x[m][rows], z @ params[m][0].T + params[m][1]) for m in NAMES
        }

    return fn


def stack(qs):
    return Gaussian(torch.stack([q.mu for q in qs]), torch.stack([q.logvar for q in qs]))


def test_single_subset_with_the_exact_posterior_gives_log_p_x():
    params = make_model()
    x = sample_data(params, 16)
    q = stack([exact_posterior(params, x, NAMES)])
    out = mixture_elbo(
        q,
        torch.ones(1, dtype=torch.float64),
        log_likelihood_fn(params, x),
        n_samples=20000,
        generator=torch.Generator().manual_seed(0),
    )
    # The KL is exact; the reconstruction term is a Monte-Carlo mean (std about 2 nats here).
    assert torch.allclose(out.elbo, log_marginal(params, x), atol=0.06)


def test_mixture_elbo_over_all_subsets_is_below_log_p_x():
    params = make_model()
    x = sample_data(params, 16)
    family = subsets(NAMES)
    q = stack([exact_posterior(params, x, s) for s in family])
    out = mixture_elbo(
        q,
        subset_weights(family).double(),
        log_likelihood_fn(params, x),
        n_samples=4000,
        generator=torch.Generator().manual_seed(0),
    )
    gap = log_marginal(params, x) - out.elbo
    assert (gap > 0.5).all(), gap  # strictly below: the unimodal posteriors are not the full posterior


def analytic_elbo(params, x, q):
    """E_q[sum_i log p(x_i|z)] - KL(q || N(0, I)) in closed form for the linear-Gaussian model."""
    from mmbench.fusion import kl_normal

    total = -kl_normal(q)
    for m in NAMES:
        W, b, sigma, s = params[m]
        resid = x[m] - b - q.mu @ W.T
        trace = (s**2 * q.var).sum(-1)  # tr(W^T W Sigma_q) with W^T W = diag(s^2)
        total = total - 0.5 * ((resid**2).sum(-1) + trace) / sigma**2 - 0.5 * D * math.log(2 * math.pi * sigma**2)
    return total


def test_each_proper_subset_alone_is_below_and_the_estimate_is_the_weighted_sum_of_closed_forms():
    params = make_model()
    x = sample_data(params, 8)
    family = subsets(NAMES)
    exact = torch.stack([analytic_elbo(params, x, exact_posterior(params, x, s)) for s in family])
    logp = log_marginal(params, x)
    assert torch.allclose(exact[-1], logp, atol=1e-9)  # the full set's exact posterior closes the gap
    assert (exact[:-1] < logp - 1e-6).all()  # every proper subset stays strictly below
    w = subset_weights(family).double()
    q = stack([exact_posterior(params, x, s) for s in family])
    mixed = mixture_elbo(
        q, w, log_likelihood_fn(params, x), n_samples=4000, generator=torch.Generator().manual_seed(1)
    ).elbo
    assert torch.allclose(mixed, (w[:, None] * exact).sum(0), atol=0.06)


def test_stratified_estimator_agrees_with_enumeration_on_the_batch_mean():
    params = make_model()
    one = sample_data(params, 1)
    x = {m: v.expand(7 * 3000, D) for m, v in one.items()}  # the same example in every row
    family = subsets(NAMES)
    q = stack([exact_posterior(params, x, s) for s in family])
    w = subset_weights(family).double()
    g = torch.Generator().manual_seed(2)
    strat = mixture_elbo(q, w, log_likelihood_fn(params, x), estimator="stratified", generator=g).elbo
    enum = mixture_elbo(q, w, log_likelihood_fn(params, x), n_samples=20, generator=g).elbo
    # Rows of one subset are i.i.d.; the stratified mean's standard error comes from within-subset spread.
    blocks = strat.reshape(7, 3000)
    stderr = (blocks.var(1) / 3000).mean().sqrt() / 7**0.5
    assert abs(strat.mean() - enum.mean()) < 4 * stderr + 0.02


def test_beta_scales_the_kl_term_and_bad_arguments_are_refused():
    params = make_model()
    x = sample_data(params, 4)
    q = stack([exact_posterior(params, x, NAMES)])
    w = torch.ones(1, dtype=torch.float64)
    fn = log_likelihood_fn(params, x)
    a = mixture_elbo(q, w, fn, beta=1.0, generator=torch.Generator().manual_seed(0))
    b = mixture_elbo(q, w, fn, beta=3.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a.elbo - b.elbo, 2.0 * a.kl)
    with pytest.raises(MMBenchError, match="estimator"):
        mixture_elbo(q, w, fn, estimator="bogus")
    with pytest.raises(MMBenchError, match="n_samples"):
        mixture_elbo(q, w, fn, n_samples=0)


def test_likelihoods_match_torch_distributions():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 3, 5, generator=g)
    loc = torch.rand(4, 3, 5, generator=g)
    lap = torch.distributions.Laplace(loc, 0.75).log_prob(x).sum((1, 2))
    assert torch.allclose(Likelihood("laplace", 0.75).log_prob(x, loc), lap, atol=1e-5)
    nor = torch.distributions.Normal(loc, 0.3).log_prob(x).sum((1, 2))
    assert torch.allclose(Likelihood("normal", 0.3).log_prob(x, loc), nor, atol=1e-4)
    xb = (x > 0.5).float()
    ber = torch.distributions.Bernoulli(logits=loc).log_prob(xb).sum((1, 2))
    assert torch.allclose(Likelihood("bernoulli").log_prob(xb, loc), ber, atol=1e-5)
    logits = torch.randn(4, 6, 9, generator=g)
    idx = torch.randint(0, 9, (4, 6), generator=g)
    cat = torch.distributions.Categorical(logits=logits).log_prob(idx).sum(1)
    assert torch.allclose(Likelihood("categorical").log_prob(idx, logits), cat, atol=1e-5)
    with pytest.raises(MMBenchError, match="scale"):
        Likelihood("laplace", 0.0)
    assert math.isfinite(Likelihood("laplace").log_prob(x, loc).sum().item())


def test_the_stratified_kl_agrees_with_the_exact_average_in_expectation():
    from mmbench.fusion import Gaussian, kl_normal, subset_mask, subset_posteriors, subset_weights, subsets
    from mmbench.objectives import stratified_mixture_elbo

    g = torch.Generator().manual_seed(0)
    names = ["a", "b", "c", "d"]
    family = subsets(names)
    mask = subset_mask(family, names).T.contiguous()
    flags = torch.tensor([float(len(s) == len(names)) for s in family])
    weights = subset_weights(family)
    experts = Gaussian(torch.randn(4, 6, 3, generator=g), torch.randn(4, 6, 3, generator=g) * 0.5)
    exact = (weights[:, None] * kl_normal(subset_posteriors(experts, mask, flags))).sum(0)  # (B,)
    zero = lambda z, rows: {"a": torch.zeros(len(rows))}  # noqa: E731
    draws = torch.stack(
        [stratified_mixture_elbo(experts, mask, flags, weights, zero, generator=g).kl for _ in range(3000)]
    )
    assert torch.allclose(draws.mean(0), exact, rtol=0.05)
    assert draws.std(0).max() > 0  # a real estimator: rows change subsets between batches


@pytest.mark.parametrize("name", ["mopoe", "diffmvae_star"])
def test_models_train_with_the_stratified_kl_and_refuse_it_without_stratified_rows(name):
    from helpers import tiny_dataset

    from mmbench.config import build_config
    from mmbench.registry import MODELS

    data = tiny_dataset(16)
    cls = MODELS.get(name)
    small = {"latent_dim": 8, "kl_estimator": "stratified"}
    if name.startswith("diffmvae"):
        small.update(unet_base=8, unet_mults=[1, 2])
    model = cls(data.modalities, build_config(cls.Config, small))
    out = model.loss(data.batch(torch.arange(16)))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.terms["kl"] >= 0
    with pytest.raises(MMBenchError, match="kl_estimator = 'stratified' needs estimator = 'stratified'"):
        build_config(cls.Config, {**small, "estimator": "enumerate"})
