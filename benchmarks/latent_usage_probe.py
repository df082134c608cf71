"""Does a Diff-MVAE run's UNet use z? A diagnostic for latent collapse in diffusion decoders.

    python benchmarks/latent_usage_probe.py RUN_DIR_OR_CHECKPOINT [--n 200] [--source m0] [--target m1]

Encodes ``source`` for n test tuples and prints the spread of the posterior means over the batch (mean std
over dimensions) beside the posterior std, then noises ``target`` at t = 300, 600 and 900 (of 1000; 0.3, 0.6,
0.9 for the VP-SDE) and prints the UNet's noise error with z shuffled across rows divided by the error with
the true z. Ratios at 1.0000 mean the decoder ignores z; the spread far below the posterior std means the
encoder has collapsed onto the prior.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from diffmvae.diffusion import DDPM
from mmbench.runs.execute import CHECKPOINT, load_split
from mmbench.runs.spec import SPEC, RunSpec
from mmbench.storage.checkpoint import load_model

FRACTIONS = (0.3, 0.6, 0.9)


def z_usage_ratio(net, xt: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, z: torch.Tensor) -> float:
    """The UNet's noise error with z shuffled across rows (a fixed permutation) over its error with the true z."""
    shuffled = z[torch.randperm(len(z), generator=torch.Generator().manual_seed(1))]
    return (((net(xt, t, shuffled) - noise) ** 2).mean() / ((net(xt, t, z) - noise) ** 2).mean()).item()


@torch.no_grad()
def latent_usage(run: Path, *, n: int = 200, source: str = "m0", target: str = "m1") -> dict:
    """{"epoch", "steps", "spread", "posterior_std", "ratio": {0.3: r, 0.6: r, 0.9: r}} for a run or checkpoint."""
    path = run / CHECKPOINT if run.is_dir() else run
    model, state = load_model(path)
    model.eval()
    spec = RunSpec.load(path.parent / SPEC)
    test = load_split(spec, "test").head(n)
    x = test.batch(torch.arange(len(test)))["x"]
    n = len(test)
    q = model.encode(x, [source])
    z = q.mu
    x0 = x[target] * 2 - 1
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    ratios = {}
    for frac in FRACTIONS if target in getattr(model, "diffusion_names", ()) else ():  # feed-forward: spread only
        if isinstance(model.process, DDPM):
            t = torch.full((n,), int(frac * model.process.schedule.timesteps))
            ab = model.process.schedule.alphas_cumprod[t[0]].float()
            mean, std = ab.sqrt(), (1 - ab).sqrt()
        else:
            t = torch.full((n,), frac)
            mean, std = (v.float() for v in model.process.marginal(t[:1]))
        xt = mean * x0 + std * noise
        ratios[frac] = z_usage_ratio(model.decoders[target], xt, t, noise, z)
    return {
        "epoch": state["epoch"],
        "steps": state["steps"],
        "spread": q.mu.std(0).mean().item(),
        "posterior_std": q.std.mean().item(),
        "ratio": ratios,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a run folder (or its checkpoint.pt, also mid-training)")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--source", default="m0")
    p.add_argument("--target", default="m1")
    args = p.parse_args(argv)
    u = latent_usage(Path(args.run), n=args.n, source=args.source, target=args.target)
    ratios = ", ".join(f"t={f}: {r:.4f}" for f, r in u["ratio"].items())
    print(
        f"epoch {u['epoch']} step {u['steps']}: mean spread {u['spread']:.4f}, posterior std "
        f"{u['posterior_std']:.3f}; noise-error ratio shuffled/true z {ratios}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
