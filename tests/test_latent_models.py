"""SBM-AE and MLD (latentdiff): each stage's loss trains, the contract's shapes, the latent standardisation, and the
models' diffusion parts against closed forms with the exact noise prediction of a Gaussian latent N(MU, COV)
(``mmbench.diffusion.processes.gaussian_eps``, as tests/test_latent_diffusion.py):

  SBM-AE's conditional sampler (replacement + Langevin corrector) recovers N(mu_u|o, cov_u|o);
  MLD's multi-time masked loss has the closed-form expectation 1/2 sum_u (I - S C^-1 S)_uu (times D / unobserved),
  C = M COV M + S^2 at per-group times, observed groups clean; a perturbed denoiser pays exactly its squared offset;
  MLD's masked ("clean") conditional sampler, run through encode, recovers the Gaussian conditional.

Tolerances as tests/test_latent_diffusion.py: 5 standard errors of the sampled statistic plus DISCRETE, the
samplers' own error at these step counts with the exact denoiser.
"""

import dataclasses
import math

import pytest
import torch
from helpers import Crash, crash_before_step, tiny_dataset
from torch import nn

from latentdiff.base import ENCODE_SEED, LatentDiffusionVAE
from latentdiff.mld import MLD, MLDConfig
from latentdiff.nets import UnetMLP
from latentdiff.repaint import repaint_schedule
from latentdiff.sbmae import SBMAE, SBMAEConfig
from mmbench.diffusion import LatentScoreModel
from mmbench.diffusion.processes import gaussian_eps
from mmbench.errors import MMBenchError
from mmbench.fusion import LOGVAR_LIMIT, Gaussian, subsets
from mmbench.modality import Modality
from mmbench.stages import StageConfig
from mmbench.training.options import RunOptions
from mmbench.training.trainer import train

MU = torch.tensor([0.5, -1.0, 2.0])
COV = torch.tensor([[1.0, 0.6, 0.3], [0.6, 1.5, -0.4], [0.3, -0.4, 0.8]])
DISCRETE = 0.03
SMALL = {"latent_dim": 4, "score_hidden": 32, "score_depth": 2, "sampler_steps": 3}
MODELS = {
    "mld": (MLD, MLDConfig, {}),
    "sbmae-vae": (SBMAE, SBMAEConfig, {"variant": "vae", "score_net": "mlp"}),
    "sbmae-rae": (SBMAE, SBMAEConfig, {"variant": "rae", "score_net": "mlp"}),
}


def build(key, modalities=None, **overrides):
    cls, config, preset = MODELS[key]
    torch.manual_seed(0)
    modalities = modalities or tiny_dataset(4).modalities
    return cls(modalities, config(**{**SMALL, **preset, **overrides}))


def fit(model, batch, steps, lr=1e-3):
    opt = torch.optim.Adam(model.parameters(), lr)
    losses = []
    for _ in range(steps):
        out = model.loss(batch)
        assert math.isfinite(out.loss.item()) and out.terms
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    return losses


@pytest.mark.parametrize("key", list(MODELS))
def test_each_stage_trains_only_its_modules_and_its_loss_falls(key):
    data = tiny_dataset(32)
    model = build(key)
    batch = data.batch(torch.arange(16))
    assert model.active_stage == "autoencoders"  # the first stage until begin_stage is called
    losses = fit(model, batch, 12)
    assert sum(losses[-3:]) < sum(losses[:3])
    assert all(p.grad is None for p in model.score.parameters())

    model.end_stage(model.stages[0], data)
    ae_state = {k: v.clone() for k, v in model.autoencoders.state_dict().items()}
    model.zero_grad(set_to_none=True)
    model.begin_stage(model.stages[1])
    losses = fit(model, batch, 25, lr=3e-3)
    assert sum(losses[-5:]) < sum(losses[:5])
    assert all(p.grad is None for p in model.autoencoders.parameters())
    assert all(torch.equal(v, model.autoencoders.state_dict()[k]) for k, v in ae_state.items())


def test_the_autoencoder_losses_are_the_unimodal_objectives_written_out():
    """MLD: -sum_m log Laplace(x_m | dec_m(enc_m(x_m)), 0.75). SBM-VAE: sum_m [-log N(x_m | dec_m(z_m), 1/2)
    + 0.5 KL(q(z_m | x_m) || N(0, I))], z_m = mu_m + std_m eps_m. SBM-RAE: sum_m [-log N(x_m | dec_m(mu_m + 0.01
    eps_m), 1/2) + 1e-5 ||mu_m||^2]. Each the batch mean; eps drawn in modality order."""
    batch = tiny_dataset(6).batch(torch.arange(6))
    x = batch["x"]

    def laplace(x, loc):
        return (-(x - loc).abs() / 0.75 - math.log(1.5)).flatten(1).sum(1)

    def normal(x, loc):  # variance 1/2: the squared error, as SBM-AE's MSE (sum over pixels)
        return (-((x - loc) ** 2) - 0.5 * math.log(math.pi)).flatten(1).sum(1)

    for key in MODELS:
        model = build(key)
        enc, dec = model.autoencoders.encoders, model.autoencoders.decoders
        q = {m: enc[m](x[m]) for m in model.modality_names}
        torch.manual_seed(5)
        eps = {m: torch.randn_like(q[m].mu) for m in model.modality_names}
        total = 0.0
        for m, (mu, logvar) in q.items():
            if key == "mld":
                total = total - laplace(x[m], dec[m](mu))
            elif key == "sbmae-vae":
                kl = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(1)
                total = total - normal(x[m], dec[m](mu + (0.5 * logvar).exp() * eps[m])) + 0.5 * kl
            else:
                total = total - normal(x[m], dec[m](mu + 0.01 * eps[m])) + 1e-5 * (mu**2).sum(1)
        torch.manual_seed(5)
        assert torch.allclose(model.loss(batch).loss, total.mean(), rtol=1e-5), key


def test_the_stages_name_modules_and_config_fields_the_models_have():
    for cls, config, _ in MODELS.values():
        assert [s.name for s in cls.stages] == ["autoencoders", "score"]
        model = build("mld") if cls is MLD else build("sbmae-vae")
        fields = {f.name for f in dataclasses.fields(config)}
        for stage in cls.stages:
            assert all(isinstance(getattr(model, m), nn.Module) for m in stage.modules)
            assert isinstance(getattr(config(), stage.name), StageConfig)
            assert set(stage.depends) <= fields, set(stage.depends) - fields
        assert cls.stages[0].reusable and not cls.stages[1].reusable
    assert {"variant", "beta", "rae_beta"} <= set(SBMAE.stages[0].depends)


@pytest.mark.parametrize("key", list(MODELS))
def test_the_contract_methods_give_the_right_shapes(key):
    data = tiny_dataset(8)
    model = build(key, latent_dims=(2, 3, 4)).eval()
    x = data.batch(torch.arange(5))["x"]
    assert model.latent_dim == 9
    cols = model.group_slices()
    assert [cols[m] for m in model.modality_names] == [slice(0, 2), slice(2, 5), slice(5, 9)]
    means = model.latent_means(x, model.modality_names)
    full = model.encode(x)
    assert full.mu.shape == full.logvar.shape == (5, 9) and torch.equal(full.mu, means)
    sub = model.encode(x, ["m2", "m0"])
    assert torch.equal(sub.mu[:, :2], means[:, :2]) and torch.equal(sub.mu[:, 5:], means[:, 5:])
    assert not torch.equal(sub.mu[:, 2:5], means[:, 2:5])  # drawn from the score model given m0, m2
    again = model.encode(x, ["m0", "m2"])  # a function of x: the draw's noise has a fixed seed
    assert torch.equal(sub.mu, again.mu)
    drawn = model.encode(x, ["m0", "m2"], generator=torch.Generator().manual_seed(ENCODE_SEED + 1))
    assert not torch.equal(drawn.mu[:, 2:5], sub.mu[:, 2:5])
    floor = torch.full((5, 3), -LOGVAR_LIMIT)
    assert torch.equal(sub.logvar[:, 2:5], floor)  # a drawn latent is a point
    if model.deterministic:
        assert torch.equal(sub.logvar, torch.full((5, 9), -LOGVAR_LIMIT))
    else:  # a VAE's observed latents carry their posterior variance
        assert torch.equal(sub.logvar[:, :2], model.autoencoders.posteriors(x, ["m0"])["m0"].logvar)
    out = model.decode(torch.randn(7, 9), ["m1"])
    assert set(out) == {"m1"} and out["m1"].shape == (7, 3, 28, 28)
    z = model.sample_prior(6, generator=torch.Generator().manual_seed(0))
    assert z.shape == (6, 9) and torch.isfinite(z).all()
    assert all(
        v.shape == (6, 3, 28, 28) for v in model.generate(6, generator=torch.Generator().manual_seed(0)).values()
    )
    for given in subsets(model.modality_names):
        gen = model.cond_generate(x, given, ["m0", "m2"], generator=torch.Generator().manual_seed(1))
        assert set(gen) == {"m0", "m2"} and all(v.shape == (5, 3, 28, 28) for v in gen.values())
    # the observed modalities are decoded from their own latents
    gen = model.cond_generate(x, ["m0"], ["m0"], generator=torch.Generator().manual_seed(1))
    assert torch.allclose(gen["m0"], model.decode(means, ["m0"])["m0"])


def test_end_stage_fits_the_standardisation_on_the_training_encodings_deterministically():
    data = tiny_dataset(300)  # two encoding batches
    model = build("mld").eval()
    model.end_stage(model.stages[1], data)  # the score stage's end changes nothing
    assert torch.equal(model.autoencoders.mean, torch.zeros(12)) and torch.equal(model.autoencoders.std, torch.ones(12))
    model.train()
    model.end_stage(model.stages[0], data)
    assert model.training and model.autoencoders.training  # modes restored
    z = model.latent_means(data.batch(torch.arange(300))["x"], model.modality_names)
    assert torch.allclose(model.autoencoders.mean, z.mean(0), atol=1e-5)
    assert torch.allclose(model.autoencoders.std, z.std(0), rtol=1e-4)
    first = model.autoencoders.mean.clone(), model.autoencoders.std.clone()
    torch.manual_seed(123)  # no randomness involved
    model.end_stage(model.stages[0], data)
    assert torch.equal(first[0], model.autoencoders.mean) and torch.equal(first[1], model.autoencoders.std)
    normal = model.autoencoders.normalise(z)
    assert normal.mean(0).abs().max() < 1e-4 and torch.allclose(model.autoencoders.denormalise(normal), z, atol=1e-5)
    sbm = build("sbmae-vae")  # SBM-AE diffuses the raw latents (standardise off in its preset)
    sbm.end_stage(sbm.stages[0], data)
    assert torch.equal(sbm.autoencoders.mean, torch.zeros(12))


# -- closed forms ---------------------------------------------------------------------------------------------


class Exact(nn.Module):
    """The exact noise prediction of N(mu, cov) at a time per dimension (per group: each group one dimension or
    more; a (N,) time is every dimension's), plus an optional constant offset on every dimension."""

    def __init__(self, model, mu=MU, cov=COV, offset=0.0):
        super().__init__()
        self.groups, self.offset = model.score.groups, offset
        self.eps = gaussian_eps(mu, cov, model.score.process)

    def forward(self, x, t, *, time_scale):
        if t.dim() == 2:
            t = t.repeat_interleave(torch.tensor(self.groups), dim=1)
        return self.eps(x, t) + self.offset


class Identity(nn.Module):
    """An encoder whose latent is its input (a deterministic point)."""

    def forward(self, x):
        return Gaussian(x, torch.zeros_like(x))


def latent_modalities(sizes):
    return [Modality(f"m{i}", (d,), "attributes", "normal") for i, d in enumerate(sizes)]


def conditional(value, o, u, mu=MU, cov=COV):
    """The Gaussian conditional of dimensions u given x_o = value[o]."""
    gain = cov[u][:, o] @ torch.linalg.inv(cov[o][:, o])
    return mu[u] + gain @ (value[o] - mu[o]), cov[u][:, u] - gain @ cov[o][:, u]


def assert_gaussian(x, mean, cov):
    n = x.shape[0]
    se_mean = (cov.diagonal() / n).sqrt()
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n).sqrt()
    assert ((x.mean(0) - mean).abs() <= 5 * se_mean + DISCRETE).all(), (x.mean(0), mean)
    assert ((torch.cov(x.T) - cov).abs() <= 5 * se_cov + DISCRETE).all(), (torch.cov(x.T), cov)


def test_sbmae_conditional_sampler_recovers_the_gaussian_conditional_with_the_exact_score():
    """Two groups (sizes 1 and 2) of N(MU, COV), correlated; observed m0 = 1.2 (then m1 = (-0.5, 1.5)): the drawn
    group follows the conditional. The replacement sampler is exact only in the limit of many steps, and only for
    observations the joint finds typical: at the preset's 100 predictor-corrector steps the first mean is ~0.09
    off, at 800 to 1000 (one corrector step each, the preset's) ~0.01; an observation 4.5 standard deviations out
    (m1 = (0, -2)) stays ~0.15 off at 1000 and at 3000 steps."""
    n = 6_000
    model = build("sbmae-rae", modalities=latent_modalities((1, 2)), latent_dim=1, latent_dims=(1, 2))
    assert (model.score.process.beta_min, model.score.process.beta_max) == (1.0, 5.0)  # the preset's process
    model.score.net = Exact(model)
    model.score.latent_config = dataclasses.replace(model.score.latent_config, sampler_steps=800)
    for names, value, o, u in [
        (["m0"], torch.tensor([1.2, 0.0, 0.0]), [0], [1, 2]),
        (["m1"], torch.tensor([0.0, -0.5, 1.5]), [1, 2], [0]),
    ]:
        z = model.sample_latents(value.expand(n, 3), names, n, generator=torch.Generator().manual_seed(0))
        assert torch.equal(z[:, o], value[o].expand(n, len(o)))
        assert_gaussian(z[:, u], *conditional(value, o, u))


def test_mld_multi_time_loss_with_the_exact_denoiser_is_its_closed_form_expectation():
    """Groups m0, m1, m2 of one dimension each; m0 observed (clean, time 0), m1 and m2 at times 0.3 and 0.7. With
    the exact denoiser eps* = E[eps | x_t] the per-row loss has expectation (D / 2) / 2 * sum_u Var(eps_u | x_t) =
    3/4 sum_u (I - S C^-1 S)_uu, C = M COV M + S^2 (m = 1, s = 0 on the observed group); a denoiser off by delta
    on every dimension pays 3/4 * 2 delta^2 more (the cross term vanishes: E[eps - eps* | x_t] = 0)."""
    n = 40_000
    model = build("mld", modalities=latent_modalities((1, 1, 1)), latent_dim=1)
    z = MU + torch.randn(n, 3, generator=torch.Generator().manual_seed(0)) @ torch.linalg.cholesky(COV).T
    t = torch.tensor([0.5, 0.3, 0.7]).expand(n, 3)  # m0's 0.5 is replaced by 0: it is observed
    m, s = model.score.process.marginal(torch.tensor([0.0, 0.3, 0.7]))
    c = m[:, None] * COV * m[None] + torch.diag(s**2)
    posterior = torch.eye(3) - torch.diag(s) @ torch.linalg.inv(c) @ torch.diag(s)
    scale = 3 / 2  # D / unobserved dimensions
    expected = scale * 0.5 * posterior.diagonal()[1:].sum()
    losses = {}
    for offset in (0.0, 0.1):
        model.score.net = Exact(model, offset=offset)
        losses[offset] = model.masked_loss(z, t, ["m0"])
    for offset, loss in losses.items():
        closed = expected + scale * 0.5 * 2 * offset**2
        assert abs(loss.mean() - closed) <= 5 * loss.std() / math.sqrt(n), (offset, loss.mean(), closed)
    assert losses[0.0].mean() < losses[0.1].mean()
    # nothing observed: the joint loss, every group at its own time, no rescaling
    model.score.net = Exact(model)
    joint = model.masked_loss(z, t, ())
    m, s = model.score.process.marginal(torch.tensor([0.5, 0.3, 0.7]))
    c = m[:, None] * COV * m[None] + torch.diag(s**2)
    posterior = torch.eye(3) - torch.diag(s) @ torch.linalg.inv(c) @ torch.diag(s)
    assert abs(joint.mean() - 0.5 * posterior.diagonal().sum()) <= 5 * joint.std() / math.sqrt(n)


def test_mld_score_loss_draws_the_joint_or_one_proper_subset_per_batch():
    model = build("mld", modalities=latent_modalities((1, 1, 1)), latent_dim=1)
    assert model.conditioning == [("m0",), ("m1",), ("m2",), ("m0", "m1"), ("m0", "m2"), ("m1", "m2")]
    seen = []
    model.masked_loss = lambda z, t, observed: seen.append(observed) or torch.zeros(z.shape[0])
    torch.manual_seed(0)
    z = torch.zeros(4, 3)
    for _ in range(400):
        model.score_loss(z)
    conditional = [o for o in seen if o]
    assert 0.14 < len(conditional) / len(seen) < 0.26  # cond_rate 0.2
    assert set(conditional) == set(model.conditioning)


@pytest.mark.parametrize(
    "standardise,sampler",
    [(False, "reverse"), (True, "reverse"), (True, "repaint")],
    ids=["raw", "standardised", "repaint"],
)
def test_mld_masked_sampler_through_encode_recovers_the_gaussian_conditional(standardise, sampler):
    """encode(x, subset) with identity encoders: the observed latent kept, the others drawn by the model's masked
    sampler (Euler-Maruyama on 300 steps, or RePaint's schedule on a 100-step grid with 2 x 10-step jumps back)
    from the exact denoiser of the standardised latent N((MU - mean) / std, COV / std std^T)."""
    n = 10_000
    steps = {"reverse": {"sampler_steps": 300}, "repaint": {"sampler_steps": 100, "jump_n_sample": 3}}[sampler]
    model = build(
        "mld", modalities=latent_modalities((1, 1, 1)), latent_dim=1, standardise=standardise, sampler=sampler, **steps
    )
    for m in model.modality_names:
        model.autoencoders.encoders[m] = Identity()
    if standardise:
        model.autoencoders.mean.copy_(torch.tensor([1.0, -0.5, 1.5]))
        model.autoencoders.std.copy_(torch.tensor([2.0, 1.0, 0.5]))
    mean, std = model.autoencoders.mean, model.autoencoders.std
    model.score.net = Exact(model, (MU - mean) / std, COV / (std[:, None] * std[None]))
    value = torch.tensor([1.2, 0.0, 0.0])
    x = {"m0": value[:1].expand(n, 1), "m1": torch.zeros(n, 1), "m2": torch.zeros(n, 1)}
    z = model.encode(x, ["m0"], generator=torch.Generator().manual_seed(2)).mu
    assert torch.equal(z[:, 0], value[0].expand(n))
    assert_gaussian(z[:, 1:], *conditional(value, [0], [1, 2]))


# -- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,message",
    [
        (
            lambda: MLDConfig(process="ddpm", sampler="reverse", sampler_steps=2000),
            r"MLDConfig.sampler_steps = 2000 is out of range; allowed: \[1, 1000\]",
        ),
        (lambda: MLDConfig(process="ddpm"), r"MLDConfig.sampler = 'repaint' walks the VP-SDE"),
        (lambda: MLDConfig(sampler="gibbs"), r"MLDConfig.sampler = 'gibbs'; allowed: 'repaint', 'reverse'"),
        (lambda: SBMAEConfig(sampler_steps=0), r"SBMAEConfig.sampler_steps = 0 is out of range"),
        (lambda: SBMAEConfig(variant="gan"), r"SBMAEConfig.variant = 'gan'; allowed: 'vae', 'rae'"),
        (lambda: MLDConfig(cond_rate=1.5), r"MLDConfig.cond_rate = 1.5 is out of range"),
        (lambda: MLDConfig(likelihood="bernoulli"), r"MLDConfig.likelihood = 'bernoulli'; allowed"),
        (lambda: build("mld", latent_dims=(2, 2)), r"latent_dims = \[2, 2\] gives 2 sizes for 3 modalities"),
        (lambda: build("mld").encode(tiny_dataset(2).batch(torch.arange(2))["x"], ["m9"]), r"subset \['m9'\]"),
        (
            lambda: build("sbmae-vae").cond_generate(tiny_dataset(2).batch(torch.arange(2))["x"], ["m0", "x"]),
            r"subset \['m0', 'x'\] must name one or more of the modalities \['m0', 'm1', 'm2'\]",
        ),
        (lambda: build("mld").decode(torch.zeros(2, 5)), r"z has shape \(2, 5\), expected \(N, 12\)"),
    ],
)
def test_bad_input_is_one_line(call, message):
    with pytest.raises(MMBenchError, match=message):
        call()


def test_the_papers_score_networks_take_the_models_latents():
    """MLD's UnetMLP (a time per modality, zero output at initialisation) and SBM-AE's 2-D UNet over M x 8 x 8."""
    data = tiny_dataset(8)
    batch = data.batch(torch.arange(4))
    mld = build("mld", score_net="unet_mlp", score_hidden=32, score_depth=2)
    assert mld.score.eps(torch.randn(3, 12), torch.rand(3, 3)).abs().max() == 0
    sbm = build("sbmae-vae", latent_dim=64, score_net="unet", score_hidden=8)
    assert sbm.score.net.shape == (3, 8, 8)
    for model in (mld, sbm):
        model.begin_stage(model.stages[1])
        fit(model, batch, 2)
        assert model.eval().sample_prior(2, generator=torch.Generator().manual_seed(0)).shape == (2, model.latent_dim)
    with pytest.raises(MMBenchError, match=r"score_net = 'unet' needs every modality's latent size to be one square"):
        build("sbmae-vae", latent_dim=8, score_net="unet")
    with pytest.raises(MMBenchError, match=r"a 4 x 4 latent grid cannot be halved 3 times"):
        build("sbmae-vae", latent_dim=16, score_net="unet")


def _train_staged(key, data, checkpoint, crash=None):
    """``key``'s small model through both stages (2 epochs each, batch 8), crashing at (stage, step) if given."""
    budget = StageConfig(epochs=2, lr=1e-3, batch_size=8)
    model = build(key, modalities=data.modalities, autoencoders=budget, score=budget)
    if crash is not None:
        crash_before_step(model, crash)
    options = RunOptions(device="cpu", checkpoint_every=2, tensorboard=False)
    train(model, data, seed=3, checkpoint=checkpoint, options=options, progress=False, log=lambda s: None)
    return model


@pytest.mark.parametrize("key", ["mld", "sbmae-vae"])
@pytest.mark.parametrize("crash", [("score", 0), ("score", 3)])
def test_a_latent_model_stopped_at_the_boundary_or_in_its_score_stage_resumes_bit_identical(tmp_path, key, crash):
    """The models themselves (their draws of times, subsets and noise) under tests/test_stages.py's resume check."""
    data = tiny_dataset(24)
    straight = _train_staged(key, data, tmp_path / "a" / "c.pt")
    with pytest.raises(Crash):
        _train_staged(key, data, tmp_path / "b" / "c.pt", crash=crash)
    resumed = _train_staged(key, data, tmp_path / "b" / "c.pt")
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mlds_unet_mlp_learns_a_gaussian_denoiser():
    """MLD's UnetMLP (narrow) on a rank-2 Gaussian: 300 Adam steps close most of the gap between the zero noise
    prediction and the exact one (gaussian_eps) on held-out draws, so its output depends on its input."""
    torch.manual_seed(0)
    factors = torch.randn(8, 2)
    cov = factors @ factors.T + 0.01 * torch.eye(8)
    dist = torch.distributions.MultivariateNormal(torch.zeros(8), cov)
    fitted, held = dist.sample((4000,)), dist.sample((2000,))
    score = LatentScoreModel(8, MLDConfig().score_config(), groups=(4, 4), net=UnetMLP(8, width=64, groups=2))

    def held_out(eps):
        return score.process.loss(eps, held, generator=torch.Generator().manual_seed(2)).mean().item()

    zero, exact = held_out(lambda x, t: torch.zeros_like(x)), held_out(gaussian_eps(torch.zeros(8), cov, score.process))
    opt, draws = torch.optim.Adam(score.parameters(), 1e-3), torch.Generator().manual_seed(1)
    for _ in range(300):
        loss = score.loss(fitted[torch.randint(4000, (64,), generator=draws)], generator=draws).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        trained = held_out(score.eps)
    assert exact < trained and (zero - trained) / (zero - exact) > 0.6, (zero, trained, exact)


def test_the_repaint_schedule_is_mlds():
    """MLD's preset (grid 250, jumps of 10, 10 times): 4,571 grid points, 2,410 reverse and 2,160 forward steps."""
    schedule = repaint_schedule(250, 10, 10)
    steps = [b - a for a, b in zip(schedule, schedule[1:])]
    assert (len(schedule), steps.count(-1), steps.count(1)) == (4571, 2410, 2160)
    assert schedule[0] == 250 and schedule[-1] == 0 and set(steps) == {-1, 1}
    assert repaint_schedule(5, 10, 10) == [5, 4, 3, 2, 1, 0]  # jumps longer than the grid: none
    assert repaint_schedule(4, 2, 2) == [4, 3, 2, 1, 2, 3, 2, 1, 0]


def test_a_ddpm_sampler_in_the_schedule_samples():
    model = build("mld", process="ddpm", sampler="reverse", sampler_steps=1000).eval()
    model.score.latent_config = dataclasses.replace(model.score.latent_config, sampler_steps=4)
    assert model.sample_prior(2).shape == (2, 12)
    assert isinstance(model, LatentDiffusionVAE)
