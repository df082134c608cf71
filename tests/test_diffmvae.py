"""Diff-MVAE and Diff-MVAE*: eq. 23 composed from the subset mixture and the diffusion losses."""

import pytest
import torch
from helpers import tiny_dataset

from mmbench.config import build_config
from mmbench.errors import MMBenchError
from mmbench.fusion import Gaussian, kl_normal, product_of_experts, stratified_assignment, subsets
from mmbench.modality import Modality
from mmbench.registry import MODELS

FAST = {"latent_dim": 6, "sampler_steps": 3, "unet_base": 8, "unet_mults": [1, 2], "beta": 0.5}


def build(name, **cfg):
    torch.manual_seed(0)
    data = tiny_dataset(7)
    cls = MODELS.get(name)
    return cls(data.modalities, build_config(cls.Config, {**FAST, **cfg})), data.batch(torch.arange(7))


@pytest.mark.parametrize("name", ["diffmvae", "diffmvae_star"])
def test_loss_is_eq23_with_diffusion_surrogates_in_place_of_log_likelihoods(name):
    # m0 and m1 diffusion decoders, m2 feed-forward (Laplace): both kinds of term in one objective.
    model, batch = build(name, diffusion=["m0", "m1"], free_bits=0.0)  # eq. 23 exactly: no KL floor
    x, names = batch["x"], model.modality_names
    family = subsets(names)
    e = model.experts(x, names)
    posts = [
        product_of_experts(
            [Gaussian(e.mu[names.index(m)], e.logvar[names.index(m)]) for m in s], prior_expert=len(s) == 3
        )
        for s in family
    ]
    kl = sum(kl_normal(q) for q in posts) / len(family)
    assigned = stratified_assignment(7, torch.full((7,), 1 / 7))  # 7 rows, 7 subsets: one each
    torch.manual_seed(5)
    eps = torch.randn(1, 7, 6)
    z = torch.stack([posts[s].mu[b] + posts[s].std[b] * eps[0, b] for b, s in enumerate(assigned.tolist())])
    terms = 0.0
    for m in names:
        if m in ("m0", "m1"):
            terms = terms - model.diffusion_loss(m, x[m], z) / (3 * 28 * 28)
        else:
            loc = model.decoders[m](z)
            terms = terms + (-(x[m] - loc).abs() / 0.75 - torch.log(torch.tensor(1.5))).flatten(1).sum(1) / (
                3 * 28 * 28
            )
    expected = -(terms - 0.5 * kl).mean()
    torch.manual_seed(5)
    assert torch.allclose(model.loss(batch).loss, expected, rtol=1e-5)


def test_kl_warmup_starts_from_zero_and_reaches_beta():
    model, batch = build("diffmvae_star", warmup_epochs=1)
    plain, _ = build("diffmvae_star", beta=0.0)
    model.train()

    def loss(m, step):
        m.begin_step(step, 4)
        torch.manual_seed(3)
        return m.loss(batch).loss

    assert torch.allclose(loss(model, 0), loss(plain, 0))
    full, _ = build("diffmvae_star")
    assert torch.allclose(loss(model, 4), loss(full, 4)) and not torch.allclose(loss(model, 2), loss(full, 2))


def test_the_encoder_learns_through_the_diffusion_loss():
    model, batch = build("diffmvae_star")  # every modality has a diffusion decoder
    assert model.diffusion_names == ["m0", "m1", "m2"]
    model.loss(batch).loss.backward()
    grad = model.encoders["m0"].mu.weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["diffmvae", "diffmvae_star"])
def test_generation_samples_images_conditioned_on_the_observed_modalities(name):
    model, batch = build(name)
    out = model.cond_generate(batch["x"], ["m0"], ["m1"], generator=torch.Generator().manual_seed(0))
    assert out["m1"].shape == (7, 3, 28, 28) and out["m1"].min() >= 0 and out["m1"].max() <= 1
    other = {**batch["x"], "m0": torch.rand_like(batch["x"]["m0"])}
    again = model.cond_generate(other, ["m0"], ["m1"], generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(out["m1"], again["m1"])
    assert model.generate(2, generator=torch.Generator().manual_seed(0))["m2"].shape == (2, 3, 28, 28)


def test_a_non_image_modality_marked_for_diffusion_is_refused():
    mods = [Modality("image", (3, 28, 28)), Modality("attrs", (18,), "attributes", "bernoulli")]
    cls = MODELS.get("diffmvae")
    with pytest.raises(MMBenchError, match="modality 'attrs' is marked for a diffusion decoder but is a attributes"):
        cls(mods, build_config(cls.Config, {**FAST, "diffusion": ["image", "attrs"]}))
    model = cls(mods, build_config(cls.Config, FAST))  # "*" takes only the images
    assert model.diffusion_names == ["image"]


def test_sampler_steps_below_one_are_refused():
    with pytest.raises(MMBenchError, match="sampler_steps = 0 is out of range"):
        build_config(MODELS.get("diffmvae_star").Config, {"sampler_steps": 0})


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "conditioning",
            "film",
            "DiffMVAEStarConfig.conditioning = 'film': use one of embedding, scale_shift, spatial",
        ),
        ("weighting", "snr", "DiffMVAEStarConfig.weighting = 'snr'; allowed: 'variance', 'likelihood', 'high_noise'"),
        ("free_bits", -0.1, "free_bits = -0.1 is out of range"),
        ("logvar_offset", -25.0, "logvar_offset = -25.0 is out of range; allowed: \\[-20.0, 20.0\\]"),
    ],
)
def test_bad_diffusion_settings_are_one_line(field, value, message):
    with pytest.raises(MMBenchError, match=message):
        build_config(MODELS.get("diffmvae_star").Config, {field: value})


@pytest.mark.parametrize(
    "name, conditioning, weighting",
    [
        ("diffmvae_star", "scale_shift", "high_noise"),
        ("diffmvae", "spatial", "likelihood"),
        ("diffmvae_star", "scale_shift+spatial", "variance"),
    ],
)
def test_every_conditioning_and_weighting_trains_and_reaches_the_encoder(name, conditioning, weighting):
    model, batch = build(name, conditioning=conditioning, weighting=weighting, pad_to=32)
    out = model.loss(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert model.encoders["m0"].mu.weight.grad.abs().sum() > 0
    sample = model.cond_generate(batch["x"], ["m0"], ["m1"], generator=torch.Generator().manual_seed(0))
    assert sample["m1"].shape == (7, 3, 28, 28)


def test_free_bits_floor_each_dimension_of_the_kl():
    q = Gaussian(torch.tensor([[0.0, 3.0]]), torch.zeros(1, 2))  # per-dimension KL: 0 and 4.5 nats
    assert torch.allclose(kl_normal(q), torch.tensor([4.5]))
    assert torch.allclose(kl_normal(q, free_bits=0.5), torch.tensor([5.0]))
    mu = torch.tensor([[0.1, 3.0]], requires_grad=True)
    kl_normal(Gaussian(mu, torch.zeros(1, 2)), free_bits=0.5).sum().backward()
    assert mu.grad[0, 0] == 0 and mu.grad[0, 1] == 3.0  # below the floor: no pull towards the prior
    model, batch = build("diffmvae_star", free_bits=100.0)
    assert model.loss(batch).terms["kl"] == pytest.approx(100.0 * 6, rel=1e-6)  # every dimension at the floor


def test_logvar_offset_shifts_every_expert_and_keeps_gradients():
    plain, batch = build("diffmvae_star")
    shifted, _ = build("diffmvae_star", logvar_offset=-6.0)
    shifted.load_state_dict(plain.state_dict())
    x, names = batch["x"], plain.modality_names
    a, b = plain.experts(x, names), shifted.experts(x, names)
    assert torch.equal(a.mu, b.mu) and torch.allclose(b.logvar, a.logvar - 6.0)
    q = shifted.encode(x, ["m0"])  # the posterior of one expert and the prior expert narrows with it
    assert q.std.max() < plain.encode(x, ["m0"]).std.min()
    shifted.loss(batch).loss.backward()
    assert shifted.encoders["m0"].logvar.weight.grad.abs().sum() > 0
