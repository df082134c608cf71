"""Shared encoders and decoders, chosen per modality by kind and shape (``networks_for``).

    text with a pretrained text VAE (pairs 2 x L)        BERT encoder, GPT-2 decoder      nets.pretrained_text
    captions (text, categorical, L tokens, L % 8 == 0)   MMVAE's CUB sentence CNN         nets.text
    other categorical modalities                         one-hot MLP, logits per entry    nets.mlp
    masks C x S x S, S = 4 * 2^k                         strided-conv nets, Bernoulli     nets.masks
    images 3 x 28 x 28                                   MoPoE's PolyMNIST conv nets      nets.polymnist
    images C x 32 x 32                                   the PolyMNIST nets sized for 32  nets.image32
    images C x 64 x 64, C x 128 x 128                    Soft-IntroVAE's ResNet           nets.resnet_softintro
    anything else (attributes, vectors, other sizes)     MLP                              nets.mlp

Every encoder returns a ``Gaussian`` (fp32 heads, clamped log-variance); every decoder returns its likelihood's
parameters (location, Bernoulli logits, or categorical logits over the last dimension), except a teacher-forced
one (autoregressive: the pretrained GPT-2), which scores x itself (``unimodal.decoded_log_prob``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from torch import nn

from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.nets.image32 import IMAGE32_SIZE, Image32Decoder, Image32Encoder
from mmbench.nets.masks import MaskDecoder, MaskEncoder, mask_size_fits
from mmbench.nets.mlp import MLPDecoder, MLPEncoder
from mmbench.nets.polymnist import PolyMNISTDecoder, PolyMNISTEncoder
from mmbench.nets.resnet_softintro import SOFTINTRO_WIDTHS, SoftIntroDecoder, SoftIntroEncoder
from mmbench.nets.text import SentenceCNNDecoder, SentenceCNNEncoder, sentence_length_fits

POLYMNIST_SHAPE = (3, 28, 28)


class Networks(NamedTuple):
    """The encoder and decoder a modality gets; each factory takes the latent size."""

    name: str
    encoder: Callable[[int], nn.Module]
    decoder: Callable[[int], nn.Module]


def networks_for(modality: Modality) -> Networks:
    """The shared networks for a modality, by kind and shape (module docstring); the MLP when none fits."""
    shape, k = modality.shape, modality.classes
    if modality.pretrained:  # Modality allows it for text only
        from mmbench.nets.pretrained_text import PretrainedTextDecoder, PretrainedTextEncoder

        return Networks(
            "pretrained text VAE",
            lambda d: PretrainedTextEncoder(modality.pretrained, d),
            lambda d: PretrainedTextDecoder(modality.pretrained, d, shape[-1]),
        )
    if modality.likelihood == "categorical":
        if modality.kind == "text" and len(shape) == 1 and sentence_length_fits(shape[0]):
            return Networks(
                "sentence CNN",
                lambda d: SentenceCNNEncoder(k, d, shape[0]),
                lambda d: SentenceCNNDecoder(d, k, shape[0]),
            )
        return Networks(
            "one-hot MLP", lambda d: MLPEncoder(shape, d, classes=k), lambda d: MLPDecoder(d, shape, classes=k)
        )
    if len(shape) == 3 and shape[1] == shape[2]:
        channels, side = shape[0], shape[1]
        if modality.kind == "mask" and mask_size_fits(side):
            return Networks(
                "mask conv", lambda d: MaskEncoder(channels, side, d), lambda d: MaskDecoder(d, channels, side)
            )
        if shape == POLYMNIST_SHAPE:
            return Networks("PolyMNIST conv", PolyMNISTEncoder, PolyMNISTDecoder)
        if side == IMAGE32_SIZE:
            return Networks("32x32 conv", lambda d: Image32Encoder(channels, d), lambda d: Image32Decoder(d, channels))
        if side in SOFTINTRO_WIDTHS:
            return Networks(
                "Soft-IntroVAE ResNet",
                lambda d: SoftIntroEncoder(channels, side, d),
                lambda d: SoftIntroDecoder(d, channels, side),
            )
    return Networks("MLP", lambda d: MLPEncoder(shape, d), lambda d: _mlp_decoder(modality, d))


def _mlp_decoder(modality: Modality, latent_dim: int) -> nn.Module:
    """An MLP decoder, with a sigmoid for image-like data in [0, 1] under a Laplace or Normal likelihood."""
    dec = MLPDecoder(latent_dim, modality.shape)
    if modality.likelihood in ("laplace", "normal") and modality.kind in ("image", "mask"):
        return nn.Sequential(dec, nn.Sigmoid())
    return dec


def check_supported(modalities, model: str) -> None:
    """Refuse, in one line, a modality no shared network can take: one without dimensions (a scalar per
    example) or with a dimension of size 0. Everything else has a network (``networks_for``)."""
    for m in modalities:
        if not m.shape or 0 in m.shape:
            raise MMBenchError(
                f"model {model!r} cannot take modality {m.name!r} ({m.kind} of shape {m.shape}): "
                "the shared networks need one or more dimensions, none of size 0 "
                "(declare a scalar per example as shape (1,))"
            )


def default_encoder(modality: Modality, latent_dim: int) -> nn.Module:
    """q(z|x) network for a modality (``networks_for``)."""
    return networks_for(modality).encoder(latent_dim)


def default_decoder(modality: Modality, latent_dim: int) -> nn.Module:
    """Likelihood-parameter network for a modality (``networks_for``)."""
    return networks_for(modality).decoder(latent_dim)


__all__ = [
    "POLYMNIST_SHAPE",
    "Networks",
    "check_supported",
    "default_decoder",
    "default_encoder",
    "networks_for",
    "Image32Decoder",
    "Image32Encoder",
    "MLPDecoder",
    "MLPEncoder",
    "MaskDecoder",
    "MaskEncoder",
    "PolyMNISTDecoder",
    "PolyMNISTEncoder",
    "SentenceCNNDecoder",
    "SentenceCNNEncoder",
    "SoftIntroDecoder",
    "SoftIntroEncoder",
]
