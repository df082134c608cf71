"""The score prior's plumbing: fitting lowers its loss, samples have the latent shape, save/load round-trips.

Whether its samples match encoder latents better than N(0, I) is not asserted here: with the few hundred
steps a CPU test affords, the DDPM is undertrained and its DDIM samples can be worse than N(0, I) (see the
closing note of the Diff-MVAE issue); that check needs a properly trained prior.
"""

import torch

from diffmvae.prior import ScorePrior, ScorePriorConfig


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
