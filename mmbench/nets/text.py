"""MMVAE's CUB sentence CNN (Shi, Siddharth, Paige & Torr, NeurIPS 2019; github iffsid/mmvae,
src/models/vae_cub_sent.py): a caption of L tokens is embedded (128 per token) and read as a 1 x L x 128 image.

Encoder: Conv 1->32->64->128 (k4 s2 p1; L x 128 -> L/8 x 16), Conv 128->128 twice with (1, 4) kernels halving the
embedding axis only (-> L/8 x 4), each with BatchNorm and ReLU, then heads mu and logvar over the flattened map.
Decoder: the mirror image with transposed convolutions back to 1 x L x 128 (ReLU), then a Linear 128 -> vocabulary
per token: logits (N, L, classes) for the categorical likelihood.
The reference's L = 32 (CUB captions: 31 words and <eos>, padded); any L divisible by 8 works here.
Departures: the reference's encoder ends in two 4x4 convolutions over the 4x4 map, here Linear heads over that
map flattened (the same maps). The reference ties the output Linear to the encoder's embedding and gives the
embedding padding_idx 0; here encoder and decoder are built apart (a model may pair any encoder with any
decoder), each with its own weights, and every token's embedding is learned (index 0 is <exc> in the published
vocabulary, not <pad>).
"""

from __future__ import annotations

from torch import Tensor, nn

from mmbench.fusion import LOGVAR_LIMIT, Gaussian, full_precision

EMBEDDING_DIM = 128
TOKEN_HALVINGS = 3  # the token axis is halved three times: L must be divisible by 8


def sentence_length_fits(length: int) -> bool:
    """Whether the sentence CNN takes captions of this many tokens."""
    return length >= 2**TOKEN_HALVINGS and length % 2**TOKEN_HALVINGS == 0


def _conv_bn_relu(conv: nn.Module, width: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(width), nn.ReLU()]


class SentenceCNNEncoder(nn.Module):
    """Tokens (B, L), integer indices below ``classes`` -> Gaussian q(z|x)."""

    def __init__(self, classes: int, latent_dim: int, length: int = 32, base: int = 32):
        super().__init__()
        if not sentence_length_fits(length):
            raise ValueError(f"the sentence CNN takes captions whose length is a multiple of 8, got {length}")
        self.embedding = nn.Embedding(classes, EMBEDDING_DIM)
        w1, w2, w4 = base, 2 * base, 4 * base
        self.features = nn.Sequential(
            *_conv_bn_relu(nn.Conv2d(1, w1, 4, 2, 1, bias=False), w1),
            *_conv_bn_relu(nn.Conv2d(w1, w2, 4, 2, 1, bias=False), w2),
            *_conv_bn_relu(nn.Conv2d(w2, w4, 4, 2, 1, bias=False), w4),
            *_conv_bn_relu(nn.Conv2d(w4, w4, (1, 4), (1, 2), (0, 1), bias=False), w4),
            *_conv_bn_relu(nn.Conv2d(w4, w4, (1, 4), (1, 2), (0, 1), bias=False), w4),
            nn.Flatten(),
        )
        flat = w4 * (length // 8) * (EMBEDDING_DIM // 32)
        self.mu = nn.Linear(flat, latent_dim)
        self.logvar = nn.Linear(flat, latent_dim)

    def forward(self, x: Tensor) -> Gaussian:
        h = self.features(self.embedding(x.long()).unsqueeze(1))  # (B, 1, L, 128)
        # fp32 heads under bf16 autocast: products of experts and KL need the range
        return Gaussian(full_precision(self.mu(h)), full_precision(self.logvar(h)).clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT))


class SentenceCNNDecoder(nn.Module):
    """z (N, D) -> per-token logits (N, L, classes)."""

    def __init__(self, latent_dim: int, classes: int, length: int = 32, base: int = 32):
        super().__init__()
        if not sentence_length_fits(length):
            raise ValueError(f"the sentence CNN takes captions whose length is a multiple of 8, got {length}")
        w1, w2, w4 = base, 2 * base, 4 * base
        grid = (length // 8, EMBEDDING_DIM // 32)
        self.length = length
        self.body = nn.Sequential(
            nn.Linear(latent_dim, w4 * grid[0] * grid[1], bias=False),
            nn.Unflatten(1, (w4, *grid)),
            nn.BatchNorm2d(w4),
            nn.ReLU(),
            *_conv_bn_relu(nn.ConvTranspose2d(w4, w4, (1, 4), (1, 2), (0, 1), bias=False), w4),
            *_conv_bn_relu(nn.ConvTranspose2d(w4, w4, (1, 4), (1, 2), (0, 1), bias=False), w4),
            *_conv_bn_relu(nn.ConvTranspose2d(w4, w2, 4, 2, 1, bias=False), w2),
            *_conv_bn_relu(nn.ConvTranspose2d(w2, w1, 4, 2, 1, bias=False), w1),
            nn.ConvTranspose2d(w1, 1, 4, 2, 1, bias=False),
            nn.ReLU(),
        )
        self.to_vocabulary = nn.Linear(EMBEDDING_DIM, classes)

    def forward(self, z: Tensor) -> Tensor:
        h = self.body(z).reshape(z.shape[0], self.length, EMBEDDING_DIM)
        return self.to_vocabulary(h)
