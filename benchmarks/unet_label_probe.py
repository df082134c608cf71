"""How fast can a Diff-MVAE UNet learn to read z at all? The upper bound behind issue 13's ablation.

    python benchmarks/unet_label_probe.py [--steps 3000] [--conditioning embedding scale_shift spatial ...]
                                          [--weighting variance high_noise likelihood] [--probe-every 1000]

Trains Diff-MVAE*'s decoder alone (the DDPM noise-prediction loss, ``DDPM.loss``, the ablation's UNet: base 16,
mults 1/2/2) on PolyMNIST's modality m1 with z = the digit's one-hot label in the first 10 of 512 dimensions:
the most informative, noise-free z a cross-modal posterior could give, and the same batch (32), optimiser (Adam
1e-3) and step budget as ``diffmvae_ablation.py``. Every ``--probe-every`` steps it prints the z-usage ratio of
``latent_usage_probe`` (noise error with the labels shuffled over the error with the true labels) at t = 300,
600 and 900 on 300 test tuples; at the end it samples m1 for those 300 labels with DDIM (50 steps, as
Diff-MVAE*) and gives the accuracy of the coherence metric's m1 classifier on them: the label-conditional
accuracy. A UNet that reaches a ratio r and an accuracy a here within N steps is the ceiling for a Diff-MVAE
whose encoder must first learn to put the digit into z, at the same N (its coherence with m0 given, m1 generated,
cannot beat a).
Data: the ablation's offline build (benchmarks/out/data/polymnist3), built when missing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from latent_usage_probe import z_usage_ratio

from mmbench.data.polymnist import PolyMNIST
from mmbench.data.polymnist_build import build_polymnist
from mmbench.diffusion import DDPM, WEIGHTINGS
from mmbench.diffusion.unet import UNet, UNetConfig, conditioning_parts
from mmbench.metrics.classifier import accuracy, classifiers_for

HERE = Path(__file__).resolve().parent
TIMES = (300, 600, 900)
LATENT, CLASSES = 512, 10


def one_hot(y: torch.Tensor) -> torch.Tensor:
    z = torch.zeros(len(y), LATENT)
    z[torch.arange(len(y)), y] = 1.0
    return z


@torch.no_grad()
def usage_ratio(net: UNet, process: DDPM, x0: torch.Tensor, z: torch.Tensor) -> dict[int, float]:
    """Noise error with z shuffled over rows / with the true z, at each of TIMES (fixed noise and shuffle)."""
    net.eval()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    out = {}
    for step in TIMES:
        t = torch.full((len(x0),), step)
        out[step] = z_usage_ratio(net, process.schedule.q_sample(x0, t, noise), t, noise, z)
    net.train()
    return out


@torch.no_grad()
def label_accuracy(net: UNet, process: DDPM, z: torch.Tensor, y: torch.Tensor, classifier) -> float:
    """Accuracy of the m1 classifier on m1 sampled by DDIM (50 steps, eta 0, clipped) for the labels in z."""
    net.eval()
    noise = torch.randn(len(z), 3, 28, 28, generator=torch.Generator().manual_seed(3))
    x = process.sample(lambda xt, t: net(xt, t, z), noise, steps=50, clip=1.0)
    net.train()
    return accuracy(classifier, ((x + 1) / 2).clamp(0, 1), y)


def train(conditioning: str, weighting: str, steps: int, probe_every: int, data, seed: int = 0) -> list[dict]:
    torch.manual_seed(seed)
    train_x, train_y, test_x, test_z, test_y, classifier = data
    net = UNet(UNetConfig(dims=2, channels=3, base=16, mults=(1, 2, 2), cond_dim=LATENT, conditioning=conditioning))
    process = DDPM()  # T = 1000 linear betas, DDIM with eta = 0
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    g = torch.Generator().manual_seed(seed)
    rows, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(train_y), (32,), generator=g)
        x, z = train_x[idx] * 2 - 1, one_hot(train_y[idx])
        # averaged over the image's dimensions, as Diff-MVAE's term is (average_over_dims)
        loss = process.loss(lambda xt, t: net(xt, t, z), x, weighting=weighting, generator=g).mean() / x[0].numel()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % probe_every == 0 or step == steps:
            seconds = time.perf_counter() - start
            ratio = usage_ratio(net, process, test_x, test_z)
            acc = label_accuracy(net, process, test_z, test_y, classifier) if step == steps else None
            rows.append(
                {
                    "conditioning": conditioning,
                    "weighting": weighting,
                    "steps": step,
                    "ratio": ratio,
                    "accuracy": acc,
                    "seconds": seconds,
                }
            )
            print(
                f"  {conditioning} / {weighting} step {step}: "
                + ", ".join(f"t={k}: {v:.4f}" for k, v in ratio.items())
                + (f", label-conditional accuracy {acc:.1%}" if acc is not None else ""),
                flush=True,
            )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| conditioning | weighting | steps | ratio t=300 | t=600 | t=900 | label-conditional accuracy | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f} %"
        lines.append(
            f"| {r['conditioning']} | {r['weighting']} | {r['steps']:,} | "
            + " | ".join(f"{r['ratio'][t]:.3f}" for t in TIMES)
            + f" | {acc} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--probe-every", type=int, default=1000)
    p.add_argument("--conditioning", nargs="+", default=["embedding", "scale_shift", "spatial", "scale_shift+spatial"])
    p.add_argument("--weighting", nargs="+", default=["variance", "high_noise"], choices=WEIGHTINGS)
    p.add_argument("--data", type=Path, default=HERE / "out" / "data" / "polymnist3")
    p.add_argument("--out", type=Path, default=HERE / "out" / "unet_label_probe.md")
    args = p.parse_args(argv)
    for c in args.conditioning:
        conditioning_parts(c, field="--conditioning")
    if not (args.data / "manifest.json").is_file():
        build_polymnist(args.data, 3, progress=True)
    train_split, test_split = (PolyMNIST.load(args.data, s, modalities=3) for s in ("train", "test"))
    classifiers, _ = classifiers_for(
        train_split, test_split, HERE / "out" / "cache" / "classifiers", epochs=20, progress=False
    )
    test_y = test_split.y[:300]
    data = (
        train_split.x["m1"],
        train_split.y,
        test_split.x["m1"][:300] * 2 - 1,
        one_hot(test_y),
        test_y,
        classifiers["m1"],
    )
    rows = []
    for conditioning in args.conditioning:
        for weighting in args.weighting:
            rows += train(conditioning, weighting, args.steps, args.probe_every, data)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(table(rows) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
