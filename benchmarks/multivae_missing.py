"""mmbench against MultiVae on batches with missing modalities: loss and gradients on shared weights (issue 21).

    bash benchmarks/setup_multivae.sh                      # once: the peer's own environment
    benchmarks/.venv-multivae/bin/python benchmarks/multivae_missing.py [--batch 16] [--modalities 3]

For MoPoE, MVAE, MMVAE, MVTCAE and MMVAE+: mmbench's model with its default networks (PolyMNIST-shaped data,
small latents), and MultiVae's model on deep copies of the very same modules (same weights). One masked batch
(every row observes one modality at least; full rows too): mmbench gets the missing rows as NaN with
``batch["mask"]``, MultiVae an ``IncompleteDataset``-style input (``DatasetOutput(data=..., masks=...)``) with
them zero-filled, as its ``IncompleteDataset`` expects. Both run in float64 (torch's default dtype), so the
differences are the arithmetic's, not float32 rounding.

The random draws are made equal, not approximated: every reparameterised sample on both sides takes its standard
noise from one seeded stream, in the order both codes draw (Gaussian: torch.distributions.Normal.rsample on
MultiVae's side, mmbench.fusion.Gaussian.rsample on ours; Laplace likewise), MoPoE's per-row subset (MultiVae's
``random_mixture_component_selection``, mmbench's ``row_assignment``) is one fixed valid draw given to both, and
MVAE's random subsets are the same subsets (MultiVae's numpy ``choice`` returns mmbench's draw); MVAE's noise for
subset A on MultiVae's side is mmbench's (S, B, D) noise at A's available rows (MultiVae samples only those).

Stated relations: MoPoE, MVAE, MVTCAE losses are batch means on both sides (equal); MultiVae's MMVAE and MMVAE+
losses are batch sums, so mmbench's mean is compared times B. The table gives, per model and estimator, both
losses, |difference|, and the largest gradient difference over every shared parameter next to the largest
gradient, and whether every gradient is finite on both sides.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import multivae.models.mvae.mvae_model as mv_mvae  # noqa: E402
from multivae.data.datasets.base import DatasetOutput  # noqa: E402
from multivae.models import (  # noqa: E402
    MMVAE,
    MVAE,
    MVTCAE,
    MMVAEConfig,
    MMVAEPlus,
    MMVAEPlusConfig,
    MoPoE,
    MoPoEConfig,
    MVAEConfig,
    MVTCAEConfig,
)
from multivae_models import MultiVaeDecoder, wrap_encoder  # noqa: E402

import baselines.mmvaeplus as mm_plus  # noqa: E402
import mmbench.fusion as mm_fusion  # noqa: E402
import mmbench.objectives as mm_objectives  # noqa: E402
from mmbench.config import build_config  # noqa: E402
from mmbench.modality import Modality  # noqa: E402
from mmbench.registry import MODELS  # noqa: E402

SHAPE = (3, 28, 28)


# -- one noise stream for both sides ------------------------------------------------------------------------------
class Noise:
    """Standard Normal / Laplace noise of any shape from one seeded generator, or from a given queue."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)
        self.queue: list[torch.Tensor] | None = None

    def normal(self, shape) -> torch.Tensor:
        if self.queue is not None:
            eps = self.queue.pop(0)
            assert tuple(eps.shape) == tuple(shape), (eps.shape, shape)
            return eps
        return torch.randn(math.prod(shape), generator=self.g).view(*shape)

    def laplace(self, shape) -> torch.Tensor:
        u = torch.rand(math.prod(shape), generator=self.g).view(*shape) * 2 - 1
        u = u.clamp(-1 + 1e-7, 1 - 1e-7)
        return -u.sign() * torch.log1p(-u.abs())


@contextmanager
def shared_noise(noise: Noise):
    """Every reparameterised draw of either library takes noise.normal / noise.laplace."""
    saved = (
        torch.distributions.Normal.rsample,
        torch.distributions.Laplace.rsample,
        mm_fusion.Gaussian.rsample,
        mm_plus.Laplace.rsample,
    )

    def normal_rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        return self.loc + self.scale * noise.normal(shape)

    def laplace_rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        return self.loc + self.scale * noise.laplace(shape)

    def gaussian_rsample(self, n=None, *, generator=None):
        shape = self.mu.shape if n is None else (n, *self.mu.shape)
        return self.mu + self.std * noise.normal(shape)

    def our_laplace_rsample(self, shape=(), *, generator=None):
        full = (*shape, *torch.broadcast_shapes(self.loc.shape, self.scale.shape))
        return self.loc + self.scale * noise.laplace(full)

    torch.distributions.Normal.rsample = normal_rsample
    torch.distributions.Laplace.rsample = laplace_rsample
    mm_fusion.Gaussian.rsample = gaussian_rsample
    mm_plus.Laplace.rsample = our_laplace_rsample
    try:
        yield
    finally:
        (
            torch.distributions.Normal.rsample,
            torch.distributions.Laplace.rsample,
            mm_fusion.Gaussian.rsample,
            mm_plus.Laplace.rsample,
        ) = saved


# -- data ---------------------------------------------------------------------------------------------------------
def masked_batch(b: int, m: int, seed: int = 0):
    """(x with NaN in missing rows, x zero-filled, masks): random masks with every row observing one modality at
    least, the first rows complete, every modality observed somewhere."""
    g = torch.Generator().manual_seed(seed)
    names = [f"m{i}" for i in range(m)]
    x = {n: torch.rand(b, *SHAPE, generator=g) for n in names}
    keep = torch.rand(m, b, generator=g) > 0.4
    keep[:, :2] = True
    for r in range(b):
        if not keep[:, r].any():
            keep[int(torch.randint(0, m, (1,), generator=g)), r] = True
    masks = {n: keep[i].clone() for i, n in enumerate(names)}
    nan = {n: torch.where(masks[n].view(-1, 1, 1, 1), v, math.nan) for n, v in x.items()}
    zero = {n: torch.where(masks[n].view(-1, 1, 1, 1), v, 0.0) for n, v in x.items()}
    return nan, zero, masks


def common(m: int, latent_dim: int) -> dict:
    names = [f"m{i}" for i in range(m)]
    return dict(
        n_modalities=m,
        latent_dim=latent_dim,
        input_dims={n: SHAPE for n in names},
        uses_likelihood_rescaling=False,
        decoders_dist={n: "laplace" for n in names},
        decoder_dist_params={n: {"scale": 0.75} for n in names},
    )


class SwapHalves(nn.Module):
    """MultiVae's MMVAE+ decodes cat([z_shared, w_private]), mmbench's cat([w, z]): the same decoder on swapped halves."""

    def __init__(self, net: nn.Module, dz: int):
        super().__init__()
        self.net, self.dz = net, dz

    def forward(self, zw):
        return self.net(torch.cat([zw[..., self.dz :], zw[..., : self.dz]], -1))


# -- one comparison ----------------------------------------------------------------------------------------------
def compare(model: str, estimator: str, b: int, m: int, seed: int = 0) -> dict:
    names = [f"m{i}" for i in range(m)]
    modalities = [Modality(n, SHAPE) for n in names]
    nan, zero, masks = masked_batch(b, m, seed)
    dz = 16
    cls = MODELS.get(model)
    cfg = {"latent_dim": dz}
    if model == "mopoe":
        cfg.update(beta=2.5)
    elif model == "mvae":
        cfg.update(beta=2.5, warmup_epochs=0.0, random_subsets=2)
    elif model == "mmvae":
        cfg.update(beta=1.0, k=3, estimator=estimator)
    elif model == "mvtcae":
        cfg.update(beta=2.5, alpha=5 / 6)
    elif model == "mmvaeplus":
        cfg.update(networks="conv", private_dim=dz, beta=2.5, k=1 if estimator == "elbo" else 3, estimator=estimator)
    torch.manual_seed(seed)
    ours = cls(modalities, build_config(cls.Config, cfg))
    ours.train()
    nets = getattr(ours, "parts", ours)
    encoders = {n: copy.deepcopy(nets.encoders[n]) for n in names}
    decoders = {n: copy.deepcopy(nets.decoders[n]) for n in names}
    base = common(m, dz)
    scale = 1.0  # theirs = scale * ours
    if model == "mopoe":
        theirs = MoPoE(
            MoPoEConfig(**base, beta=2.5),
            encoders={n: wrap_encoder(e) for n, e in encoders.items()},
            decoders={n: MultiVaeDecoder(d) for n, d in decoders.items()},
        )
    elif model == "mvae":
        theirs = MVAE(
            MVAEConfig(**base, beta=2.5, warmup=0, k=2, use_subsampling=True),
            encoders={n: wrap_encoder(e) for n, e in encoders.items()},
            decoders={n: MultiVaeDecoder(d) for n, d in decoders.items()},
        )
    elif model == "mmvae":
        loss = {"iwae": "iwae_looser", "dreg": "dreg_looser"}[estimator]
        theirs = MMVAE(
            MMVAEConfig(**base, K=3, prior_and_posterior_dist="normal", learn_prior=False, loss=loss),
            encoders={n: wrap_encoder(e) for n, e in encoders.items()},
            decoders={n: MultiVaeDecoder(d) for n, d in decoders.items()},
        )
        scale = float(b)
    elif model == "mvtcae":
        theirs = MVTCAE(
            MVTCAEConfig(**base, alpha=5 / 6, beta=2.5),
            encoders={n: wrap_encoder(e) for n, e in encoders.items()},
            decoders={n: MultiVaeDecoder(d) for n, d in decoders.items()},
        )
    elif model == "mmvaeplus":
        loss = {"elbo": "iwae_looser", "dreg": "dreg_looser"}[estimator]
        theirs = MMVAEPlus(
            MMVAEPlusConfig(
                **base,
                modalities_specific_dim=dz,
                K=1 if estimator == "elbo" else 3,
                beta=2.5,
                loss=loss,
                prior_and_posterior_dist="laplace_with_softmax",
                learn_shared_prior=False,
                learn_modality_prior=True,
            ),
            encoders={n: wrap_encoder(e) for n, e in encoders.items()},
            decoders={n: MultiVaeDecoder(SwapHalves(d, dz)) for n, d in decoders.items()},
        )
        scale = float(b)
    else:
        raise ValueError(model)
    theirs.train()

    # -- the draws both sides share --
    restore = []
    if model == "mopoe":
        family = mm_fusion.subsets(names)
        obs = torch.stack([masks[n] for n in names])
        valid = mm_fusion.valid_subsets(mm_fusion.subset_mask(family, names).T, obs)
        g = torch.Generator().manual_seed(seed + 1)
        choice = torch.stack([torch.multinomial(valid[:, r].double(), 1, generator=g)[0] for r in range(b)])
        keys = ["_".join(sorted(s)) for s in family]
        assert keys == [k for k in theirs.subsets if k != ""], (keys, list(theirs.subsets))
        saved_assign, saved_select = mm_objectives.row_assignment, MoPoE.random_mixture_component_selection
        mm_objectives.row_assignment = lambda w, generator=None: choice.clone()

        def select(self, mus, logvars, availabilities):
            assert bool((availabilities[choice, torch.arange(b)] > 0).all())
            return mus[choice, torch.arange(b)], logvars[choice, torch.arange(b)]

        MoPoE.random_mixture_component_selection = select
        restore.append(lambda: setattr(mm_objectives, "row_assignment", saved_assign))
        restore.append(lambda: setattr(MoPoE, "random_mixture_component_selection", saved_select))
    if model == "mvae":
        torch.manual_seed(seed + 2)
        family = ours.training_subsets()
        ours.training_subsets = lambda: family
        picks = [theirs.subsets.index(tuple(s)) for s in family[1 + m :]]
        saved_choice = mv_mvae.choice
        mv_mvae.choice = lambda a, size, replace: np.array(picks)
        restore.append(lambda: setattr(mv_mvae, "choice", saved_choice))

    try:
        noise = Noise(seed + 3)
        with shared_noise(noise):
            ours.zero_grad()
            our_loss = ours.loss({"x": nan, "mask": masks}).loss
            our_loss.backward()
        noise = Noise(seed + 3)
        if model == "mvae":  # MultiVae samples subset A only at its available rows: ours (S, B, D) noise there
            eps = torch.randn(len(family) * b * dz, generator=noise.g).view(len(family), b, dz)
            queue = []
            for s, subset in enumerate(family):
                rows = torch.stack([masks[n] for n in subset]).any(0)
                if rows.any():
                    queue.append(eps[s][rows])
            noise.queue = queue
        with shared_noise(noise):
            theirs.zero_grad()
            out = theirs(DatasetOutput(data=dict(zero), masks=dict(masks)), epoch=1, batch_ratio=0.0)
            their_loss = out.loss
            their_loss.backward()
    finally:
        for undo in restore:
            undo()

    # -- shared parameters, pairwise --
    pairs = []
    for n in names:
        mine_enc = nets.encoders[n]
        their_enc = theirs.encoders[n].net
        mine_dec = nets.decoders[n]
        their_dec = theirs.decoders[n].net
        if isinstance(their_dec, SwapHalves):
            their_dec = their_dec.net
        pairs += list(zip(mine_enc.parameters(), their_enc.parameters()))
        pairs += list(zip(mine_dec.parameters(), their_dec.parameters()))
        if model == "mmvaeplus":
            pairs.append((ours.aux_raw_scale[n], theirs.logvars_priors[n]))
    diffs, sizes, finite = [], [], True
    for p, q in pairs:
        gp = p.grad if p.grad is not None else torch.zeros_like(p)
        gq = q.grad.reshape(p.shape) if q.grad is not None else torch.zeros_like(p)
        finite = finite and bool(torch.isfinite(gp).all() and torch.isfinite(gq).all())
        diffs.append((gp * scale - gq).abs().max().item())
        sizes.append(gq.abs().max().item())
    return {
        "model": model,
        "estimator": estimator,
        "ours": our_loss.item() * scale,
        "theirs": their_loss.item(),
        "loss_diff": abs(our_loss.item() * scale - their_loss.item()),
        "grad_diff": max(diffs),
        "grad_max": max(sizes),
        "finite": finite,
        "observed": {n: round(masks[n].double().mean().item(), 2) for n in names},
    }


CASES = [
    ("mopoe", "stratified"),
    ("mvae", "elbo"),
    ("mmvae", "iwae"),
    ("mmvae", "dreg"),
    ("mvtcae", "elbo"),
    ("mmvaeplus", "elbo"),
    ("mmvaeplus", "dreg"),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--modalities", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    from importlib.metadata import version

    print(
        f"mmbench vs multivae {version('multivae')} on a masked batch: B={args.batch}, M={args.modalities}, "
        f"float64, shared weights and draws; MMVAE/MMVAE+: MultiVae's batch sum vs mmbench's mean x B"
    )
    print("| model | estimator | mmbench loss | MultiVae loss | abs diff | max grad abs diff | max grad | finite |")
    print("|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for model, est in CASES:
        r = compare(model, est, args.batch, args.modalities)
        rel = r["grad_diff"] / max(r["grad_max"], 1e-300)
        worst = max(worst, r["loss_diff"] / abs(r["theirs"]), rel)
        print(
            f"| {model} | {est} | {r['ours']:.6f} | {r['theirs']:.6f} | {r['loss_diff']:.2e} | "
            f"{r['grad_diff']:.2e} | {r['grad_max']:.2e} | {r['finite']} |",
            flush=True,
        )
    print(f"\nlargest relative difference (loss or gradient): {worst:.1e}")
    return 0 if worst < 1e-8 else 1


if __name__ == "__main__":
    sys.exit(main())
