"""Every built-in model's objective on batches with missing modalities (``batch["mask"]``, mmbench.missing).

A missing row's data never reaches a loss or a gradient (NaN, zeros or noise give the same numbers); an all-True
mask is the complete path; the subset mixture's masked ELBO is the closed form over a row's observed subsets;
the stratified estimators draw only valid subsets and stay unbiased; MVAE's random subsets are uniform.
"""

import itertools
import math

import pytest
import torch
from helpers import tiny_dataset

from mmbench.config import build_config
from mmbench.fusion import (
    Gaussian,
    kl_normal,
    product_of_experts,
    row_assignment,
    row_weights,
    subset_mask,
    subset_posteriors,
    subset_weights,
    subsets,
    valid_subsets,
)
from mmbench.mixture import SubsetMixtureConfig, SubsetMixtureVAE
from mmbench.modality import Modality
from mmbench.objectives import Likelihood, mixture_elbo, stratified_mixture_elbo
from mmbench.registry import MODELS

DIFF = {"sampler_steps": 3, "unet_base": 8, "unet_mults": [1, 2]}
CONFIGS = {
    "mopoe": {},
    "mopoe_stratified_kl": {"kl_estimator": "stratified"},
    "mopoe_enumerate": {"estimator": "enumerate"},
    "mvae": {"random_subsets": 2, "warmup_epochs": 0.0},
    "mmvae": {"k": 3},
    "mmvae_iwae": {"k": 3, "estimator": "iwae"},
    "mvtcae": {},
    "mmvaeplus": {"networks": "conv", "private_dim": 3, "k": 2, "estimator": "dreg"},
    "mmvaeplus_elbo": {"networks": "conv", "private_dim": 3},
    "diffmvae": {**DIFF, "diffusion": ["m0", "m1"]},
    "diffmvae_star": DIFF,
}
B = 6
# rows observe: all, m1+m2, m0+m2, m0 only, m1 only, m0+m1
MASK = {
    "m0": torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool),
    "m1": torch.tensor([1, 1, 0, 0, 1, 1], dtype=torch.bool),
    "m2": torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.bool),
}


def build(case):
    name = case.split("_stratified")[0].split("_enumerate")[0].split("_iwae")[0].split("_elbo")[0]
    cls = MODELS.get(name)
    assert cls.supports_missing
    torch.manual_seed(0)
    data = tiny_dataset(B)
    model = cls(data.modalities, build_config(cls.Config, {"latent_dim": 4, **CONFIGS[case]}))
    return model, data.batch(torch.arange(B))


def filled(batch, fill, mask=MASK):
    g = torch.Generator().manual_seed(11)
    x = {}
    for m, v in batch["x"].items():
        other = {
            "nan": torch.full_like(v, math.nan),
            "zeros": torch.zeros_like(v),
            "noise": torch.randn(v.shape, generator=g) * 5,
        }[fill]
        x[m] = torch.where(mask[m].view(-1, *[1] * (v.dim() - 1)), v, other)
    return {"x": x, "y": batch["y"], "mask": mask}


def loss_and_grads(model, batch, seed=3):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = model.loss(batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), grads


@pytest.mark.parametrize("case", list(CONFIGS))
def test_missing_rows_reach_no_loss_or_gradient_whatever_they_hold(case):
    model, batch = build(case)
    model.train()
    ref_loss, ref_grads = loss_and_grads(model, filled(batch, "nan"))
    assert torch.isfinite(ref_loss)
    assert ref_grads and all(torch.isfinite(g).all() for g in ref_grads.values())
    for fill in ("zeros", "noise"):
        loss, grads = loss_and_grads(model, filled(batch, fill))
        assert torch.equal(loss, ref_loss), (fill, loss, ref_loss)
        assert grads.keys() == ref_grads.keys()
        assert all(torch.equal(grads[n], ref_grads[n]) for n in grads), fill
    # the observed data does matter: changing an observed row changes the loss
    other = filled(batch, "nan")
    other["x"]["m0"] = other["x"]["m0"].clone()
    other["x"]["m0"][0] = 1 - other["x"]["m0"][0]
    assert not torch.equal(loss_and_grads(model, other)[0], ref_loss)


@pytest.mark.parametrize("case", list(CONFIGS))
def test_an_all_true_mask_is_the_complete_path(case):
    model, batch = build(case)
    model.train()
    plain_loss, plain_grads = loss_and_grads(model, batch)
    full = {**batch, "mask": {m: torch.ones(B, dtype=torch.bool) for m in batch["x"]}}
    loss, grads = loss_and_grads(model, full)
    assert torch.equal(loss, plain_loss)
    assert all(torch.equal(grads[n], plain_grads[n]) for n in plain_grads)
    partial = {**batch, "mask": {"m1": torch.ones(B, dtype=torch.bool)}}  # unnamed modalities: observed
    assert torch.equal(loss_and_grads(model, partial)[0], plain_loss)


def test_a_plugin_without_support_is_refused_in_one_line():
    from mmbench.errors import MMBenchError
    from mmbench.missing import check_supports_missing
    from mmbench.model import MultimodalVAE

    class Plain(MultimodalVAE):
        pass

    with pytest.raises(MMBenchError, match="supports_missing"):
        check_supports_missing(Plain, "train")
    for name in ("mopoe", "mvae", "mmvae", "mvtcae", "mmvaeplus", "diffmvae", "diffmvae_star"):
        check_supports_missing(MODELS.get(name), "train")


# -- the linear-Gaussian model (as tests/test_objectives.py): closed forms ---------------------------------------
D = 3
NAMES = ["a", "b", "c"]


def linear_gaussian(seed=0):
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


def unimodal_expert(params, x, m):
    """The exact posterior's factor of modality m: precision s^2 / sigma^2, mean W^T (x - b) / s^2."""
    W, b, sigma, s = params[m]
    mean = (x[m] - b) @ W / s**2
    return Gaussian(mean, torch.log(sigma**2 / s**2).expand_as(mean))


def exact_posterior(params, x, subset):
    return product_of_experts([unimodal_expert(params, x, m) for m in subset], prior_expert=True)


def closed_form_elbo(params, x, q, modalities):
    """E_q[sum_{i in modalities} log p(x_i|z)] - KL(q || N(0, I)), in closed form."""
    total = -kl_normal(q)
    for m in modalities:
        W, b, sigma, s = params[m]
        resid = x[m] - b - q.mu @ W.T
        trace = (s**2 * q.var).sum(-1)
        total = total - 0.5 * ((resid**2).sum(-1) + trace) / sigma**2 - 0.5 * D * math.log(2 * math.pi * sigma**2)
    return total


def masked_closed_form(params, x, rows_observe):
    """Per row: sum over the subsets A of its observed modalities O, w_A = 1/(2^|O| - 1), of the closed-form ELBO
    of q(z|x_A) reconstructing the modalities of O."""
    out = []
    for b, obs in enumerate(rows_observe):
        xb = {m: v[b : b + 1] for m, v in x.items()}
        family = subsets(obs)
        out.append(sum(closed_form_elbo(params, xb, exact_posterior(params, xb, a), obs) for a in family) / len(family))
    return torch.cat(out)


ROWS = [("a", "b", "c"), ("a", "c"), ("b",), ("b", "c")]


def masks_for(rows_observe, repeat=1):
    return {m: torch.tensor([m in obs for obs in rows_observe], dtype=torch.bool).repeat(repeat) for m in NAMES}


def ll_fn(params, x, masks=None):
    def fn(z, rows):
        out = {}
        for m in NAMES:
            v = Likelihood("normal", params[m][2]).log_prob(x[m][rows], z @ params[m][0].T + params[m][1])
            out[m] = v if masks is None else torch.where(masks[m][rows], v, 0)
        return out

    return fn


def test_the_masked_mixture_elbo_is_the_closed_form_over_each_rows_observed_subsets():
    params = linear_gaussian()
    x = sample_data(params, len(ROWS))
    masks = masks_for(ROWS)
    for m in NAMES:  # missing rows hold NaN; the closed form never reads them
        x[m] = torch.where(masks[m][:, None], x[m], math.nan)
    clean = {m: torch.nan_to_num(v) for m, v in x.items()}
    family = subsets(NAMES)
    q = Gaussian(*map(torch.stack, zip(*[exact_posterior(params, clean, s) for s in family])))
    valid = valid_subsets(subset_mask(family, NAMES).T, torch.stack([masks[m] for m in NAMES]))
    expected = masked_closed_form(params, x, ROWS)
    out = mixture_elbo(
        q,
        subset_weights(family).double(),
        ll_fn(params, clean, masks),
        valid=valid,
        n_samples=4000,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.allclose(out.elbo, expected, atol=0.06), (out.elbo, expected)
    # the KL part is exact: the renormalised weights over the valid subsets
    kl = torch.stack(
        [
            sum(kl_normal(exact_posterior(params, {m: v[b : b + 1] for m, v in x.items()}, a)) for a in subsets(obs))
            / (2 ** len(obs) - 1)
            for b, obs in enumerate(ROWS)
        ]
    ).flatten()
    assert torch.allclose(out.kl, kl, atol=1e-10)
    assert torch.allclose(row_weights(subset_weights(family), valid).sum(0), torch.ones(len(ROWS)))


class LinearGaussianMixture(SubsetMixtureVAE):
    """The linear-Gaussian model as a subset-mixture model: its experts are the exact posterior's factors, the
    prior expert joins every subset, so q(z|x_A) is A's exact posterior."""

    def __init__(self, params, **config):
        super().__init__([Modality(m, (D,)) for m in NAMES], SubsetMixtureConfig(prior_expert="all", **config))
        self.params = params
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # a parameter, so the model has a device

    @classmethod
    def check_modalities(cls, modalities):
        pass

    def experts(self, x, names):
        e = [unimodal_expert(self.params, x, m) for m in names]
        return Gaussian(torch.stack([q.mu for q in e]), torch.stack([q.logvar for q in e]))

    def log_likelihoods(self, x, z, rows):
        return ll_fn(self.params, x)(z, rows)

    def encode(self, x, subset=None):  # pragma: no cover - the contract's, not used here
        raise NotImplementedError

    def decode(self, z, modalities=None, *, generator=None):  # pragma: no cover
        raise NotImplementedError


@pytest.mark.parametrize("kl_estimator", ["exact", "stratified"])
def test_the_models_masked_loss_is_the_closed_form_in_expectation(kl_estimator):
    """Through SubsetMixtureVAE.loss (the stratified estimators, missing rows NaN): each row pattern repeated
    n times; the mean over its rows is the closed form within sampling error."""
    params = linear_gaussian()
    one = sample_data(params, 1)
    n = 3000
    x = {m: v.expand(len(ROWS) * n, D).clone() for m, v in one.items()}
    masks = masks_for(ROWS, n)  # row r * ... pattern: ROWS[i % len(ROWS)]
    for m in NAMES:
        x[m] = torch.where(masks[m][:, None], x[m], math.nan)
    model = LinearGaussianMixture(params, estimator="stratified", kl_estimator=kl_estimator).double()
    torch.manual_seed(0)
    out = model.elbo(x, beta=1.0, masks=masks)
    expected = masked_closed_form(params, {m: v.expand(len(ROWS), D) for m, v in one.items()}, ROWS)
    per_row = out.elbo.reshape(n, len(ROWS))
    stderr = per_row.std(0) / n**0.5
    assert torch.isfinite(out.elbo).all()
    assert ((per_row.mean(0) - expected).abs() < 4 * stderr + 0.02).all(), (per_row.mean(0), expected, stderr)
    # the single-modality row has one valid subset: its KL is that subset's, every row, every draw
    kl_b = kl_normal(exact_posterior(params, {m: v for m, v in one.items()}, ("b",)))
    assert torch.allclose(out.kl.reshape(n, len(ROWS))[:, 2], kl_b.expand(n), atol=1e-10)


# -- the stratified estimators: valid subsets only, unbiased ----------------------------------------------------
def test_row_assignment_draws_each_rows_valid_subsets_with_its_weights():
    g = torch.Generator().manual_seed(0)
    weights = torch.tensor([[0.5, 0.0, 1.0], [0.0, 0.2, 0.0], [0.25, 0.8, 0.0], [0.25, 0.0, 0.0]])  # (S=4, B=3)
    draws = torch.stack([row_assignment(weights, generator=g) for _ in range(20000)])  # (N, B)
    freq = torch.stack([(draws == s).double().mean(0) for s in range(4)])
    assert ((weights > 0) | (freq == 0)).all()  # never a subset of weight 0
    assert torch.allclose(freq, weights.double(), atol=0.012)
    # equal rows spread over the subsets as the blocks do: each batch holds every subset nearly in proportion
    same = torch.tensor([0.5, 0.25, 0.25])[:, None].expand(3, 40)
    counts = torch.bincount(row_assignment(same, generator=g), minlength=3)
    assert (counts - torch.tensor([20, 10, 10])).abs().max() <= 1


def test_the_stratified_kl_draws_only_valid_subsets_and_is_unbiased():
    g = torch.Generator().manual_seed(0)
    names = ["a", "b", "c", "d"]
    family = subsets(names)
    mask = subset_mask(family, names).T.contiguous()
    flags = torch.tensor([float(len(s) == len(names)) for s in family])
    weights = subset_weights(family)
    b = 6
    obs = torch.tensor(
        [[1, 1, 0, 1, 0, 1], [1, 0, 1, 1, 0, 0], [1, 1, 1, 0, 0, 1], [1, 0, 1, 1, 1, 0]], dtype=torch.bool
    )
    mu = torch.randn(4, b, 3, generator=g)
    mu = torch.where(obs[..., None], mu, 1e4)  # an invalid subset's KL would be about 1e8
    experts = Gaussian(mu, torch.randn(4, b, 3, generator=g) * 0.5)
    valid = valid_subsets(mask, obs)
    w = row_weights(weights, valid)
    exact = torch.where(valid, w * kl_normal(subset_posteriors(experts, mask, flags)), 0).sum(0)
    zero = lambda z, rows: {"a": torch.zeros(len(rows))}  # noqa: E731
    draws = torch.stack(
        [stratified_mixture_elbo(experts, mask, flags, weights, zero, generator=g, valid=valid).kl for _ in range(3000)]
    )
    assert draws.max() < 1e3  # only valid subsets
    assert torch.allclose(draws.mean(0), exact, rtol=0.05)
    assert draws.std(0)[:4].min() > 0  # rows with several valid subsets change subsets between batches


def test_the_stratified_reconstruction_draws_only_valid_subsets_and_agrees_with_enumeration():
    params = linear_gaussian()
    one = sample_data(params, 1)
    n = 3000
    x = {m: v.expand(len(ROWS) * n, D) for m, v in one.items()}
    masks = masks_for(ROWS, n)
    family = subsets(NAMES)
    q = Gaussian(*map(torch.stack, zip(*[exact_posterior(params, x, s) for s in family])))
    valid = valid_subsets(subset_mask(family, NAMES).T, torch.stack([masks[m] for m in NAMES]))
    q = Gaussian(torch.where(valid[..., None], q.mu, 1e6), q.logvar)  # an invalid subset's z would be huge
    w = subset_weights(family).double()
    seen = []

    def fn(z, rows):
        seen.append(z.abs().max())
        return ll_fn(params, x, masks)(z, rows)

    g = torch.Generator().manual_seed(2)
    strat = mixture_elbo(q, w, fn, estimator="stratified", generator=g, valid=valid).elbo
    assert max(seen) < 1e3
    enum = mixture_elbo(q, w, ll_fn(params, x, masks), n_samples=20, generator=g, valid=valid).elbo
    per_row = strat.reshape(n, len(ROWS))
    stderr = per_row.std(0) / n**0.5
    assert ((per_row.mean(0) - enum.reshape(n, len(ROWS)).mean(0)).abs() < 4 * stderr + 0.02).all()


# -- MVAE's random subsets ---------------------------------------------------------------------------------------
def test_mvae_random_subsets_are_uniform_over_the_distinct_subsets_and_training_only():
    mods = [Modality(f"m{i}", (4,)) for i in range(5)]
    cls = MODELS.get("mvae")
    torch.manual_seed(0)
    model = cls(mods, build_config(cls.Config, {"latent_dim": 2, "random_subsets": 1}))
    names = model.modality_names
    pool = [c for k in (2, 3, 4) for c in itertools.combinations(names, k)]
    assert len(pool) == 25
    model.train()
    n = 10000
    counts = dict.fromkeys(pool, 0)
    for _ in range(n):
        family = model.training_subsets()
        assert family[:6] == [tuple(names)] + [(m,) for m in names]
        counts[family[6]] += 1
    observed = torch.tensor(list(counts.values()), dtype=torch.float64)
    chi2 = ((observed - n / 25) ** 2 / (n / 25)).sum()
    assert chi2 < 51.2, chi2  # chi-square, 24 degrees of freedom, p = 0.001
    by_size = {k: sum(v for s, v in counts.items() if len(s) == k) / n for k in (2, 3, 4)}
    assert abs(by_size[2] - 0.4) < 0.02 and abs(by_size[3] - 0.4) < 0.02 and abs(by_size[4] - 0.2) < 0.02
    model = cls(mods, build_config(cls.Config, {"latent_dim": 2, "random_subsets": 30}))
    family = model.training_subsets()
    assert sorted(family[6:]) == sorted(pool)  # distinct, all of them when more are asked
    model.eval()
    assert model.training_subsets() == [tuple(names)] + [(m,) for m in names]


def test_mvae_masked_terms_average_each_subsets_rows():
    """MultiVae's MVAE: term A over x_{A & O} in each row, averaged over the rows observing part of A."""
    model, batch = build("mvae")
    model.eval()  # no random subsets: joint + unimodal
    masked = filled(batch, "nan")
    x, names = filled(batch, "zeros")["x"], model.modality_names
    e = model.parts.experts(x, names)
    experts = {m: (e.mu[i], e.logvar[i]) for i, m in enumerate(names)}
    family = [tuple(names)] + [(m,) for m in names]
    torch.manual_seed(5)
    eps = torch.randn(len(family), B, 4)
    total = 0.0
    for s, subset in enumerate(family):
        for b in range(B):
            seen = [m for m in subset if MASK[m][b]]
            if not seen:
                continue
            q = product_of_experts([Gaussian(experts[m][0][b], experts[m][1][b]) for m in seen], prior_expert=True)
            z = q.mu + q.std * eps[s, b]
            rec = sum(
                Likelihood("laplace", 0.75).log_prob(x[m][b : b + 1], model.parts.decoders[m](z[None])) for m in seen
            )
            rows = sum(any(MASK[m][r] for m in subset) for r in range(B))
            total = total + (rec - 2.5 * kl_normal(q)) / rows
    torch.manual_seed(5)
    assert torch.allclose(model.loss(masked).loss, -total.squeeze(), rtol=1e-5)
