"""The score prior's plumbing: fitting lowers its loss, samples have the latent shape, save/load round-trips.

Whether its samples match encoder latents better than N(0, I) is not asserted here: with the few hundred
steps a CPU test affords, the DDPM is undertrained and its DDIM samples can be worse than N(0, I) (see the
closing note of the Diff-MVAE issue); that check needs a properly trained prior.
"""

import pytest
import torch

from diffmvae.prior import ScorePrior, ScorePriorConfig
from mmbench.errors import MMBenchError


def test_fitting_lowers_the_loss_and_the_prior_round_trips(tmp_path):
    g = torch.Generator().manual_seed(0)
    d = 8
    latents = torch.randn(1000, d, generator=g) * 0.5 + torch.linspace(-1, 1, d)
    prior = ScorePrior(d, ScorePriorConfig(base=8, mults=(1, 2), steps=120, batch_size=64, lr=1e-3))
    losses = prior.fit(latents, progress=False)
    assert sum(losses[-20:]) < sum(losses[:20])
    assert torch.allclose(prior.mean, latents.mean(0)) and torch.allclose(prior.std, latents.std(0))
    a = prior.sample(5, generator=torch.Generator().manual_seed(2))
    assert a.shape == (5, d) and torch.isfinite(a).all()
    prior.save(tmp_path / "prior.pt")
    again = ScorePrior.load(tmp_path / "prior.pt")
    assert torch.allclose(a, again.sample(5, generator=torch.Generator().manual_seed(2)))


def _old_score_prior(latents, d, config, *, init_seed, fit_seed, sample_seed):
    """The score prior as it was before it moved onto mmbench.diffusion.LatentScoreModel: the 1-D UNet, the DDPM
    functions called directly; returns its losses and samples."""
    from diffmvae.diffusion import DDPMSchedule, ddpm_loss, sample_ddim
    from diffmvae.unet import UNet, UNetConfig

    torch.manual_seed(init_seed)
    net = UNet(UNetConfig(dims=1, channels=1, base=config.base, mults=tuple(config.mults)))
    schedule = DDPMSchedule.linear()
    mean, std = latents.mean(0), latents.std(0).clamp_min(1e-6)
    data = (latents - mean) / std
    g = torch.Generator().manual_seed(fit_seed)
    torch.manual_seed(fit_seed)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    losses = []
    for _ in range(config.steps):
        rows = torch.randint(0, len(data), (min(config.batch_size, len(data)),), generator=g)
        loss = ddpm_loss(lambda x, t: net(x, t), data[rows], schedule, generator=g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    net.eval()
    gs = torch.Generator().manual_seed(sample_seed)
    with torch.no_grad():
        noise = torch.randn(4, d, generator=gs)
        x = sample_ddim(lambda x, t: net(x, t), noise, schedule, steps=config.sampler_steps, generator=gs)
    return losses, x * std + mean


def test_the_prior_on_the_latent_score_model_is_bit_identical_to_the_direct_ddpm_code():
    """Same seeds, same losses and samples, bit for bit, as the DDPM functions called directly; and the values
    recorded from that code (one thread; tolerances cover other CPUs' float rounding, samples being amplified by
    DDIM's 1/sqrt(abar_T) ~ 150 on an undertrained net)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        d = 6
        latents = torch.randn(300, d, generator=torch.Generator().manual_seed(0)) * 0.7 + torch.linspace(-2, 2, d)
        config = ScorePriorConfig(base=8, mults=(1, 2), steps=25, batch_size=64, lr=1e-3, sampler_steps=20)
        torch.manual_seed(11)
        prior = ScorePrior(d, config)
        losses = prior.fit(latents, seed=3, progress=False)
        sample = prior.sample(4, generator=torch.Generator().manual_seed(5))
        old_losses, old_sample = _old_score_prior(latents, d, config, init_seed=11, fit_seed=3, sample_seed=5)
    finally:
        torch.set_num_threads(threads)
    assert losses == old_losses and torch.equal(sample, old_sample)
    assert set(prior.state_dict()) == {"mean", "std"} | {f"net.{k}" for k in prior.net.state_dict()}
    assert abs(sum(losses) - 48.90781831741333) < 1e-6 * 48.9
    assert losses[-1] == pytest.approx(float.fromhex("0x1.9fbc620000000p+0"), rel=1e-6)
    assert sample.double().sum().item() == pytest.approx(271.4304618835449, rel=1e-4)
    assert sample.double().abs().sum().item() == pytest.approx(1378.2212371826172, rel=1e-4)


def test_ddim_steps_beyond_the_schedule_are_refused_before_fitting():
    with pytest.raises(
        MMBenchError, match=r"ScorePriorConfig.sampler_steps = 2000 is out of range; allowed: \[1, 1000\]"
    ):
        ScorePriorConfig(sampler_steps=2000)
