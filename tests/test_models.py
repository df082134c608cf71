"""Every registered model: round-trip through a checkpoint; MoPoE's loss against the formula written out."""

import math

import pytest
import torch
from helpers import installed_models, tiny_dataset

from mmbench.config import build_config
from mmbench.errors import MMBenchError
from mmbench.fusion import Gaussian, kl_normal, subsets
from mmbench.registry import MODELS
from mmbench.storage.checkpoint import load_model, save_model
from mmbench.training.trainer import NonFiniteLossError, train

SMALL = {"latent_dim": 8, "batch_size": 16, "epochs": 1}
# Diffusion decoders sample with 1000 Euler-Maruyama steps by default; these tests only need the plumbing.
FAST = {
    "diffmvae": {"sampler_steps": 2, "unet_base": 8, "unet_mults": [1, 2]},
    "diffmvae_star": {"sampler_steps": 2, "unet_base": 8, "unet_mults": [1, 2]},
    "mld": {"sampler_steps": 2, "score_hidden": 16, "score_depth": 1},
    "sbmae": {"sampler_steps": 2, "score_hidden": 16, "score_depth": 1, "score_net": "mlp"},
}


def small(name):
    return {**SMALL, **FAST.get(name, {})}


@pytest.mark.parametrize("name", installed_models())
def test_every_registered_model_round_trips_through_a_checkpoint(name, tmp_path):
    data = tiny_dataset(32)
    cls = MODELS.get(name)
    torch.manual_seed(0)
    model = cls(data.modalities, build_config(cls.Config, small(name))).eval()
    batch = data.batch(torch.arange(8))
    save_model(tmp_path / "model.pt", model)
    loaded, payload = load_model(tmp_path / "model.pt")
    assert payload["model"] == name and (tmp_path / "model.config.json").is_file()
    with torch.no_grad():
        for given in (["m0"], ["m1", "m2"], None):
            a, b = model.encode(batch["x"], given), loaded.encode(batch["x"], given)
            assert torch.equal(a.mu, b.mu) and torch.equal(a.logvar, b.logvar)
        z = torch.randn(4, model.latent_dim)  # 8, or 8 per modality (latent-diffusion models' unimodal latents)
        torch.manual_seed(1)
        a = model.decode(z)
        torch.manual_seed(1)
        b = loaded.decode(z)
        assert all(torch.equal(a[m], b[m]) for m in a)
        g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        a, b = model.generate(4, generator=g1), loaded.generate(4, generator=g2)
        assert all(torch.equal(a[m], b[m]) for m in a)


@pytest.mark.parametrize("name", installed_models())
def test_every_model_trains_a_step_and_generates_every_target_from_every_subset(name):
    data = tiny_dataset(32)
    cls = MODELS.get(name)
    model = cls(data.modalities, build_config(cls.Config, small(name)))
    out = model.loss(data.batch(torch.arange(16)))
    out.loss.backward()
    assert math.isfinite(out.loss.item()) and out.terms
    x = data.batch(torch.arange(4))["x"]
    for given in subsets(model.modality_names):
        gen = model.cond_generate(x, given)
        assert set(gen) == set(model.modality_names) and gen["m0"].shape == (4, 3, 28, 28)


def test_checkpoint_corruption_is_detected(tmp_path):
    data = tiny_dataset(8)
    cls = MODELS.get("mopoe")
    save_model(tmp_path / "m.pt", cls(data.modalities, build_config(cls.Config, SMALL)))
    raw = bytearray((tmp_path / "m.pt").read_bytes())
    raw[-10] ^= 0xFF
    (tmp_path / "m.pt").write_bytes(bytes(raw))
    with pytest.raises(MMBenchError, match="corrupt"):
        load_model(tmp_path / "m.pt")
    with pytest.raises(MMBenchError, match="does not exist"):
        load_model(tmp_path / "none.pt")


def test_mopoe_loss_is_the_subset_mixture_elbo_written_out():
    """-ELBO = mean_b [ -sum_m log Lap(x_m | dec_m(z_b), 0.75) + beta * (1/S) sum_A KL(q_A || N(0,I)) ],
    q_A = prod of experts in A (with N(0, I) for the full set), row b decoding a sample of its block's subset."""
    torch.manual_seed(0)
    data = tiny_dataset(14)
    cls = MODELS.get("mopoe")
    model = cls(data.modalities, build_config(cls.Config, {"latent_dim": 4, "beta": 2.5}))
    batch = data.batch(torch.arange(14))
    x = batch["x"]
    names = model.modality_names
    family = subsets(names)  # 7 subsets, 14 rows: 2 rows per subset, in order

    stacked = model.parts.experts(x, names)
    experts = {m: Gaussian(stacked.mu[i], stacked.logvar[i]) for i, m in enumerate(names)}
    posts = []
    for subset in family:
        prec = sum(1.0 / experts[m].logvar.exp() for m in subset) + (1.0 if len(subset) == 3 else 0.0)
        mu = sum(experts[m].mu / experts[m].logvar.exp() for m in subset) / prec
        posts.append(Gaussian(mu, -prec.log()))
    kl = sum(kl_normal(q) for q in posts) / len(family)

    torch.manual_seed(123)
    eps = torch.randn(1, 14, 4)
    rec = torch.zeros(14)
    for b in range(14):
        q = posts[b // 2]
        z = q.mu[b] + q.std[b] * eps[0, b]
        for m in names:
            loc = model.parts.decode_raw(z[None], [m])[m][0]
            rec[b] += (-(x[m][b] - loc).abs() / 0.75 - math.log(1.5)).sum()
    expected = -(rec - 2.5 * kl).mean()

    torch.manual_seed(123)
    got = model.loss(batch)
    assert torch.allclose(got.loss, expected, rtol=1e-5)


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    data = tiny_dataset(48)
    cls = MODELS.get("mopoe")

    def run(epochs, ckpt):
        torch.manual_seed(0)
        model = cls(data.modalities, build_config(cls.Config, {**SMALL, "epochs": epochs}))
        result = train(model, data, seed=5, checkpoint=ckpt, progress=False, log=lambda s: None)
        return model, result

    straight, _ = run(2, tmp_path / "a.pt")
    _, first = run(1, tmp_path / "b.pt")
    resumed, second = run(2, tmp_path / "b.pt")
    for (k, v), (_, w) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(v, w), k
    assert second.seconds > first.seconds > 0  # training time adds up over the sessions
    _, again = run(2, tmp_path / "b.pt")  # nothing left to train: the time is the recorded one
    assert again.steps == second.steps and again.seconds == second.seconds


def test_a_non_finite_loss_stops_training_with_the_step():
    data = tiny_dataset(16)
    cls = MODELS.get("mopoe")
    model = cls(data.modalities, build_config(cls.Config, SMALL))
    data.x["m0"][3] = float("nan")
    with pytest.raises(NonFiniteLossError, match="at step 0"):
        train(model, data, progress=False)


def test_config_errors_name_the_field():
    cls = MODELS.get("mopoe")
    with pytest.raises(MMBenchError, match="has no field 'betta'"):
        build_config(cls.Config, {"betta": 1.0})
    with pytest.raises(MMBenchError, match=r"beta = -1.0 is out of range"):
        build_config(cls.Config, {"beta": -1.0})
    with pytest.raises(MMBenchError, match="latent_dim must be an integer"):
        build_config(cls.Config, {"latent_dim": "big"})
    with pytest.raises(MMBenchError, match="prior_expert"):
        build_config(cls.Config, {"prior_expert": "sometimes"})


@pytest.mark.parametrize("prior_expert", ["full_set", "all", "none"])
def test_mopoe_and_diffmvae_share_one_subset_mixture(prior_expert):
    """One base (mmbench.mixture) builds the subsets, weights and prior-expert flags of both: they cannot drift."""
    from mmbench.mixture import SubsetMixtureVAE

    data = tiny_dataset(4)
    built = []
    for name in ("mopoe", "diffmvae", "diffmvae_star"):
        cls = MODELS.get(name)
        model = cls(data.modalities, build_config(cls.Config, {**small(name), "prior_expert": prior_expert}))
        assert isinstance(model, SubsetMixtureVAE)
        built.append(model)
    for other in built[1:]:
        assert other.family == built[0].family
        for buffer in ("mask", "weights", "prior_flags"):
            a, b = getattr(built[0], buffer), getattr(other, buffer)
            assert a.dtype == b.dtype and torch.equal(a, b), buffer
