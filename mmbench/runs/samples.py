"""Sample grids of a trained run: test inputs, conditional generations from a subset, unconditional samples.

Columns are test examples (conditional rows) or independent draws (unconditional rows); one row per
modality in each block. Unconditional latents come from p(z), or from a prior fitted with
``mmbench prior fit`` (``prior-<kind>.pt`` beside the run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from mmbench.device import resolve_device
from mmbench.errors import MMBenchError
from mmbench.registry import PRIORS
from mmbench.runs.execute import load_split, load_trained_run
from mmbench.storage.figures import plt, save_figure


def _tile(images: Tensor) -> Tensor:
    """(n, C, H, W) in [0, 1] -> (H, n*W, 3) with a 1-pixel white gap between images."""
    n, c, h, w = images.shape
    images = images.clamp(0, 1).expand(n, 3, h, w) if c == 1 else images.clamp(0, 1)
    padded = torch.ones(n, 3, h, w + 1)
    padded[..., :w] = images
    return padded.permute(2, 0, 3, 1).reshape(h, n * (w + 1), 3)


def grid_rows(
    model, x: dict[str, Tensor], given: Sequence[str], z: Tensor | None, n: int, generator: torch.Generator
) -> list[tuple[str, Tensor]]:
    """Labelled rows: the inputs, every modality generated from ``given``, and n unconditional samples."""
    names = model.modality_names
    cond = model.cond_generate(x, given, names, generator=generator)
    uncond = model.generate(n, z, generator=generator)
    label = "+".join(given)
    rows = [(f"{m} (test input)", x[m]) for m in names]
    rows += [(f"{m} | {label}", cond[m]) for m in names]
    rows += [(f"{m} ~ prior", uncond[m]) for m in names]
    return rows


def save_sample_grid(
    run_dir: Path,
    out: Path | None = None,
    *,
    given: Sequence[str] | None = None,
    n: int = 8,
    seed: int = 0,
    prior: str | None = None,
    device: str = "auto",
) -> Path:
    """Write the grid of run_dir's model, sampled on ``device``, as a PNG (default run_dir/samples.png); its path."""
    run_dir = Path(run_dir)
    where = resolve_device(device)
    model, spec = load_trained_run(run_dir, "drawing samples", where)
    model.eval()
    names = model.modality_names
    images = [m.name for m in model.modalities if len(m.shape) == 3 and m.shape[0] in (1, 3)]
    if images != names:
        raise MMBenchError(
            f"a sample grid shows image modalities only; {sorted(set(names) - set(images))} are not images"
        )
    given = list(given) if given else names[:1]
    model.validate_subset(given)
    if n < 1:
        raise MMBenchError(f"--n must be at least 1, got {n}")
    test = load_split(spec, "test").head(n).to(where)
    g = torch.Generator().manual_seed(seed)
    z = None
    if prior:
        cls = PRIORS.get(prior)  # a registered name, before it is part of a path
        path = run_dir / f"prior-{prior}.pt"
        if not path.is_file():
            raise MMBenchError(f"{path} does not exist; fit it first: mmbench prior fit {run_dir} --kind {prior}")
        z = cls.load(path).to(where).sample(len(test), generator=g)
    with torch.no_grad():
        rows = grid_rows(model, test.batch(torch.arange(len(test)))["x"], given, z, len(test), g)
    picture = torch.cat([_tile(r.cpu()) for _, r in rows], 0).numpy()
    h = rows[0][1].shape[-2]  # each row of the picture is one image high
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * len(test), 0.45 * len(rows)))
    ax.imshow(picture, interpolation="nearest")
    ax.set_yticks([(i + 0.5) * h for i in range(len(rows))], [label for label, _ in rows], fontsize=6)
    ax.set_xticks([])
    prior_name = prior or "N(0, I)"
    ax.set_title(f"{spec.model} ({run_dir.name}): given {'+'.join(given)}; prior {prior_name}", fontsize=7)
    return save_figure(fig, Path(out) if out else run_dir / "samples.png", dpi=150)
