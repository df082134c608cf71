"""MultiVae's MoPoE, MVTCAE and MMVAE+ built on mmbench's own network modules, for side-by-side step timings.

Run with the peer environment only (``bash benchmarks/setup_multivae.sh``):

    OMP_NUM_THREADS=1 benchmarks/.venv-multivae/bin/python benchmarks/multivae_models.py

``build_multivae(model, modalities, latent_dim, encoders, decoders, **kw) -> (multivae_model, step_fn)``
    model:      "mopoe" | "mvtcae" | "mmvaeplus"; modalities are named "m0".."m{M-1}", images 3x28x28.
    encoders:   {name: module}. mmbench encoders (``Gaussian(mu, logvar)`` out) or, for MMVAE+, mmbench's
                two-latent encoders (``(loc_w, raw_w, loc_z, raw_z)`` out: ``baselines.mmvaeplus._TwoLatents``,
                ``ResNetPolyMNISTEncoder``); they are wrapped with ``wrap_encoder`` unless they already are
                MultiVae/pythae ``BaseEncoder``s. decoders likewise (``wrap_decoder``).
    kw:         any field of the model's MultiVae config overrides the preset below (e.g. beta=1.0, K=10,
                loss="dreg_looser"); besides: device (moves the model), validate_args (None: leave
                torch.distributions' default, i.e. validation on, as MultiVae runs; False: switch it off,
                process-wide).
    step_fn(batch, optimizer) -> float: one step as MultiVae's ``BaseTrainer.train_step`` does it per batch:
                ``model(DatasetOutput(data=batch), epoch=..., dataset_size=..., uses_ddp=False, batch_ratio=...)``,
                ``optimizer.zero_grad(); output.loss.backward(); optimizer.step()``, then one ``.item()`` (the
                trainer reads ``loss_sum.item()`` every batch; we read ``loss.item()``, the same single sync).

Presets (the papers' PolyMNIST settings, as far as MultiVae 1.0.3 expresses them):
    all:       decoders_dist {m: "laplace"}, decoder_dist_params {m: {"scale": 0.75}},
               input_dims {m: (3, 28, 28)}, uses_likelihood_rescaling False.
    MoPoEConfig:      latent_dim, beta=2.5 (subsets None = all 2^M - 1 non-empty subsets;
                      modalities_specific_dim None = one latent space).
    MVTCAEConfig:     latent_dim, alpha=5/6, beta=2.5.
    MMVAEPlusConfig:  latent_dim (shared, default 32 in the paper), modalities_specific_dim=latent_dim unless
                      given (private, 32), beta=2.5, K=1, loss="iwae_looser" (with K = 1 exactly the ELBO;
                      "dreg_looser" would detach the posteriors: the sticking-the-landing gradient),
                      prior_and_posterior_dist="laplace_with_softmax", learn_shared_prior=False,
                      learn_modality_prior=True.
    MMVAE+ decoders get torch.cat([z_shared, w_private]) in MultiVae but [w, z] in mmbench: the same module
    costs the same either way, but for equal loss values on equal weights permute the halves (a wrapper).
    MMVAE+'s loss is summed over the batch in MultiVae (MoPoE's and MVTCAE's are batch means, as mmbench's).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import torch
from multivae.data.datasets.base import DatasetOutput
from multivae.models import MVTCAE, MMVAEPlus, MMVAEPlusConfig, MoPoE, MoPoEConfig, MVTCAEConfig
from multivae.models.nn.base_architectures import BaseDecoder, BaseEncoder, BaseMultilatentEncoder
from pythae.models.base.base_utils import ModelOutput
from torch import Tensor, nn

IMAGE_SHAPE = (3, 28, 28)
LIKELIHOOD_SCALE = 0.75
MODELS = ("mopoe", "mvtcae", "mmvaeplus")


class MultiVaeEncoder(BaseMultilatentEncoder):
    """An mmbench encoder in MultiVae's encoder contract.

    ``Gaussian(mu, logvar)``            -> ModelOutput(embedding=mu, log_covariance=logvar)
    ``(loc_w, raw_w, loc_z, raw_z)``    -> ModelOutput(embedding=loc_z, log_covariance=raw_z,
                                                       style_embedding=loc_w, style_log_covariance=raw_w)
    (the latter is mmbench's MMVAE+ encoder output: w private, z shared; MultiVae's MMVAE+ turns the
    "log_covariance" fields into Laplace scales with softmax(.) * D + 1e-6, as mmbench's ``softmax_scale``).
    A ``BaseMultilatentEncoder`` is a ``BaseEncoder`` (all MultiVae models accept it; only models with
    private latent spaces read the style fields).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> ModelOutput:
        out = self.net(x)
        if hasattr(out, "mu") and hasattr(out, "logvar"):  # mmbench.fusion.Gaussian
            return ModelOutput(embedding=out.mu, log_covariance=out.logvar)
        if isinstance(out, (tuple, list)) and len(out) == 4:
            loc_w, raw_w, loc_z, raw_z = out
            return ModelOutput(embedding=loc_z, log_covariance=raw_z, style_embedding=loc_w, style_log_covariance=raw_w)
        raise TypeError(
            f"{type(self.net).__name__} returned {type(out).__name__}: expected mmbench's Gaussian "
            "or a (loc_w, raw_w, loc_z, raw_z) tuple"
        )


class MultiVaeDecoder(BaseDecoder):
    """An mmbench decoder (latent -> likelihood location tensor) in MultiVae's contract:
    ModelOutput(reconstruction=tensor)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z: Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=self.net(z))


def wrap_encoder(mmbench_encoder: nn.Module) -> BaseEncoder:
    """mmbench encoder -> MultiVae encoder (the same module inside: its parameters are shared, not copied)."""
    return mmbench_encoder if isinstance(mmbench_encoder, BaseEncoder) else MultiVaeEncoder(mmbench_encoder)


def wrap_decoder(mmbench_decoder: nn.Module) -> BaseDecoder:
    """mmbench decoder -> MultiVae decoder (the same module inside)."""
    return mmbench_decoder if isinstance(mmbench_decoder, BaseDecoder) else MultiVaeDecoder(mmbench_decoder)


def _names(modalities: int) -> list[str]:
    return [f"m{i}" for i in range(modalities)]


def _config(model: str, modalities: int, latent_dim: int, overrides: Mapping):
    names = _names(modalities)
    common = dict(
        n_modalities=modalities,
        latent_dim=latent_dim,
        input_dims={m: IMAGE_SHAPE for m in names},
        uses_likelihood_rescaling=False,
        decoders_dist={m: "laplace" for m in names},
        decoder_dist_params={m: {"scale": LIKELIHOOD_SCALE} for m in names},
    )
    if model == "mopoe":
        cls, preset = MoPoEConfig, dict(beta=2.5)
    elif model == "mvtcae":
        cls, preset = MVTCAEConfig, dict(alpha=5 / 6, beta=2.5)
    elif model == "mmvaeplus":
        cls, preset = (
            MMVAEPlusConfig,
            dict(
                modalities_specific_dim=latent_dim,
                beta=2.5,
                K=1,
                loss="iwae_looser",
                prior_and_posterior_dist="laplace_with_softmax",
                learn_shared_prior=False,
                learn_modality_prior=True,
            ),
        )
    else:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(overrides) - fields
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    return cls(**{**common, **preset, **overrides})


def build_multivae(
    model: str,
    modalities: int,
    latent_dim: int,
    encoders: Mapping[str, nn.Module],
    decoders: Mapping[str, nn.Module],
    **kw,
) -> tuple[nn.Module, Callable[[Mapping[str, Tensor], torch.optim.Optimizer], float]]:
    """MultiVae's ``model`` over the given (wrapped) networks, and its one-step training function."""
    device = kw.pop("device", None)
    validate_args = kw.pop("validate_args", None)
    dataset_size = kw.pop("dataset_size", 60_000)  # only passed through, as the trainer does (unused by these 3)
    names = _names(modalities)
    if sorted(encoders) != sorted(names) or sorted(decoders) != sorted(names):
        raise ValueError(f"encoders and decoders must be keyed {names}")
    if validate_args is not None:
        torch.distributions.Distribution.set_default_validate_args(bool(validate_args))
    config = _config(model, modalities, latent_dim, kw)
    cls = {"mopoe": MoPoE, "mvtcae": MVTCAE, "mmvaeplus": MMVAEPlus}[model]
    net = cls(
        config,
        encoders={m: wrap_encoder(encoders[m]) for m in names},
        decoders={m: wrap_decoder(decoders[m]) for m in names},
    )
    if device is not None:
        net = net.to(device)
        net.device = torch.device(device)
    net.train()  # the trainer's train_step calls model.train() once per epoch

    def step_fn(batch: Mapping[str, Tensor], optimizer: torch.optim.Optimizer) -> float:
        """One MultiVae training step on ``batch`` ({"m0": (B, 3, 28, 28), ...}, already on the model's device)."""
        inputs = DatasetOutput(data=dict(batch))
        output = net(inputs, epoch=1, dataset_size=dataset_size, uses_ddp=False, batch_ratio=0.0)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        return output.loss.item()

    return net, step_fn


def _demo(m_count: int = 3, batch: int = 8, steps: int = 2) -> None:
    from importlib.metadata import version

    from baselines.mmvaeplus import _TwoLatents  # mmbench's MMVAE+ "conv" encoder: one PolyMNIST encoder per latent
    from mmbench.modality import Modality
    from mmbench.nets import PolyMNISTDecoder, PolyMNISTEncoder, default_encoder

    print(f"multivae {version('multivae')}, pythae {version('pythae')}, torch {torch.__version__}")
    torch.manual_seed(0)
    names = _names(m_count)
    assert isinstance(default_encoder(Modality("m0", IMAGE_SHAPE), 8), PolyMNISTEncoder)
    x = {m: torch.rand(batch, *IMAGE_SHAPE) for m in names}
    for model in MODELS:
        if model == "mmvaeplus":
            dz = dw = 32
            enc = {m: _TwoLatents(PolyMNISTEncoder(dw), PolyMNISTEncoder(dz)) for m in names}
            dec = {m: PolyMNISTDecoder(dz + dw) for m in names}
            net, step = build_multivae(model, m_count, dz, enc, dec)
        else:
            dim = 512
            enc = {m: PolyMNISTEncoder(dim) for m in names}
            dec = {m: PolyMNISTDecoder(dim) for m in names}
            net, step = build_multivae(model, m_count, dim, enc, dec)
        # the wrapped modules are the very objects given (parameters shared, nothing copied)
        assert all(net.encoders[m].net is enc[m] and net.decoders[m].net is dec[m] for m in names)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        losses = [step(x, opt) for _ in range(steps)]
        assert all(torch.isfinite(torch.tensor(v)) for v in losses), losses
        n_params = sum(p.numel() for p in net.parameters())
        print(
            f"{model:10s} {type(net.model_config).__name__}: {net.model_config.to_dict() if hasattr(net.model_config, 'to_dict') else ''}"
        )
        print(f"{model:10s} params {n_params}  losses {[round(v, 2) for v in losses]}")


if __name__ == "__main__":
    _demo()
