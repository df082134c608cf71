"""Each baseline's loss against its formula written out here, independently of the model code."""

import math

import pytest
import torch
from helpers import installed_models, tiny_dataset

from mmbench.config import build_config
from mmbench.errors import MMBenchError
from mmbench.fusion import Gaussian
from mmbench.registry import MODELS

LAPLACE_CONST = math.log(2 * 0.75)


def laplace_ll(x, loc):
    return (-(x - loc).abs() / 0.75 - LAPLACE_CONST).flatten(1).sum(1)


def kl_diag(q, p=None):
    """KL(q || p) for diagonal Gaussians given as (mu, var) pairs, written from the definition."""
    mq, vq = q
    mp, vp = p if p is not None else (torch.zeros_like(mq), torch.ones_like(vq))
    return 0.5 * (torch.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1).sum(-1)


def experts_of(model, x):
    names = model.modality_names
    e = model.parts.experts(x, names)
    return {m: (e.mu[i], e.logvar[i].exp()) for i, m in enumerate(names)}


def poe(parts, prior):
    prec = sum(1 / v for _, v in parts) + (1.0 if prior else 0.0)
    mu = sum(m / v for m, v in parts) / prec
    return mu, 1 / prec


def build(name, **cfg):
    torch.manual_seed(0)
    data = tiny_dataset(6)
    cls = MODELS.get(name)
    model = cls(data.modalities, build_config(cls.Config, {"latent_dim": 4, **cfg}))
    return model, data.batch(torch.arange(6))


def decode_ll(model, x, z, m):
    return laplace_ll(x[m], model.parts.decode_raw(z, [m])[m])


def test_mvae_loss_is_the_joint_plus_unimodal_elbos():
    model, batch = build("mvae", beta=2.5)
    x, names = batch["x"], model.modality_names
    experts = experts_of(model, x)
    family = [tuple(names)] + [(m,) for m in names]
    torch.manual_seed(7)
    eps = torch.randn(len(family), 6, 4)
    total = 0.0
    for s, subset in enumerate(family):
        mu, var = poe([experts[m] for m in subset], prior=True)
        z = mu + var.sqrt() * eps[s]
        rec = sum(decode_ll(model, x, z, m) for m in subset)  # only the modalities in A
        total = total + (rec - 2.5 * kl_diag((mu, var))).mean()
    torch.manual_seed(7)
    assert torch.allclose(model.loss(batch).loss, -total, rtol=1e-5)


def test_mvae_kl_annealing_ramps_beta_over_the_warmup_epochs():
    model, batch = build("mvae", beta=2.5, warmup_epochs=2)
    model.train()

    def loss_at(step):
        model.begin_step(step, 10)
        torch.manual_seed(7)
        return model.loss(batch)

    no_kl, half, full = loss_at(0), loss_at(10), loss_at(20)
    kl_sum = half.loss - no_kl.loss  # 1.25 * sum of the subsets' mean KLs
    assert kl_sum > 0
    assert torch.allclose(full.loss - no_kl.loss, 2 * kl_sum, atol=1e-2)  # float32 losses near 1.6e4
    assert torch.allclose(loss_at(500).loss, full.loss)
    model.eval()  # evaluation always uses the full beta
    model.begin_step(0, 10)
    torch.manual_seed(7)
    assert torch.allclose(model.loss(batch).loss, full.loss)


def test_mvae_random_subsets_add_terms():
    model, batch = build("mvae", random_subsets=2)
    torch.manual_seed(1)
    assert len(model.training_subsets()) == 1 + 3 + 2
    assert all(len(s) >= 2 for s in model.training_subsets()[4:])


def test_mvtcae_loss_is_the_total_correlation_objective():
    model, batch = build("mvtcae", beta=2.5, alpha=5 / 6)
    x, names = batch["x"], model.modality_names
    n, a = 3, 5 / 6
    experts = experts_of(model, x)
    mu, var = poe(list(experts.values()), prior=False)
    torch.manual_seed(3)
    z = mu + var.sqrt() * torch.randn(6, 4)
    rec = sum(decode_ll(model, x, z, m) for m in names)
    cvib = sum(kl_diag((mu, var), experts[m]) for m in names)
    expected = (-(n - a) / n * rec + 2.5 * (a / n * cvib + (1 - a) * kl_diag((mu, var)))).mean()
    torch.manual_seed(3)
    assert torch.allclose(model.loss(batch).loss, expected, rtol=1e-5)


@pytest.mark.parametrize(
    "name, field, value, message",
    [
        ("mvtcae", "alpha", 1.5, "alpha = 1.5 is out of range"),
        ("mvtcae", "beta", -0.1, "beta = -0.1 is out of range"),
        ("mvae", "random_subsets", -1, "random_subsets = -1 is out of range"),
        ("mvae", "latent_dim", 0, "latent_dim = 0 is out of range"),
        ("mvae", "warmup_epochs", -1.0, "warmup_epochs = -1.0 is out of range"),
        ("mmvaeplus", "networks", "vgg", "networks"),
    ],
)
def test_out_of_range_values_are_one_clear_error(name, field, value, message):
    with pytest.raises(MMBenchError, match=message):
        build_config(MODELS.get(name).Config, {field: value})


def test_conditional_generation_uses_the_subset_product():
    model, batch = build("mvtcae")
    x = batch["x"]
    experts = experts_of(model, x)
    q = model.encode(x, ["m0", "m2"])
    mu, var = poe([experts["m0"], experts["m2"]], prior=False)
    assert torch.allclose(q.mu, mu, atol=1e-5) and torch.allclose(q.logvar.exp(), var, rtol=1e-4)
    assert isinstance(q, Gaussian)


def normal_logpdf(z, mu, var):
    return (-0.5 * (math.log(2 * math.pi) + torch.log(var) + (z - mu) ** 2 / var)).sum(-1)


@pytest.mark.parametrize("estimator", ["elbo", "iwae", "dreg"])
def test_mmvae_loss_is_the_stratified_mixture_bound(estimator):
    k = 3
    model, batch = build("mmvae", estimator=estimator, k=k, beta=1.0)
    x, names = batch["x"], model.modality_names
    experts = experts_of(model, x)
    torch.manual_seed(11)
    total = 0.0
    for m in names:
        mu, var = experts[m]
        z = mu + var.sqrt() * torch.randn(k, 6, 4)
        lw = torch.stack(
            [
                sum(decode_ll(model, x, z[j], d) for d in names)
                + normal_logpdf(z[j], torch.zeros(4), torch.ones(4))
                - (torch.logsumexp(torch.stack([normal_logpdf(z[j], *experts[e]) for e in names]), 0) - math.log(3))
                for j in range(k)
            ]
        )
        if estimator == "elbo":
            total = total + lw.mean(0)
        elif estimator == "iwae":
            total = total + torch.logsumexp(lw, 0) - math.log(k)
        else:  # the DReG surrogate's value: sum_k w~_k log w_k with normalised weights
            total = total + (torch.softmax(lw, 0) * lw).sum(0)
    expected = -(total / 3).mean()
    torch.manual_seed(11)
    assert torch.allclose(model.loss(batch).loss, expected, rtol=1e-5)


def test_mmvae_dreg_gradient_differs_from_iwae_but_both_train():
    grads = {}
    for est in ("iwae", "dreg"):
        model, batch = build("mmvae", estimator=est, k=4)
        torch.manual_seed(5)
        model.loss(batch).loss.backward()
        w = model.parts.encoders["m0"].mu.weight.grad
        assert w is not None and torch.isfinite(w).all()
        grads[est] = w.clone()
    assert not torch.allclose(grads["iwae"], grads["dreg"])


def test_mmvae_rejects_k_below_one_and_unknown_estimators():
    with pytest.raises(MMBenchError, match="k = 0 is out of range"):
        build_config(MODELS.get("mmvae").Config, {"k": 0})
    with pytest.raises(MMBenchError, match="estimator"):
        build_config(MODELS.get("mmvae").Config, {"estimator": "vimco"})


def laplace_draw(loc, scale, shape):
    """Inverse-CDF draw, in the same random-number order as the model's sampler."""
    full = (*shape, *torch.broadcast_shapes(loc.shape, scale.shape))
    u = (torch.rand(full) * 2 - 1).clamp(-1 + 1e-7, 1 - 1e-7)
    return loc - scale * u.sign() * torch.log1p(-u.abs())


def laplace_logpdf(x, loc, scale):
    return (-torch.log(2 * scale) - (x - loc).abs() / scale).sum(-1)


@pytest.mark.parametrize(
    "estimator, k, networks", [("elbo", 1, "resnet"), ("elbo", 2, "resnet"), ("dreg", 2, "resnet"), ("elbo", 1, "conv")]
)
def test_mmvaeplus_loss_uses_private_latents_and_auxiliary_priors(estimator, k, networks):
    model, batch = build("mmvaeplus", estimator=estimator, k=k, private_dim=3, beta=2.5, networks=networks)
    x, names = batch["x"], model.modality_names
    with torch.no_grad():  # distinct learnable auxiliary scales per modality
        for i, m in enumerate(names):
            model.aux_raw_scale[m].copy_(torch.linspace(-1, 1, 3) * (i + 1))
    eta = 1e-6

    def scale(raw):
        return torch.softmax(raw, -1) * raw.shape[-1] + eta

    post = {}
    for m in names:
        lw, rw, lz, rz = model.encoders[m](x[m])
        post[m] = ((lw, scale(rw)), (lz, scale(rz)))
    one = torch.tensor(1.0 + eta)
    torch.manual_seed(21)
    total = 0.0
    for r in names:
        (lw, sw), (lz, sz) = post[r]
        z = laplace_draw(lz, sz, (k,))
        w = laplace_draw(lw, sw, (k,))
        rec = 0.0
        for d in names:
            w_d = w if d == r else laplace_draw(torch.zeros(3), scale(model.aux_raw_scale[d]), w.shape[:-1])
            loc = model.decoders[d](torch.cat([w_d, z], -1).flatten(0, 1))
            rec = rec + laplace_ll(x[d].expand(k, *x[d].shape).flatten(0, 1), loc).view(k, -1)
        mix = torch.logsumexp(torch.stack([laplace_logpdf(z, *post[m][1]) for m in names]), 0) - math.log(3)
        lw_ = rec + 2.5 * (laplace_logpdf(z, 0.0, one) + laplace_logpdf(w, 0.0, one) - mix - laplace_logpdf(w, lw, sw))
        total = total + (lw_.mean(0) if estimator == "elbo" else (torch.softmax(lw_, 0) * lw_).sum(0))
    expected = -(total / 3).mean()
    torch.manual_seed(21)
    got = model.loss(batch).loss
    assert torch.allclose(got, expected, rtol=1e-5)
    got.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.aux_raw_scale.values())


def test_mmvaeplus_cross_generation_depends_only_on_the_given_modalities():
    model, batch = build("mmvaeplus", private_dim=3)
    x = batch["x"]
    other = {**x, "m1": torch.rand_like(x["m1"])}
    a = model.cond_generate(x, ["m0"], ["m2"], generator=torch.Generator().manual_seed(0))
    b = model.cond_generate(other, ["m0"], ["m2"], generator=torch.Generator().manual_seed(0))
    assert torch.equal(a["m2"], b["m2"])


@pytest.mark.parametrize("name", installed_models())
def test_a_modality_the_networks_cannot_take_is_one_clear_error(name):
    from mmbench.modality import Modality

    # captions, masks and attributes have networks now (tests/test_nets.py); a scalar per example has none
    mods = [Modality("image", (3, 28, 28)), Modality("label", (), "attributes", "categorical", classes=10)]
    with pytest.raises(MMBenchError, match=rf"model '{name}' cannot take modality 'label' \(attributes of shape \(\)"):
        MODELS.get(name)(mods)
