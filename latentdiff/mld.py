"""MLD: Multi-modal Latent Diffusion (Bounoua, Franzese & Michiardi, Entropy 26(4):320, 2024; code
github.com/MustaphaBounoua/MLD).

Deterministic unimodal autoencoders; their latents standardised per dimension and concatenated; a score model over
the concatenation trained with multi-time masked diffusion: a batch trains the joint score (every modality noised
at one time t) or, with probability d, the conditional score given a uniformly drawn proper subset of the
modalities, which stay clean and carry time 0 (``mmbench.diffusion.multi_time_loss``). Conditional generation runs
the reverse VP-SDE on the missing modalities with the observed ones clean at time 0, by default on RePaint's
schedule with jumps back as their code (``latentdiff.repaint``), or by the process's own sampler
(``LatentScoreModel.sample``, mode "clean"); unconditional generation the same with nothing observed.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import torch
from torch import Tensor

from latentdiff.base import AUTOENCODER_FIELDS, LatentDiffusionConfig, LatentDiffusionVAE
from latentdiff.repaint import sample_repaint
from mmbench.config import check_choice, check_range
from mmbench.errors import MMBenchError
from mmbench.fusion import subsets
from mmbench.modality import Modality
from mmbench.registry import register_model
from mmbench.stages import Stage, StageConfig

SAMPLERS = ("repaint", "reverse")


@dataclasses.dataclass(frozen=True)
class MLDConfig(LatentDiffusionConfig):
    """MLD's PolyMNIST preset (Bounoua et al. 2024; their code, experiments/mmnist/mmnist_ae.py and mmnist_mld.py):
    deterministic autoencoders (MoPoE's PolyMNIST conv nets, as the code's resnet=False) with 160 latent dimensions
    per modality and a Laplace(0.75) reconstruction, Adam 1e-3, batch 128, 300 epochs; latents standardised per
    dimension; the score model trained with the multi-time masked loss (d = 0.2) on the VP-SDE (beta 0.1 to 20),
    Adam 1e-4, batch 256, 3000 epochs; sampling by reverse Euler-Maruyama on a 250-step grid with RePaint's jumps
    back (length 10, 10 times: 2,410 reverse and 2,160 forward steps), unconditional and conditional alike.

    beta:       unused: MLD's autoencoders are deterministic and unregularised.
    epochs, lr, batch_size: given explicitly, every stage section that does not set its own takes them.
    cond_rate:  the probability d that a batch trains the conditional score given a uniformly drawn proper subset
                of the modalities (clean, at time 0) instead of the joint score.
    sampler:    "repaint" (their default: reverse Euler-Maruyama on a grid of sampler_steps times with RePaint's
                jumps back, latentdiff.repaint) or "reverse" (the process's own sampler on sampler_steps steps).
    jump_length, jump_n_sample: RePaint's jumps: every jump_length grid steps, jump_n_sample - 1 re-noisings.

    The score network is theirs (``latentdiff.nets.UnetMLP``: width 1536, two levels, time embedding 512 of the
    per-modality time vector). Departures from the code: no EMA of the score weights (their decay 0.999); the
    standardisation's statistics come from the whole training set (the code's check_stat=False takes them from the
    first batch); the loss is half the code's (mmbench's processes carry a 1/2: a constant factor).
    """

    latent_dim: int = 160
    beta: float = 0.0
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 300
    likelihood: str = ""
    likelihood_scale: float = 0.75
    standardise: bool = True
    score_net: str = "unet_mlp"
    score_hidden: int = 1536
    score_depth: int = 2
    process: str = "vpsde"
    beta_min: float = 0.1
    beta_max: float = 20.0
    sampler_steps: int = 250
    corrector_steps: int = 0
    cond_rate: float = 0.2
    sampler: str = "repaint"
    jump_length: int = 10
    jump_n_sample: int = 10
    autoencoders: StageConfig = StageConfig(epochs=300, lr=1e-3, batch_size=128)
    score: StageConfig = StageConfig(epochs=3000, lr=1e-4, batch_size=256)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, "cond_rate", lo=0.0, hi=1.0)
        check_choice(self, "sampler", SAMPLERS)
        check_range(self, "jump_length", lo=1)
        check_range(self, "jump_n_sample", lo=1)
        if self.sampler == "repaint" and self.process != "vpsde":
            raise MMBenchError(
                f"MLDConfig.sampler = 'repaint' walks the VP-SDE; with process = {self.process!r} set "
                "sampler = 'reverse' (the process's own sampler)"
            )


@register_model("mld")
class MLD(LatentDiffusionVAE):
    """MLD (Bounoua et al. 2024): deterministic autoencoders, multi-time masked latent diffusion (module docstring)."""

    display_name = "MLD"
    Config = MLDConfig
    config: MLDConfig
    stages = (
        Stage("autoencoders", ("autoencoders",), reusable=True, depends=AUTOENCODER_FIELDS),
        Stage("score", ("score",)),
    )

    def __init__(self, modalities: Sequence[Modality], config: MLDConfig | None = None):
        super().__init__(modalities, config)
        # the conditioning subsets: every non-empty subset but the full set (MLD's "powerset" minus the last)
        self.conditioning = subsets(self.modality_names)[:-1]

    def autoencoder_loss(self, x: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """-sum_m log p(x_m | dec_m(enc_m(x_m))) per row: each autoencoder's reconstruction (Laplace on PolyMNIST)."""
        post = self.autoencoders.posteriors(x, self.modality_names)
        rec = self.reconstruction(x, {m: q.mu for m, q in post.items()})
        return -sum(rec.values()), {f"rec/{m}": -v.mean().item() for m, v in rec.items()}

    def masked_loss(self, z: Tensor, t: Tensor, observed: Sequence[str]) -> Tensor:
        """Per-row multi-time loss (B,) of standardised z at times t ((B,) or (B, M)) with the ``observed``
        modalities clean at time 0 and unscored, scaled by D / (unobserved dimensions) so that a dimension weighs
        as in the joint loss (MLD's code, MLD.py)."""
        if not observed:
            return self.score.loss(z, t=t)
        mask = self.observed_mask(observed)
        free = self.latent_dim - int(mask.sum())
        return self.score.loss(z, t=t, mask=mask) * (self.latent_dim / free)

    def score_loss(self, z: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The joint denoising loss, or with probability cond_rate (one draw per batch, as the code) the
        conditional one given a uniformly drawn proper subset (``masked_loss``); one t per row for every group."""
        t = self.score.process.draw_times((z.shape[0],), dtype=z.dtype).to(z.device)
        observed: tuple[str, ...] = ()
        if len(self.conditioning) and float(torch.rand(())) < self.config.cond_rate:
            observed = self.conditioning[int(torch.randint(len(self.conditioning), ()))]
        loss = self.masked_loss(z, t, observed)
        return loss, {"score": loss.mean().item(), "conditional": float(bool(observed))}

    def sample_latents(
        self, observed: Tensor | None, names: Sequence[str], n: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """The reverse VP-SDE over the unobserved groups, the observed ones clean at time 0: RePaint's schedule
        (``latentdiff.repaint``) or the process's sampler (``LatentScoreModel.sample`` mode "clean")."""
        cfg = self.config
        if cfg.sampler == "reverse":
            if not names:
                return self.score.sample(n, generator=generator)
            mask = self.observed_mask(names)
            return self.score.sample(n, observed=observed, mask=mask, mode="clean", generator=generator)
        device = self.autoencoders.mean.device
        mask = self.observed_mask(names)
        observed = torch.zeros(n, self.latent_dim, device=device) if observed is None else observed.to(device)
        group_obs = torch.tensor([m in names for m in self.modality_names], device=device)

        def eps(x: Tensor, t: Tensor) -> Tensor:  # observed groups at time 0, as in training
            tg = t[:, None].expand(-1, len(self.modality_names))
            return self.score.eps(x, torch.where(group_obs, torch.zeros_like(tg), tg))

        noise = torch.randn(n, self.latent_dim, generator=generator).to(device)
        return sample_repaint(
            eps,
            noise,
            self.score.process,
            observed=observed,
            mask=mask,
            grid=cfg.sampler_steps,
            jump_length=cfg.jump_length,
            jump_n_sample=cfg.jump_n_sample,
            generator=generator,
        )
