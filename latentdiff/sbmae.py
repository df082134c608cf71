"""SBM-AE: Score-Based Multimodal Autoencoder (Wesego & Rooshenas, TMLR 2024; code github.com/rooshenasgroup/sbmae).

One autoencoder per modality, trained alone: a VAE (SBM-VAE, the ELBO with a KL weight beta) or a regularised
deterministic autoencoder (SBM-RAE: reconstruction of a slightly perturbed latent plus a penalty on ||z||^2). Then
a score model over the concatenated latents (encoder means), every modality noised at one time (the joint score
only, no masking). Generation samples all latents by the reverse VP-SDE (Euler-Maruyama with a Langevin corrector:
predictor-corrector); conditional generation runs the same sampler with the observed latents replaced, before each
step and after each predictor and corrector step, by a fresh draw of q(z_t | z_obs) at the sampler's time (the
paper's conditional sampling; ``LatentScoreModel.sample`` mode "replace").
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import torch
from torch import Tensor

from latentdiff.base import AUTOENCODER_FIELDS, LatentDiffusionConfig, LatentDiffusionVAE
from mmbench.config import check_choice, check_range
from mmbench.fusion import Gaussian, kl_normal
from mmbench.modality import Modality
from mmbench.registry import register_model
from mmbench.stages import Stage, StageConfig

VARIANTS = ("vae", "rae")


@dataclasses.dataclass(frozen=True)
class SBMAEConfig(LatentDiffusionConfig):
    """SBM-AE's PolyMNIST preset (Wesego & Rooshenas 2024; their code's train_poly.sh, train_polyupd.py,
    train_polyupdAE.py, train_poly_unet_cont.py): 64 latent dimensions per modality; the autoencoders trained with
    a squared-error reconstruction (a normal likelihood of variance 1/2), Adam 1e-3, batch 256, 200 epochs (VAE; the
    code's RAE default is 100); no standardisation of the latents; the score model on the VP-SDE with beta 1 to 5,
    Adam 5e-4, batch 256, 500 epochs; sampling by Euler-Maruyama on 100 steps with one Langevin corrector step of
    signal-to-noise ratio 0.16 per step.

    variant:    "vae" (SBM-VAE: unimodal VAEs) or "rae" (SBM-RAE: regularised deterministic autoencoders).
    beta:       the VAE's KL weight (SBM-VAE; 0.5 in train_poly.sh).
    rae_beta:   the weight of the RAE's latent penalty ||z||^2 (SBM-RAE; 1e-5 in train_poly.sh).
    rae_noise:  the standard deviation of the noise added to the RAE's latent before decoding (SBM-RAE; 0.01).
    epochs, lr, batch_size: given explicitly, every stage section that does not set its own takes them.

    Departures from the code: the networks are the shared PolyMNIST conv nets on 28 x 28 (theirs are ResNet
    autoencoders on images padded to 32 x 32, not among mmbench's shared nets); the score network is mmbench's 2-D UNet
    over the latents reshaped to M x 8 x 8 (base 64, multipliers 1, 2, 2, 2, as theirs; theirs is the "annotated
    diffusion" UNet with ConvNeXt blocks and linear attention, its time embedded unscaled); it predicts the noise, the score being
    -eps / std(t) (theirs outputs the score); the code's ReduceLROnPlateau on the autoencoders is not applied;
    conditional sampling draws the observed latents' noise fresh at each step (the code reuses the latent itself as
    the noise, noised = (mean(t) + std(t)) z_obs); the code's run script sets beta_min = 1 (its checkpoint names
    say 0.1).
    """

    variant: str = "vae"
    latent_dim: int = 64
    beta: float = 0.5
    rae_beta: float = 1e-5
    rae_noise: float = 0.01
    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 200
    likelihood: str = "normal"
    likelihood_scale: float = math.sqrt(0.5)
    standardise: bool = False
    score_net: str = "unet"
    score_hidden: int = 64
    score_mults: tuple[int, ...] = (1, 2, 2, 2)
    process: str = "vpsde"
    beta_min: float = 1.0
    beta_max: float = 5.0
    sampler_steps: int = 100
    corrector_steps: int = 1
    snr: float = 0.16
    autoencoders: StageConfig = StageConfig(epochs=200, lr=1e-3, batch_size=256)
    score: StageConfig = StageConfig(epochs=500, lr=5e-4, batch_size=256)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "variant", VARIANTS)
        check_range(self, "rae_beta", lo=0.0)
        check_range(self, "rae_noise", lo=0.0)


@register_model("sbmae")
class SBMAE(LatentDiffusionVAE):
    """SBM-AE (Wesego & Rooshenas 2024): unimodal VAEs or RAEs, a joint score model over their latents, the
    replacement conditional sampler with predictor-corrector steps (module docstring)."""

    display_name = "SBM-AE"
    Config = SBMAEConfig
    config: SBMAEConfig
    stages = (
        Stage(
            "autoencoders",
            ("autoencoders",),
            reusable=True,
            depends=(*AUTOENCODER_FIELDS, "variant", "beta", "rae_beta", "rae_noise"),
        ),
        Stage("score", ("score",)),
    )

    def __init__(self, modalities: Sequence[Modality], config: SBMAEConfig | None = None):
        super().__init__(modalities, config)

    @property
    def deterministic(self) -> bool:  # type: ignore[override]
        return self.config.variant == "rae"

    def autoencoder_loss(self, x: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """SBM-VAE: -sum_m [log p(x_m | z_m) - beta KL(q(z_m | x_m) || N(0, I))], z_m ~ q(z_m | x_m) (each unimodal
        ELBO). SBM-RAE: sum_m [-log p(x_m | z_m + rae_noise eps) + rae_beta ||z_m||^2], z_m the encoder's mean."""
        cfg = self.config
        post = self.autoencoders.posteriors(x, self.modality_names)
        if cfg.variant == "vae":
            z = {m: q.rsample() for m, q in post.items()}
            reg = {m: kl_normal(Gaussian(q.mu.float(), q.logvar.float())) for m, q in post.items()}
            weight, name = cfg.beta, "kl"
        else:
            z = {m: q.mu + cfg.rae_noise * torch.randn_like(q.mu) for m, q in post.items()}
            reg = {m: q.mu.float().pow(2).sum(-1) for m, q in post.items()}
            weight, name = cfg.rae_beta, "z2"
        rec = self.reconstruction(x, z)
        loss = sum(-rec[m] + weight * reg[m] for m in self.modality_names)
        terms = {f"rec/{m}": -v.mean().item() for m, v in rec.items()}
        terms[name] = sum(r.mean().item() for r in reg.values())
        return loss, terms

    def score_loss(self, z: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The joint denoising loss: every modality at one t ~ U(t_min, 1), eq. 7 of Song et al. 2021b written in
        the noise with lambda(t) = std(t)^2 (the code's ``loss_fn``, ll-weighting 0)."""
        loss = self.score.loss(z)
        return loss, {"score": loss.mean().item()}

    def sample_latents(
        self, observed: Tensor | None, names: Sequence[str], n: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Predictor-corrector over every group, the observed groups replaced by fresh draws of q(z_t | z_obs)
        at each step (mode "replace"); unconditional without names."""
        if not names:
            return self.score.sample(n, generator=generator)
        mask = self.observed_mask(names)
        return self.score.sample(n, observed=observed, mask=mask, mode="replace", generator=generator)
