"""MMVAE+: shared and modality-specific latents with auxiliary priors (Palumbo, Daunhawer & Vogt, ICLR 2023)."""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from mmbench.config import TrainConfig, check_choice, check_range
from mmbench.errors import MMBenchError
from mmbench.fusion import Gaussian, full_precision
from mmbench.missing import batch_masks, fill_missing, observed
from mmbench.modality import Modality
from mmbench.model import LossOutput, MultimodalVAE
from mmbench.nets import POLYMNIST_SHAPE, default_decoder, default_encoder
from mmbench.nets.resnet_polymnist import ResNetPolyMNISTDecoder, ResNetPolyMNISTEncoder
from mmbench.objectives import Likelihood, importance_objective
from mmbench.optim import adam
from mmbench.registry import register_model
from mmbench.unimodal import decoded_log_prob, decoded_mean

ESTIMATORS = ("elbo", "dreg")
NETWORKS = ("resnet", "conv")
ETA = 1e-6  # added to every scale, as MMVAE+'s code


class Laplace(NamedTuple):
    """Laplace(loc, scale) with log_prob summed over the last dimension; sampling takes a generator."""

    loc: Tensor
    scale: Tensor

    def log_prob(self, x: Tensor) -> Tensor:
        return (-torch.log(2 * self.scale) - (x - self.loc).abs() / self.scale).sum(-1)

    def rsample(self, shape: tuple[int, ...] = (), *, generator: torch.Generator | None = None) -> Tensor:
        full = (*shape, *torch.broadcast_shapes(self.loc.shape, self.scale.shape))
        u = torch.rand(full, generator=generator, dtype=self.loc.dtype).to(self.loc.device) * 2 - 1
        u = u.clamp(-1 + 1e-7, 1 - 1e-7)
        return self.loc - self.scale * u.sign() * torch.log1p(-u.abs())

    def detach(self) -> "Laplace":
        return Laplace(self.loc.detach(), self.scale.detach())


def softmax_scale(raw: Tensor) -> Tensor:
    """MMVAE+'s Laplace scale parametrisation: softmax over the latent dimensions times their number."""
    return torch.softmax(raw, -1) * raw.shape[-1] + ETA


@dataclasses.dataclass(frozen=True)
class MMVAEPlusConfig(TrainConfig):
    """MMVAE+'s PolyMNIST preset: shared latent 32 and private latents 32, Laplace posteriors and priors,
    beta 2.5, ELBO with K = 1, Adam (amsgrad) 1e-3, batch 128, 150 epochs (150-250 in the paper), ResNet
    networks, Laplace likelihood with scale 0.75.

    private_dim: size of each modality-specific latent w_m.
    estimator:   "elbo" (mean of log-weights over K) or "dreg" (IWAE bound, doubly reparameterised gradients).
    k:           samples per modality and example.
    networks:    "resnet" (the paper's PolyMNIST networks) or "conv" (MoPoE's lighter PolyMNIST networks,
                 one encoder per latent; about 20x cheaper on a CPU, for budgets the ResNets do not fit).
    """

    latent_dim: int = 32
    private_dim: int = 32
    beta: float = 2.5
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 150
    estimator: str = "elbo"
    k: int = 1
    likelihood_scale: float = 0.75
    networks: str = "resnet"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "networks", NETWORKS)
        check_range(self, "private_dim", lo=1)
        check_range(self, "k", lo=1)
        check_range(self, "likelihood_scale", lo=0.0, lo_open=True)
        check_choice(self, "estimator", ESTIMATORS)


class _TwoLatents(nn.Module):
    """One Gaussian-headed encoder per latent (``nets.default_encoder``: MoPoE's PolyMNIST conv encoder or an
    MLP); its mean is the location, its log-variance the raw scale."""

    def __init__(self, private: nn.Module, shared: nn.Module):
        super().__init__()
        self.w = private
        self.z = shared

    def forward(self, x: Tensor):
        w, z = self.w(x), self.z(x)
        return w.mu, w.logvar, z.mu, z.logvar


@register_model("mmvaeplus")
class MMVAEPlus(MultimodalVAE):
    """MMVAE+ (Palumbo et al. 2023): shared z plus private w per modality, auxiliary priors for cross-modal decoding.
    Missing modalities: MultiVae's MMVAE+ (mixture, strata and reconstructions over each row's observed modalities)."""

    display_name = "MMVAE+"
    supports_missing = True
    Config = MMVAEPlusConfig
    config: MMVAEPlusConfig

    def __init__(self, modalities: Sequence[Modality], config: MMVAEPlusConfig | None = None):
        super().__init__(modalities, config)
        cfg = self.config
        self.encoders = nn.ModuleDict({m.name: self._encoder(m) for m in self.modalities})
        self.decoders = nn.ModuleDict({m.name: self._decoder(m) for m in self.modalities})
        self.likelihoods = {m.name: Likelihood(m.likelihood, cfg.likelihood_scale) for m in self.modalities}
        # Auxiliary prior r_m(w) for cross-modal decoding: Laplace(0, softmax(l_m) * Dw), l_m learnable.
        self.aux_raw_scale = nn.ParameterDict(
            {m.name: nn.Parameter(torch.zeros(cfg.private_dim)) for m in self.modalities}
        )

    def _encoder(self, m: Modality) -> nn.Module:
        dz, dw = self.config.latent_dim, self.config.private_dim
        if m.shape == POLYMNIST_SHAPE and self.config.networks == "resnet":
            return ResNetPolyMNISTEncoder(dw, dz)
        return _TwoLatents(default_encoder(m, dw), default_encoder(m, dz))

    def _decoder(self, m: Modality) -> nn.Module:
        dim = self.config.latent_dim + self.config.private_dim
        if m.shape == POLYMNIST_SHAPE and self.config.networks == "resnet":
            return ResNetPolyMNISTDecoder(dim)
        return default_decoder(m, dim)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), self.config.lr, amsgrad=True)

    # -- distributions ------------------------------------------------------------------------------
    def posteriors(self, x: Mapping[str, Tensor], names: Sequence[str]) -> tuple[dict, dict]:
        """q(w_m|x_m) and q(z|x_m) for the named modalities, as Laplace distributions."""
        qw, qz = {}, {}
        for m in names:
            lw, rw, lz, rz = (full_precision(t) for t in self.encoders[m](x[m]))  # fp32 under bf16 autocast
            qw[m], qz[m] = Laplace(lw, softmax_scale(rw)), Laplace(lz, softmax_scale(rz))
        return qw, qz

    def standard_prior(self, dim: int, device) -> Laplace:
        """p(z) and p(w): Laplace(0, softmax(0) * D + eta) = Laplace(0, 1 + eta)."""
        zeros = torch.zeros(dim, device=device)
        return Laplace(zeros, softmax_scale(zeros))

    def aux_prior(self, m: str) -> Laplace:
        raw = self.aux_raw_scale[m]
        return Laplace(torch.zeros_like(raw), softmax_scale(raw))

    # -- the contract -------------------------------------------------------------------------------
    def encode(self, x: Mapping[str, Tensor], subset: Sequence[str] | None = None) -> Gaussian:
        """The shared latent: the Gaussian with the mean and variance of (1/|A|) sum_{m in A} q(z|x_m)
        (a Laplace's variance is 2 scale^2). Generation samples the mixture itself (``cond_generate``)."""
        subset = self.validate_subset(subset or self.modality_names)
        _, qz = self.posteriors(x, subset)
        locs = torch.stack([qz[m].loc for m in subset])
        second = torch.stack([2 * qz[m].scale ** 2 + qz[m].loc ** 2 for m in subset]).mean(0)
        mean = locs.mean(0)
        return Gaussian(mean, torch.log((second - mean**2).clamp_min(1e-12)))

    def _decode_with(self, z: Tensor, targets: Sequence[str], w: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {m: decoded_mean(self.decoders[m], self.likelihoods[m], torch.cat([w[m], z], -1)) for m in targets}

    def decode(self, z: Tensor, modalities: Sequence[str] | None = None, *, generator=None) -> dict[str, Tensor]:
        """Decoder means with each private latent at its prior's location (0); ``generate`` samples it."""
        targets = modalities or self.modality_names
        zero_w = torch.zeros(z.shape[0], self.config.private_dim, device=z.device)
        return self._decode_with(z, targets, {m: zero_w for m in targets})

    def _sample_private(self, n: int, targets: Sequence[str], generator) -> dict[str, Tensor]:
        pw = self.standard_prior(self.config.private_dim, self.device)
        return {m: pw.rsample((n,), generator=generator) for m in targets}

    def sample_prior(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """z ~ p(z) = Laplace(0, 1 + eta), shape (n, D)."""
        return self.standard_prior(self.latent_dim, self.device).rsample((n,), generator=generator)

    @torch.no_grad()
    def generate(
        self, n: int, z: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """z ~ p(z) (or the given z), w_m ~ p(w) for every modality."""
        if z is None:
            z = self.sample_prior(n, generator=generator)
        elif z.shape != (n, self.latent_dim):
            raise MMBenchError(f"z has shape {tuple(z.shape)}, expected ({n}, {self.latent_dim})")
        return self._decode_with(z, self.modality_names, self._sample_private(n, self.modality_names, generator))

    @torch.no_grad()
    def cond_generate(self, x, given, targets=None, *, generator=None):
        """z from the mixture of the given modalities' q(z|x_m) (one picked per row), w_m ~ p(w)."""
        given = self.validate_subset(given)
        targets = targets or self.modality_names
        _, qz = self.posteriors(x, given)
        b = qz[given[0]].loc.shape[0]
        pick = torch.randint(0, len(given), (b,), generator=generator).to(self.device)
        rows = torch.arange(b, device=self.device)
        loc = torch.stack([qz[m].loc for m in given])[pick, rows]
        scale = torch.stack([qz[m].scale for m in given])[pick, rows]
        z = Laplace(loc, scale).rsample(generator=generator)
        return self._decode_with(z, targets, self._sample_private(b, targets, generator))

    def loss(self, batch) -> LossOutput:
        """(1/M) sum_r E over K of log w_r, with (REFERENCE.md; Palumbo et al. 2023, eq. 4)

        log w_r = sum_d log p(x_d | z_r, w_d) + beta [log p(z_r) + log p(w_r) - log (1/M) sum_m q(z_r|x_m)
                  - log q(w_r|x_r)],   w_d = w_r for d = r, else w_d ~ r_d(w) (auxiliary prior).

        Rows with missing modalities (``batch["mask"]``), as MultiVae's MMVAE+: r, d and the mixture's m run over
        the row's observed modalities O, and 1/M becomes 1/|O|.
        """
        x = batch["x"]
        names = self.modality_names
        cfg = self.config
        k, big_m = cfg.k, len(names)
        masks = batch_masks(batch, names)
        obs = None
        if masks is not None:
            x = fill_missing(x, masks)
            obs = observed(masks, names).to(self.device)  # (M, B)
        qw, qz = self.posteriors(x, names)
        dreg = cfg.estimator == "dreg"
        score_qw = {m: q.detach() for m, q in qw.items()} if dreg else qw
        score_qz = {m: q.detach() for m, q in qz.items()} if dreg else qz
        pz = self.standard_prior(cfg.latent_dim, self.device)
        pw = self.standard_prior(cfg.private_dim, self.device)
        total = 0.0
        for i, r in enumerate(names):
            z = qz[r].rsample((k,))  # (K, B, Dz)
            w = qw[r].rsample((k,))  # (K, B, Dw)
            rec = 0.0
            for j, d in enumerate(names):
                w_d = w if d == r else self.aux_prior(d).rsample(w.shape[:-1])
                target = x[d].unsqueeze(0).expand(k, *x[d].shape).flatten(0, 1)
                zw = torch.cat([w_d, z], -1).flatten(0, 1)
                term = decoded_log_prob(self.decoders[d], self.likelihoods[d], target, zw).view(k, -1)
                rec = rec + (term if obs is None else torch.where(obs[j], term, 0))
            log_q = torch.stack([score_qz[m].log_prob(z) for m in names])  # (M, K, B)
            if obs is None:
                log_mix = torch.logsumexp(log_q, 0) - math.log(big_m)
            else:
                log_q = torch.where(obs[:, None], log_q, -math.inf)
                log_mix = torch.logsumexp(log_q, 0) - torch.log(obs.sum(0).to(log_q))
            lw = rec + cfg.beta * (pz.log_prob(z) + pw.log_prob(w) - log_mix - score_qw[r].log_prob(w))
            objective = importance_objective(lw, cfg.estimator, (z, w))
            total = total + (objective if obs is None else torch.where(obs[i], objective, 0))
        if obs is None:
            loss = -(total / big_m).mean()
        else:
            loss = -(total / obs.sum(0).to(total)).mean()
        return LossOutput(loss, {"elbo": -loss.item()})
