"""Channels-last against contiguous tensors for every network preset: forward + backward of encoder and decoder.

    python benchmarks/memory_format.py [--repeats 7] [--cases polymnist resnet_polymnist ...]

``RunOptions.memory_format = "auto"`` trains in channels-last on the CPU (``mmbench.training.memory_format``). For each
preset the trainer can pick (``mmbench.nets.networks_for``, MMVAE+'s ResNet, Diff-MVAE's UNet), this times one
forward and backward of its encoder and decoder on a random batch in both layouts, alternating in one
process, fp32 on this machine's CPU, and prints the medians and channels-last / contiguous (below 1: faster).
Both layouts run the same modules with the same weights; the outputs are compared, so a layout that changed a
value beyond float rounding would fail here.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

from diffmvae.unet import UNet, UNetConfig
from mmbench.modality import Modality
from mmbench.nets import networks_for
from mmbench.nets.resnet_polymnist import ResNetPolyMNISTDecoder, ResNetPolyMNISTEncoder
from mmbench.training.memory_format import apply_memory_format, to_memory_format

LATENT = 64


def feed_forward(modality: Modality, batch: int, latent: int = LATENT):
    """(encoder, decoder, x, z) of the shared networks ``networks_for`` gives the modality."""
    nets = networks_for(modality)
    if modality.likelihood == "categorical":
        x = torch.randint(0, modality.classes, (batch, *modality.shape))
    else:
        x = torch.rand(batch, *modality.shape)
    return nets.encoder(latent), nets.decoder(latent), x, torch.randn(batch, latent)


def encoder_decoder_pass(encoder, decoder, x, z) -> torch.Tensor:
    """Sum of the encoder's outputs and of the decoder's, then backward; the loss for the comparison."""
    q = encoder(x)
    outputs = (q.mu, q.logvar) if hasattr(q, "mu") else q
    loss = sum(o.float().sum() for o in outputs) + decoder(z).float().abs().sum()
    loss.backward()
    return loss.detach()


def unet_pass(unet, x, z) -> torch.Tensor:
    t = torch.randint(0, 1000, (len(x),), generator=torch.Generator().manual_seed(0))
    loss = unet(x, t, z).square().sum()
    loss.backward()
    return loss.detach()


def cases(batch: int) -> dict:
    """{name: (label, make() -> (function, modules, args))}: each make builds fresh modules and inputs."""

    def ff(modality, b):
        def make():
            torch.manual_seed(0)
            enc, dec, x, z = feed_forward(modality, b)
            return encoder_decoder_pass, (enc, dec), (x, z)

        return make

    def resnet(b):
        def make():
            torch.manual_seed(0)
            enc, dec = ResNetPolyMNISTEncoder(32, 32), ResNetPolyMNISTDecoder(64)
            return encoder_decoder_pass, (enc, dec), (torch.rand(b, 3, 28, 28), torch.randn(b, 64))

        return make

    def unet(b):
        def make():
            torch.manual_seed(0)
            net = UNet(
                UNetConfig(
                    dims=2, channels=3, base=32, mults=(1, 2, 2), cond_dim=512, conditioning="spatial", pad_to=32
                )
            )
            return unet_pass, (net,), (torch.randn(b, 3, 28, 28), torch.randn(b, 512))

        return make

    small = max(batch // 4, 1)
    return {
        "polymnist": (f"PolyMNIST conv (MoPoE, MVTCAE, MVAE, MMVAE), B={batch}", ff(Modality("m", (3, 28, 28)), batch)),
        "resnet_polymnist": (f"MMVAE+ ResNet, B={small}", resnet(small)),
        "image32": (f"32x32 conv, B={batch}", ff(Modality("m", (3, 32, 32)), batch)),
        "softintro64": (f"Soft-IntroVAE ResNet 64x64, B={small}", ff(Modality("m", (3, 64, 64)), small)),
        "mask128": (f"mask conv 1x128x128, B={small}", ff(Modality("m", (1, 128, 128), "mask", "bernoulli"), small)),
        "sentence_cnn": (
            f"CUB sentence CNN, B={batch}",
            ff(Modality("t", (32,), "text", "categorical", classes=1590), batch),
        ),
        "unet": (f"Diff-MVAE UNet 28x28 (base 32, spatial), B={small}", unet(small)),
    }


def compare(make, repeats: int) -> tuple[float, float, float]:
    """(contiguous s, channels-last s, largest relative difference of the losses)."""
    fn, modules, args = make()
    modules_cl = tuple(apply_memory_format(copy.deepcopy(m), torch.channels_last) for m in modules)
    args_cl = to_memory_format(args, torch.channels_last)
    runs = [lambda: fn(*modules, *args), lambda: fn(*modules_cl, *args_cl)]
    losses = [run() for run in runs]
    times = [[], []]
    for _ in range(repeats):
        for run, t in zip(runs, times):
            for m in modules + modules_cl:
                m.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            run()
            t.append(time.perf_counter() - t0)
    diff = float((losses[0] - losses[1]).abs() / losses[0].abs().clamp_min(1e-12))
    return statistics.median(times[0]), statistics.median(times[1]), diff


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256, help="batch of the small networks (the large ones take 1/4)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--cases", nargs="*", default=None, help="subset of the cases (default: all)")
    args = p.parse_args(argv)
    table = cases(args.batch)
    unknown = sorted(set(args.cases or []) - set(table))
    if unknown:
        p.error(f"unknown case(s) {unknown}; choose from {sorted(table)}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, forward + backward of encoder and "
        f"decoder, median of {args.repeats} alternating passes"
    )
    print("| network | contiguous s | channels-last s | channels-last / contiguous | loss rel. difference |")
    print("|---|---|---|---|---|")
    for name in args.cases or table:
        label, make = table[name]
        contiguous, channels_last, diff = compare(make, args.repeats)
        print(
            f"| {label} | {contiguous:.3f} | {channels_last:.3f} | {channels_last / contiguous:.2f}x | {diff:.1e} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
