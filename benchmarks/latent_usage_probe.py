"""Does a Diff-MVAE run's UNet use z? A diagnostic for latent collapse in diffusion decoders.

    python benchmarks/latent_usage_probe.py RUN_DIR_OR_CHECKPOINT [--n 200] [--source m0] [--target m1]

Encodes ``source`` for n test tuples and prints the spread of the posterior means over the batch (mean std
over dimensions) beside the posterior std, then noises ``target`` at three times and prints the UNet's noise
error with z shuffled across rows divided by the error with the true z. Ratios at 1.0000 mean the decoder
ignores z; the spread far below the posterior std means the encoder has collapsed onto the prior.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mmbench.checkpoint import load_model
from mmbench.run import CHECKPOINT, load_split
from mmbench.runspec import RunSpec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a run folder (or its checkpoint.pt, also mid-training)")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--source", default="m0")
    p.add_argument("--target", default="m1")
    args = p.parse_args(argv)
    path = Path(args.run)
    path = path / CHECKPOINT if path.is_dir() else path
    model, state = load_model(path)
    model.eval()
    spec = RunSpec.from_dict(json.loads((path.parent / "spec.json").read_text()))
    test = load_split(spec, "test").head(args.n)
    x = test.batch(torch.arange(len(test)))["x"]
    n = len(test)
    with torch.no_grad():
        q = model.encode(x, [args.source])
        z = q.mu
        shuffled = z[torch.randperm(n, generator=torch.Generator().manual_seed(1))]
        x0 = x[args.target] * 2 - 1
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
        ratios = []
        for frac in (0.3, 0.6, 0.9):
            if model.process == "ddpm":
                t = torch.full((n,), int(frac * model.schedule.timesteps))
                ab = model.schedule.alphas_cumprod[t[0]].float()
                mean, std = ab.sqrt(), (1 - ab).sqrt()
            else:
                t = torch.full((n,), frac)
                mean, std = (v.float() for v in model.sde.marginal(t[:1]))
            xt = mean * x0 + std * noise
            net = model.decoders[args.target]
            true = ((net(xt, t, z) - noise) ** 2).mean()
            other = ((net(xt, t, shuffled) - noise) ** 2).mean()
            ratios.append(f"t={frac}: {(other / true).item():.4f}")
    print(f"epoch {state['epoch']} step {state['steps']}: mean spread {q.mu.std(0).mean():.4f}, posterior std "
          f"{q.std.mean():.3f}; noise-error ratio shuffled/true z " + ", ".join(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
