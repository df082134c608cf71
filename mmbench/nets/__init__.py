"""Shared encoders and decoders, chosen per modality by ``default_encoder`` / ``default_decoder``."""

from __future__ import annotations

from torch import nn

from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.nets.mlp import MLPDecoder, MLPEncoder
from mmbench.nets.polymnist import PolyMNISTDecoder, PolyMNISTEncoder

POLYMNIST_SHAPE = (3, 28, 28)


def check_supported(modalities, model: str) -> None:
    """Refuse modalities the shared networks cannot model: categorical ones (text) need a text encoder
    and decoder, which the harness does not ship yet."""
    for m in modalities:
        if m.likelihood == "categorical":
            raise MMBenchError(f"model {model!r} cannot take modality {m.name!r} ({m.kind}, categorical likelihood): "
                               "the shared networks have no text encoder/decoder yet")


def default_encoder(modality: Modality, latent_dim: int) -> nn.Module:
    """PolyMNIST conv encoder for 3x28x28 images, else an MLP over the flattened input."""
    if modality.shape == POLYMNIST_SHAPE:
        return PolyMNISTEncoder(latent_dim)
    return MLPEncoder(modality.shape, latent_dim)


def default_decoder(modality: Modality, latent_dim: int) -> nn.Module:
    """PolyMNIST conv decoder for 3x28x28 images, else an MLP (sigmoid added for data in [0, 1])."""
    if modality.shape == POLYMNIST_SHAPE:
        return PolyMNISTDecoder(latent_dim)
    dec = MLPDecoder(latent_dim, modality.shape)
    if modality.likelihood in ("laplace", "normal") and modality.kind in ("image", "mask"):
        return nn.Sequential(dec, nn.Sigmoid())
    return dec


__all__ = ["check_supported", "MLPDecoder", "MLPEncoder", "PolyMNISTDecoder", "PolyMNISTEncoder", "default_decoder", "default_encoder"]
