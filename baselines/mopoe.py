"""MoPoE: mixture of products of experts (Sutter, Daunhawer & Vogt, ICLR 2021)."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from torch import Tensor

from mmbench.config import check_choice
from mmbench.errors import MMBenchError
from mmbench.fusion import Gaussian
from mmbench.mixture import SubsetMixtureConfig, SubsetMixtureVAE
from mmbench.modality import LIKELIHOODS, Modality
from mmbench.registry import register_model
from mmbench.unimodal import UnimodalParts


@dataclasses.dataclass(frozen=True)
class MoPoEConfig(SubsetMixtureConfig):  # prior_expert, estimator, kl_estimator, likelihood_scale: the base's
    """MoPoE's PolyMNIST preset (Sutter et al. 2021 and their code): latent 512, beta 2.5, Adam 5e-4,
    batch 256, 300 epochs, Laplace likelihood with scale 0.75.

    likelihood: "" keeps each modality's own likelihood (Laplace for PolyMNIST); or one for all.
    """

    latent_dim: int = 512
    beta: float = 2.5
    lr: float = 5e-4
    batch_size: int = 256
    epochs: int = 300
    likelihood: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "likelihood", ("", *LIKELIHOODS))


@register_model("mopoe")
class MoPoE(SubsetMixtureVAE):
    """MoPoE (Sutter et al. 2021): mixture over all 2^M-1 subsets of products of experts, eq. 3 ELBO with
    feed-forward decoders. Missing modalities: MultiVae's MoPoE (a row's observed subsets, weights renormalised)."""

    display_name = "MoPoE"
    Config = MoPoEConfig
    config: MoPoEConfig

    def __init__(self, modalities: Sequence[Modality], config: MoPoEConfig | None = None):
        super().__init__(modalities, config)
        cfg = self.config
        # categorical decoders output logits per class, the others data-shaped outputs: an override cannot cross
        categorical = cfg.likelihood == "categorical"
        clash = [m.name for m in self.modalities if cfg.likelihood and categorical != (m.likelihood == "categorical")]
        if clash:
            raise MMBenchError(
                f"MoPoEConfig.likelihood = {cfg.likelihood!r} cannot replace the likelihood of "
                f"modalities {clash} (categorical and other decoders differ); leave it '' for their own"
            )
        self.parts = UnimodalParts(self.modalities, cfg.latent_dim, cfg.likelihood_scale, cfg.likelihood)

    def experts(self, x: Mapping[str, Tensor], names: Sequence[str]) -> Gaussian:
        return self.parts.experts(x, names)

    def log_likelihoods(self, x: Mapping[str, Tensor], z: Tensor, rows: Tensor) -> dict[str, Tensor]:
        return self.parts.log_likelihoods(x, z, rows, self.modality_names)

    def decode(self, z: Tensor, modalities: Sequence[str] | None = None, *, generator=None) -> dict[str, Tensor]:
        return self.parts.decode_mean(z, modalities or self.modality_names)
