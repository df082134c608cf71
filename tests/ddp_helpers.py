"""Deterministic models for the DDP equality tests, importable by the processes ``launch_local`` spawns.

Their losses are per-row means with no sampling (decode the joint posterior's mean; a staged model's stages
likewise): DDP over slices of a global batch then has the gradient of one process on the whole batch, to float
rounding. The real models draw reparameterisation noise per row, which no split of a batch can reproduce exactly.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from mmbench import MultimodalVAE, register_model
from mmbench.fusion import Gaussian, kl_normal, product_of_stacked_experts
from mmbench.missing import batch_masks, fill_missing
from mmbench.model import LossOutput
from mmbench.stages import Stage, StageConfig, StagedConfig
from mmbench.training.distributed import DistEnv, init_process_group
from mmbench.training.options import RunOptions
from mmbench.training.trainer import train
from mmbench.unimodal import UnimodalParts


@register_model("test_deterministic_ae")
class DeterministicAE(MultimodalVAE):
    """Test model: product-of-experts posterior mean decoded, Laplace likelihood plus beta KL, no sampling. With
    ``supports_missing`` (a subclass's) it takes masks: missing rows' inputs zeroed before any network reads them,
    their log-likelihoods left out."""

    def __init__(self, modalities, config=None):
        super().__init__(modalities, config)
        self.parts = UnimodalParts(self.modalities, self.config.latent_dim)

    def encode(self, x, subset=None):
        names = self.validate_subset(subset or self.modality_names)
        return product_of_stacked_experts(self.parts.experts(x, names), prior_expert=True)

    def decode(self, z, modalities=None, *, generator=None):
        return self.parts.decode_mean(z, modalities or self.modality_names)

    def loss(self, batch):
        masks = batch_masks(batch, self.modality_names)
        x = batch["x"] if masks is None else fill_missing(batch["x"], masks)
        q = self.encode(x)
        rows = torch.arange(len(q.mu), device=q.mu.device)
        ll = self.parts.log_likelihoods(x, q.mu, rows, self.modality_names)
        if masks is not None:
            ll = {m: torch.where(masks[m].to(v.device), v, 0) for m, v in ll.items()}
        per_row = sum(ll.values()) - self.config.beta * kl_normal(q)
        return LossOutput(-per_row.mean(), {"kl": kl_normal(q).mean().item()})


@dataclasses.dataclass(frozen=True)
class DeterministicStagedConfig(StagedConfig):
    """Test model of two deterministic stages.

    autoencoders: per-modality linear autoencoders.
    score:        an MLP over the standardised concatenated latents.
    hidden:       width of the score MLP.
    noise:        0: both stages deterministic; else the autoencoders' latents are perturbed by this much noise
                  and the score MLP is a denoiser of unit noise (a stochastic two-stage model).
    """

    latent_dim: int = 4
    autoencoders: StageConfig = StageConfig(epochs=2, lr=3e-3, batch_size=12)
    score: StageConfig = StageConfig(epochs=2, lr=1e-2, batch_size=9)
    hidden: int = 8
    noise: float = 0.0


@register_model("test_deterministic_staged")
class DeterministicStaged(MultimodalVAE):
    """Test model: stage "autoencoders" trains linear autoencoders (squared error, no latent noise), its end fits
    the latents' mean and scale; stage "score" trains an MLP mapping the standardised latents to their reversal
    (a fixed target, no noise). ``frozen_at_score`` holds the stage-one modules' weights as stage "score" began."""

    Config = DeterministicStagedConfig
    stages = (Stage("autoencoders", ("encoders", "decoders")), Stage("score", ("score",)))

    def __init__(self, modalities, config=None):
        super().__init__(modalities, config)
        d = self.config.latent_dim
        size = {m.name: int(torch.tensor(m.shape).prod()) for m in self.modalities}
        self.encoders = nn.ModuleDict({m: nn.Linear(n, d) for m, n in size.items()})
        self.decoders = nn.ModuleDict({m: nn.Linear(d, n) for m, n in size.items()})
        width = d * len(size)
        self.score = nn.Sequential(
            nn.Linear(width, self.config.hidden), nn.Tanh(), nn.Linear(self.config.hidden, width)
        )
        self.register_buffer("latent_mean", torch.zeros(width))
        self.register_buffer("latent_scale", torch.ones(width))
        self.frozen_at_score: dict[str, torch.Tensor] = {}

    def _latents(self, x):
        return torch.cat([self.encoders[m](x[m].flatten(1).float()) for m in self.modality_names], dim=1)

    def encode(self, x, subset=None):
        names = self.validate_subset(subset or self.modality_names)
        mu = torch.stack([self.encoders[m](x[m].flatten(1).float()) for m in names]).mean(0)
        return Gaussian(mu, torch.zeros_like(mu))

    def decode(self, z, modalities=None, *, generator=None):
        mods = modalities or self.modality_names
        return {m: self.decoders[m](z).view(len(z), *self.modalities[self.modality_names.index(m)].shape) for m in mods}

    def begin_stage(self, stage):
        super().begin_stage(stage)
        if stage.name == "score":
            self.frozen_at_score = {
                k: v.detach().clone() for k, v in self.state_dict().items() if k.startswith(("encoders", "decoders"))
            }

    def loss(self, batch):
        x, noise = batch["x"], self.config.noise
        if self.active_stage == "autoencoders":
            total = 0.0
            for m in self.modality_names:
                z = self.encoders[m](x[m].flatten(1).float())
                z = z + noise * torch.randn_like(z) if noise else z
                total = total + ((self.decoders[m](z) - x[m].flatten(1).float()) ** 2).mean()
            return LossOutput(total, {})
        z = (self._latents(x) - self.latent_mean) / self.latent_scale  # the frozen encoders, in the graph
        if not noise:
            return LossOutput(((self.score(z) - z.flip(1)) ** 2).mean(), {})
        eps = torch.randn_like(z)
        return LossOutput(((self.score(z.detach() + eps) - eps) ** 2).mean(), {"denoise": 0.0})

    def end_stage(self, stage, data):
        if stage.name == "autoencoders":
            z = self._latents(data.x)
            self.latent_mean.copy_(z.mean(0))
            self.latent_scale.copy_(z.std(0) + 1e-3)


MODELS_HERE = {"test_deterministic_ae": DeterministicAE, "test_deterministic_staged": DeterministicStaged}


def dataset(n: int):
    from mmbench.data.base import MultimodalDataset
    from mmbench.modality import Modality

    g = torch.Generator().manual_seed(0)
    mods = [Modality(f"m{i}", (3, 28, 28)) for i in range(2)]
    return MultimodalDataset(
        mods,
        {m.name: torch.rand(n, *m.shape, generator=g) for m in mods},
        torch.randint(0, 10, (n,), generator=g),
        "tiny",
    )


def initial_weights(n: int, config: dict, name: str = "test_deterministic_ae") -> dict:
    from mmbench.config import build_config

    cls = MODELS_HERE[name]
    torch.manual_seed(0)
    return cls(dataset(n).modalities, build_config(cls.Config, config)).state_dict()


def train_deterministic(
    out: Path, n: int, config: dict, nan_row: int | None = None, name: str = "test_deterministic_ae"
) -> torch.nn.Module:
    """Train test model ``name`` in this process (one rank of a run, or alone); rank 0 saves the weights to out,
    a staged model's every rank its weights, the stage-one weights as stage "score" began, and the stage costs."""
    from mmbench.config import build_config

    env = DistEnv.from_environ()
    init_process_group(env, torch.device("cpu"))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = dataset(n)
    if nan_row is not None:
        data.x["m0"][nan_row] = float("nan")
    cls = MODELS_HERE[name]
    model = cls(data.modalities, build_config(cls.Config, config))
    result = train(
        model,
        data,
        seed=1,
        checkpoint=Path(out) / f"ckpt-{env.world_size}.pt",
        env=env,
        options=RunOptions(checkpoint_every=2, tensorboard=False),
        progress=False,
        log=lambda s: None,
    )
    if env.is_main:
        torch.save(model.state_dict(), Path(out) / f"weights-{env.world_size}.pt")
    if model.stages:
        tag = f"{env.world_size}-rank{env.rank}"
        torch.save(model.state_dict(), Path(out) / f"weights-{tag}.pt")
        torch.save(model.frozen_at_score, Path(out) / f"frozen-{tag}.pt")
        (Path(out) / f"stages-{tag}.json").write_text(json.dumps(result.stages))
    return model
