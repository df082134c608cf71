"""The plugin contract every multimodal VAE implements (docs/plugins.md, docs/architecture.md).

Metrics, evaluation, the auxiliary score prior and plots use only these methods:

    encode(x, subset) -> Gaussian              q(z | x_subset), the shared latent
    decode(z, modalities, *, generator) -> {m: Tensor}   decoder means (samples for diffusion decoders)
    loss(batch) -> LossOutput                  the model's training objective
    generate(n, z=None) -> {m: Tensor}         unconditional; z from sample_prior (N(0, I)) or any given prior
    cond_generate(x, given, targets) -> {m: Tensor}

Models with more latents (MMVAE+'s private w_m) expose the shared z here and draw private latents
from their own priors inside decode; models whose fusion is not a product (MMVAE's mixture) return
from encode the Gaussian they sample from for the given subset. Models that draw K samples
(MMVAE's IWAE) do so inside loss.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, Mapping, Sequence

import torch
from torch import Tensor, nn

from mmbench.config import TrainConfig
from mmbench.errors import MMBenchError
from mmbench.fusion import Gaussian
from mmbench.modality import Modality
from mmbench.objectives import annealed_beta
from mmbench.optim import adam
from mmbench.stages import Stage, StageConfig

Batch = Mapping[str, object]  # {"x": {modality: Tensor (B, ...)}, "y": Tensor (B,)[, "mask": {modality: bool (B,)}]}


@dataclass(frozen=True)
class LossOutput:
    """loss: scalar to minimise; terms: named detached scalars for logging (e.g. "kl", "rec/m0")."""

    loss: Tensor
    terms: dict[str, float]


class MultimodalVAE(nn.Module, abc.ABC):
    """Base class of every model plugin. Subclasses set ``Config`` and implement the abstract methods."""

    Config: ClassVar[type] = TrainConfig
    registry_name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""  # as papers print it (tables, figure legends); default: the registry name
    # whether ``loss`` takes batches with missing modalities (``batch["mask"]``, see ``mmbench.missing``); a model
    # that does not declare it is refused on data with missing modalities instead of training on their fill values
    supports_missing: ClassVar[bool] = False
    # the stages the trainer runs in order (``mmbench.stages``); empty: one stage, the whole model
    stages: ClassVar[tuple[Stage, ...]] = ()

    def __init__(self, modalities: Sequence[Modality], config: TrainConfig | None = None):
        super().__init__()
        modalities = list(modalities)
        if not modalities:
            raise MMBenchError(f"{type(self).__name__} needs at least one modality")
        self.check_modalities(modalities)
        self.modalities = modalities
        self.config = config if config is not None else self.Config()
        self.train_progress: tuple[int, int] | None = None  # (step, steps_per_epoch), set by begin_step
        self.active_stage: str = ""  # the stage ``loss`` computes the objective of (``begin_stage``)

    # -- things a plugin may override -------------------------------------------------------------
    @classmethod
    def check_modalities(cls, modalities: Sequence[Modality]) -> None:
        """Raise MMBenchError if this model cannot take these modalities (default: what the shared
        networks of ``mmbench.nets`` support)."""
        from mmbench.nets import check_supported

        check_supported(modalities, cls.registry_name or cls.__name__)

    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def prior(self, n: int) -> Gaussian:
        """p(z) for n samples; N(0, I) unless a model overrides it."""
        zeros = torch.zeros(n, self.latent_dim, device=self.device)
        return Gaussian(zeros, zeros)

    def sample_prior(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n draws z ~ p(z), shape (n, D): ``prior(n)``'s unless a model's p(z) is not Gaussian (MMVAE+'s Laplace)."""
        return self.prior(n).rsample(generator=generator)

    def make_optimizer(self, params=None, lr: float | None = None) -> torch.optim.Optimizer:
        """The optimiser over ``params`` (default: every parameter) at ``lr`` (default: config.lr); a staged
        model's trainer passes one stage's parameters and its lr."""
        return adam(self.parameters() if params is None else params, self.config.lr if lr is None else lr)

    # -- stages (mmbench.stages; models without stages use none of these) -------------------------------
    def stage_config(self, stage: Stage) -> StageConfig:
        """The budget of ``stage``: the config field named after it."""
        return getattr(self.config, stage.name)

    def begin_stage(self, stage: Stage) -> None:
        """Called by the trainer before the first step of ``stage`` (also when a run resumes inside it);
        ``loss`` then computes that stage's objective."""
        self.active_stage = stage.name

    def end_stage(self, stage: Stage, data) -> None:
        """Called after the last step of ``stage`` (in eval mode, without gradients), before the checkpoint that
        ends it: fit what the later stages need from the trained modules (e.g. latent standardisation buffers on
        ``data``, the training set). Must be deterministic (no RNG): a resumed run computes the same."""

    def begin_step(self, step: int, steps_per_epoch: int) -> None:
        """Called by the trainer before each training step's ``loss`` (step counts from 0, also across a
        resume), for schedules such as KL annealing; the default records the progress for ``kl_weight``."""
        self.train_progress = (step, steps_per_epoch)

    def kl_weight(self) -> float:
        """The KL weight for this loss: config.beta, annealed from 0 over config.warmup_epochs while training
        when the config has that field (``objectives.annealed_beta``); beta itself in evaluation."""
        warmup = getattr(self.config, "warmup_epochs", 0.0)
        if not self.training or not warmup or self.train_progress is None:
            return self.config.beta
        return annealed_beta(self.config.beta, warmup, *self.train_progress)

    # -- the contract ------------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, x: Mapping[str, Tensor], subset: Sequence[str] | None = None) -> Gaussian:
        """q(z | x_subset) for a batch; subset None means every modality."""

    @abc.abstractmethod
    def decode(
        self, z: Tensor, modalities: Sequence[str] | None = None, *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Decoder means of the given modalities (all when None) for latents z (N, D); decoders that sample
        (diffusion) draw their randomness from ``generator``."""

    @abc.abstractmethod
    def loss(self, batch: Batch) -> LossOutput:
        """The training objective on one batch."""

    def forward(self, batch: Batch) -> LossOutput:
        """``loss(batch)``: the call the trainer makes, so DDP's wrapper can synchronise the gradients."""
        return self.loss(batch)

    @torch.no_grad()
    def generate(
        self, n: int, z: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Unconditional samples of every modality, z ~ p(z) unless z (n, D) is given (e.g. a score prior)."""
        if z is None:
            z = self.sample_prior(n, generator=generator)
        elif z.shape != (n, self.latent_dim):
            raise MMBenchError(f"z has shape {tuple(z.shape)}, expected ({n}, {self.latent_dim})")
        return self.decode(z.to(self.device), generator=generator)

    @torch.no_grad()
    def cond_generate(
        self,
        x: Mapping[str, Tensor],
        given: Sequence[str],
        targets: Sequence[str] | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Encode the observed subset ``given``, sample z, decode ``targets`` (all modalities when None)."""
        self.validate_subset(given)
        z = self.encode(x, given).rsample(generator=generator)
        return self.decode(z, targets, generator=generator)

    def validate_subset(self, subset: Sequence[str]) -> tuple[str, ...]:
        names = self.modality_names
        unknown = [m for m in subset if m not in names]
        if not subset or unknown:
            raise MMBenchError(f"subset {list(subset)} must name one or more of the modalities {names}")
        return tuple(m for m in names if m in subset)
