"""Latent diffusion over unimodal autoencoders: the base of SBM-AE and MLD.

Stage "autoencoders" trains one autoencoder per modality (each its own latent z_m); at its end the latents'
standardisation (mean and std per dimension) is fitted on the training set's encodings. Stage "score" trains a
score model (``mmbench.diffusion.LatentScoreModel``, one latent group per modality) over the concatenated,
standardised latents z = [z_1, ..., z_M] with the autoencoders frozen. Generation samples z from the score model and
decodes each group with its modality's decoder; conditional generation samples the missing groups with the observed
ones given (each model's sampler, ``sample_latents``), then decodes.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Mapping, Sequence

import torch
from torch import Tensor, nn

from latentdiff.nets import LatentGridUNet, UnetMLP
from mmbench.config import check_choice, check_range
from mmbench.diffusion import LatentScoreConfig, LatentScoreModel
from mmbench.diffusion.latent import LatentMLP
from mmbench.diffusion.processes import DDPM_TIMESTEPS
from mmbench.errors import MMBenchError
from mmbench.fusion import LOGVAR_LIMIT, Gaussian
from mmbench.modality import Modality
from mmbench.model import Batch, LossOutput, MultimodalVAE
from mmbench.objectives import Likelihood
from mmbench.stages import Stage, StageConfig, StagedConfig
from mmbench.unimodal import UnimodalParts, stacked_experts

PROCESSES = ("vpsde", "ddpm")
SCORE_NETS = ("mlp", "unet_mlp", "unet")
ENCODE_SEED = 0  # encode draws a subset's missing latents from noise of this seed: encode is a function of x
ENCODE_BATCH = 256  # rows per batch when end_stage encodes the training set


@dataclasses.dataclass(frozen=True)
class LatentDiffusionConfig(StagedConfig):
    """The fields latent-diffusion models share (their presets: the subclasses' configs).

    latent_dim:       each modality's latent size; z concatenates the M modalities' latents (M x latent_dim).
    latent_dims:      one latent size per modality, in the dataset's order, in place of latent_dim (() for none).
    likelihood:       the reconstruction likelihood of modalities whose own is continuous (laplace or normal);
                      "" keeps each modality's own; Bernoulli and categorical modalities always keep theirs.
    likelihood_scale: the scale of Laplace and normal reconstruction likelihoods.
    standardise:      diffuse (z - mean) / std per dimension, mean and std of the training set's encodings
                      (fitted when the autoencoders stage ends); off: the raw latents.
    score_net:        the score network: "mlp" (``LatentMLP``: a sinusoidal time embedding per modality, residual
                      blocks), "unet_mlp" (MLD's UNet-shaped MLP, latentdiff.nets.UnetMLP) or "unet" (SBM-AE's
                      layout: the latents as an M x s x s image through a 2-D UNet; square latent sizes only).
    score_hidden:     the score network's width ("mlp": hidden units, "unet_mlp": width, "unet": base channels).
    score_depth:      "mlp": residual blocks; "unet_mlp": down and up levels.
    score_mults:      "unet": channel multiplier per level (a halving of the grid between levels).
    process:          "vpsde" (continuous VP-SDE, Euler-Maruyama sampler) or "ddpm" (T = 1000, DDIM sampler).
    beta_min:         the VP-SDE's beta(0).
    beta_max:         the VP-SDE's beta(1).
    weighting:        the denoising loss's time weighting (mmbench.diffusion.noise_weight).
    sampler_steps:    reverse-diffusion steps per sample (DDIM: at most the schedule's 1000 timesteps).
    corrector_steps:  Langevin corrector steps after each VP-SDE step (0: Euler-Maruyama alone).
    snr:              the corrector's signal-to-noise ratio.
    eta:              DDIM's eta (process "ddpm").
    autoencoders:     stage 1: epochs, lr, batch_size, max_steps, reuse of the unimodal autoencoders' training.
    score:            stage 2: epochs, lr, batch_size, max_steps, reuse of the score model's training.
    """

    latent_dim: int = 64
    latent_dims: tuple[int, ...] = ()
    likelihood: str = ""
    likelihood_scale: float = 0.75
    standardise: bool = True
    score_net: str = "mlp"
    score_hidden: int = 512
    score_depth: int = 3
    score_mults: tuple[int, ...] = (1, 2, 2, 2)
    process: str = "vpsde"
    beta_min: float = 0.1
    beta_max: float = 20.0
    weighting: str = "variance"
    sampler_steps: int = 100
    corrector_steps: int = 0
    snr: float = 0.16
    eta: float = 0.0
    autoencoders: StageConfig = StageConfig(epochs=100, lr=1e-3, batch_size=256)
    score: StageConfig = StageConfig(epochs=100, lr=1e-4, batch_size=256)

    def __post_init__(self) -> None:
        super().__post_init__()
        for f in ("score_hidden", "score_depth", "sampler_steps"):
            check_range(self, f, lo=1)
        check_choice(self, "process", PROCESSES)
        check_choice(self, "score_net", SCORE_NETS)
        if not self.score_mults or any(not isinstance(m, int) or m < 1 for m in self.score_mults):
            raise MMBenchError(
                f"{type(self).__name__}.score_mults = {list(self.score_mults)}: multipliers must be >= 1"
            )
        check_choice(self, "likelihood", ("", "laplace", "normal"))
        check_range(self, "likelihood_scale", lo=0.0, lo_open=True)
        check_range(self, "corrector_steps", lo=0)
        check_range(self, "eta", lo=0.0)
        if any(not isinstance(d, int) or d < 1 for d in self.latent_dims):
            raise MMBenchError(f"{type(self).__name__}.latent_dims = {list(self.latent_dims)}: sizes must be >= 1")
        if self.process == "ddpm":  # DDIM walks a subset of the schedule's timesteps
            check_range(self, "sampler_steps", lo=1, hi=DDPM_TIMESTEPS)
        self.score_config()  # the process's own checks (beta_min, beta_max, snr)

    def score_config(self) -> LatentScoreConfig:
        """The ``LatentScoreConfig`` of the score model (the standardisation is the autoencoders', not its)."""
        return LatentScoreConfig(
            net="mlp",
            hidden=self.score_hidden,
            depth=self.score_depth,
            process=self.process,
            eta=self.eta,
            corrector_steps=self.corrector_steps,
            weighting=self.weighting,
            standardise=False,
            sampler_steps=self.sampler_steps,
            beta_min=self.beta_min,
            beta_max=self.beta_max,
            snr=self.snr,
        )


# config fields that determine the autoencoders stage's result (with its StageConfig): the stage key's ``depends``
AUTOENCODER_FIELDS = ("latent_dim", "latent_dims", "likelihood", "likelihood_scale", "standardise", "grad_clip")


class LatentAutoencoders(UnimodalParts):
    """One autoencoder per modality, each with its latent size, and the standardisation of the concatenated latent:
    buffers ``mean`` and ``std`` (D,), identity until ``fit_standardisation``. They belong to this module so that a
    reused autoencoders stage brings the statistics of its own encodings."""

    def __init__(self, modalities: Sequence[Modality], sizes: Sequence[int], likelihood: str, scale: float):
        names = [m.name for m in modalities]
        super().__init__(modalities, sizes[0], scale, latent_dims=dict(zip(names, sizes)))
        if likelihood:  # continuous likelihoods only: Bernoulli logits and categorical logits stay as they are
            for m in modalities:
                if m.likelihood in ("laplace", "normal"):
                    self.likelihoods[m.name] = Likelihood(likelihood, scale)
        self.sizes = tuple(sizes)
        self.register_buffer("mean", torch.zeros(sum(sizes)))
        self.register_buffer("std", torch.ones(sum(sizes)))

    def posteriors(self, x: Mapping[str, Tensor], names: Sequence[str]) -> dict[str, Gaussian]:
        """q(z_m | x_m) of the named modalities (the encoders' Gaussians; a deterministic encoder's mu is z_m)."""
        out = {}
        for m in names:
            g = stacked_experts(self.encoders, x, [m])  # shares mmbench.unimodal's per-batch encoding cache
            out[m] = Gaussian(g.mu[0], g.logvar[0])
        return out

    def normalise(self, z: Tensor) -> Tensor:
        return (z - self.mean) / self.std

    def denormalise(self, z: Tensor) -> Tensor:
        return z * self.std + self.mean


class LatentDiffusionVAE(MultimodalVAE):
    """Unimodal autoencoders + a score model over their concatenated latents (module docstring). Subclasses give
    ``autoencoder_loss`` (stage 1), ``score_loss`` (stage 2) and ``sample_latents`` (their conditional sampler)."""

    Config: ClassVar[type] = LatentDiffusionConfig
    config: LatentDiffusionConfig
    stages: ClassVar[tuple[Stage, ...]] = (
        Stage("autoencoders", ("autoencoders",), reusable=True, depends=AUTOENCODER_FIELDS),
        Stage("score", ("score",)),
    )
    deterministic: ClassVar[bool] = True  # the autoencoders' latent is the encoder's mean (no posterior variance)

    def __init__(self, modalities: Sequence[Modality], config: LatentDiffusionConfig | None = None):
        super().__init__(modalities, config)
        cfg = self.config
        sizes = tuple(cfg.latent_dims) or (cfg.latent_dim,) * len(self.modalities)
        if len(sizes) != len(self.modalities):
            raise MMBenchError(
                f"{type(cfg).__name__}.latent_dims = {list(sizes)} gives {len(sizes)} sizes for "
                f"{len(self.modalities)} modalities {self.modality_names}"
            )
        self.autoencoders = LatentAutoencoders(self.modalities, sizes, cfg.likelihood, cfg.likelihood_scale)
        self.score = LatentScoreModel(sum(sizes), cfg.score_config(), groups=sizes, net=self.score_net(sizes))
        self.active_stage = self.stages[0].name

    def score_net(self, sizes: tuple[int, ...]) -> nn.Module:
        """The configured score network over the concatenated latent (``score_net``)."""
        cfg, dim = self.config, sum(sizes)
        if cfg.score_net == "unet":
            return LatentGridUNet(sizes, base=cfg.score_hidden, mults=tuple(cfg.score_mults))
        if cfg.score_net == "unet_mlp":
            return UnetMLP(dim, width=cfg.score_hidden, levels=cfg.score_depth, groups=len(sizes))
        return LatentMLP(dim, hidden=cfg.score_hidden, depth=cfg.score_depth, groups=len(sizes))

    # -- latents ----------------------------------------------------------------------------------------
    @property
    def sizes(self) -> tuple[int, ...]:
        return self.autoencoders.sizes if hasattr(self, "autoencoders") else ()

    @property
    def latent_dim(self) -> int:
        """The concatenated latent's size, sum of the modalities' latent sizes."""
        return sum(self.sizes)

    def group_slices(self) -> dict[str, slice]:
        """Each modality's columns of z."""
        starts = [0]
        for d in self.sizes:
            starts.append(starts[-1] + d)
        return {m: slice(a, b) for m, a, b in zip(self.modality_names, starts, starts[1:])}

    def observed_mask(self, names: Sequence[str]) -> Tensor:
        """(D,) bool, True on the columns of the named modalities."""
        mask = torch.zeros(self.latent_dim, dtype=torch.bool, device=self.autoencoders.mean.device)
        for m, cols in self.group_slices().items():
            if m in names:
                mask[cols] = True
        return mask

    @torch.no_grad()
    def latent_means(self, x: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
        """The named modalities' encoder means, concatenated (B, sum of their sizes), encoders in eval mode (their
        batch-norm statistics stay as the autoencoders stage left them), in z's units."""
        was = self.autoencoders.training
        self.autoencoders.eval()
        try:
            post = self.autoencoders.posteriors(x, names)
        finally:
            self.autoencoders.train(was)
        return torch.cat([post[m].mu.float() for m in names], 1)

    def sample_latents(
        self, observed: Tensor | None, names: Sequence[str], n: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """n standardised latents (n, D) from the score model: unconditional when ``names`` is empty, else the
        other groups given ``observed`` (n, D) (standardised; its columns outside ``names`` are ignored) on the
        named groups, which the result keeps. The default samples the joint only; subclasses condition."""
        if names:
            raise NotImplementedError
        return self.score.sample(n, generator=generator)

    # -- the contract -----------------------------------------------------------------------------------
    def encode(
        self,
        x: Mapping[str, Tensor],
        subset: Sequence[str] | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Gaussian:
        """The concatenated latent (B, D) given x_subset.

        mu: the observed modalities' encoder means, and for a strict subset the other modalities' latents drawn
        from the score model given them (``sample_latents``; from noise of seed ENCODE_SEED unless a generator is
        given, so that encode is a function of x). logvar: an observed modality's encoder log-variance when its
        autoencoder is a VAE; the floor -30 (a point) for deterministic autoencoders and for drawn latents, so a
        sample of this Gaussian is one draw of p(z | x_subset)."""
        names = self.modality_names if subset is None else self.validate_subset(subset)
        if generator is None:
            generator = torch.Generator().manual_seed(ENCODE_SEED)
        return self.joint_latent(x, names, generator)

    def joint_latent(
        self, x: Mapping[str, Tensor], names: Sequence[str], generator: torch.Generator | None
    ) -> Gaussian:
        """``encode``'s Gaussian for the modalities ``names`` (validated), the missing latents drawn with
        ``generator`` (torch's global generator when None)."""
        post = self.autoencoders.posteriors(x, names)
        n = next(iter(post.values())).mu.shape[0]
        floor = torch.full((n, self.latent_dim), -LOGVAR_LIMIT, device=self.autoencoders.mean.device)
        mu, logvar = torch.zeros_like(floor), floor.clone()
        cols = self.group_slices()
        for m in names:
            mu[:, cols[m]] = post[m].mu.float()
            if not self.deterministic:
                logvar[:, cols[m]] = post[m].logvar.float()
        if len(names) < len(self.modality_names):
            with torch.no_grad():
                drawn = self.autoencoders.denormalise(
                    self.sample_latents(self.autoencoders.normalise(mu), names, n, generator=generator)
                )
            mu = torch.where(self.observed_mask(names), mu, drawn)
        return Gaussian(mu, logvar)

    def decode(
        self, z: Tensor, modalities: Sequence[str] | None = None, *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Each named modality's decoder mean of its group of z (N, D)."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise MMBenchError(f"z has shape {tuple(z.shape)}, expected (N, {self.latent_dim})")
        names = self.modality_names if modalities is None else self.validate_subset(modalities)
        cols = self.group_slices()
        return {m: self.autoencoders.decode_mean(z[:, cols[m]], [m])[m] for m in names}

    @torch.no_grad()
    def sample_prior(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n latents (n, D) from the score model, unconditionally, in z's units."""
        return self.autoencoders.denormalise(self.sample_latents(None, (), n, generator=generator))

    @torch.no_grad()
    def cond_generate(
        self,
        x: Mapping[str, Tensor],
        given: Sequence[str],
        targets: Sequence[str] | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """The targets decoded from z = (the given modalities' latents, the others drawn given them; from
        ``generator``, or torch's global generator when None, as other models' samples)."""
        z = self.joint_latent(x, self.validate_subset(given), generator).mu
        return self.decode(z, targets, generator=generator)

    # -- training in stages -----------------------------------------------------------------------------
    def end_stage(self, stage: Stage, data) -> None:
        """After the autoencoders stage: fit the standardisation on the training set's encoder means (in order,
        batches of ENCODE_BATCH rows, float64 sums; no randomness, so a resumed run computes the same)."""
        if stage.name != "autoencoders" or not self.config.standardise:
            return
        total = total_sq = None
        count = 0
        for batch in data.batches(ENCODE_BATCH):
            x = {m: t.to(self.autoencoders.mean.device) for m, t in batch["x"].items()}
            z = self.latent_means(x, self.modality_names).double()
            total = z.sum(0) if total is None else total + z.sum(0)
            total_sq = (z * z).sum(0) if total_sq is None else total_sq + (z * z).sum(0)
            count += z.shape[0]
        if count < 2:
            raise MMBenchError(f"fitting the latent standardisation needs 2 or more training rows, got {count}")
        mean = total / count
        var = ((total_sq - count * mean * mean) / (count - 1)).clamp_min(0.0)
        self.autoencoders.mean.copy_(mean.float())
        self.autoencoders.std.copy_(var.sqrt().float().clamp_min(1e-6))

    def loss(self, batch: Batch) -> LossOutput:
        """The active stage's objective: the autoencoders' (``autoencoder_loss``) or the score model's on the
        frozen autoencoders' standardised latents (``score_loss``)."""
        x = batch["x"]
        if self.active_stage == "autoencoders":
            per_row, terms = self.autoencoder_loss(x)
        else:
            z = self.autoencoders.normalise(self.training_latents(x))
            per_row, terms = self.score_loss(z)
        loss = per_row.mean()
        return LossOutput(loss, {"loss": loss.item(), **terms})

    def training_latents(self, x: Mapping[str, Tensor]) -> Tensor:
        """The latents the score model trains on (B, D), in z's units: the encoder means."""
        return self.latent_means(x, self.modality_names)

    def reconstruction(self, x: Mapping[str, Tensor], z: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """log p(x_m | z_m) per modality and row (B,)."""
        return {m: self.autoencoders.log_likelihoods(x, z[m], slice(None), [m])[m] for m in z}

    def autoencoder_loss(self, x: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Per-row loss (B,) of the unimodal autoencoders (summed over modalities) and its terms."""
        raise NotImplementedError

    def score_loss(self, z: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Per-row loss (B,) of the score model on standardised latents z (B, D) and its terms."""
        raise NotImplementedError


__all__ = ["AUTOENCODER_FIELDS", "ENCODE_SEED", "LatentAutoencoders", "LatentDiffusionConfig", "LatentDiffusionVAE"]
