"""A deterministic model for the DDP equality test, importable by the processes ``launch_local`` spawns.

Its loss is a per-row mean with no sampling (decode the joint posterior's mean): DDP over slices of a
global batch then has the gradient of one process on the whole batch, to float rounding. The real models
draw reparameterisation noise per row, which no split of a batch can reproduce exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmbench import MultimodalVAE, register_model
from mmbench.fusion import kl_normal, product_of_stacked_experts
from mmbench.missing import batch_masks, fill_missing
from mmbench.model import LossOutput
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


def initial_weights(n: int, config: dict) -> dict:
    from mmbench.config import build_config

    torch.manual_seed(0)
    return DeterministicAE(dataset(n).modalities, build_config(DeterministicAE.Config, config)).state_dict()


def train_deterministic(out: Path, n: int, config: dict, nan_row: int | None = None) -> torch.nn.Module:
    """Train the test model in this process (one rank of a run, or alone); rank 0 saves the weights to out."""
    from mmbench.config import build_config

    env = DistEnv.from_environ()
    init_process_group(env, torch.device("cpu"))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = dataset(n)
    if nan_row is not None:
        data.x["m0"][nan_row] = float("nan")
    model = DeterministicAE(data.modalities, build_config(DeterministicAE.Config, config))
    train(
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
    return model
