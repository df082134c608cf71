"""Evaluation against the bare network passes it needs (issue 14's P4 goal: within 1.2x).

    python benchmarks/eval_overhead.py [--modalities 5] [--tuples 1000] [--fid-images 400] [--repeats 3]

coherence: ``conditional_coherence`` of a MoPoE model (PolyMNIST networks, latent 512) over --tuples
           PolyMNIST-shaped tuples with MoPoE's digit classifiers, against the passes it needs: per batch
           every encoder once, then per subset the product of experts, a sample, and the decoder and the
           classifier of every target.
fid:       the FID feature pass (``feature_statistics``: Inception features and their running mean and
           covariance) over --fid-images images, against the Inception forward passes alone.
Cost does not depend on the weights or the pixels, so both run on random ones. Medians of --repeats runs,
alternating ours and the floor in one process.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from subset_scaling import polymnist_shaped

from mmbench.config import build_config
from mmbench.fusion import product_of_stacked_experts
from mmbench.metrics.classifier import DigitClassifier
from mmbench.metrics.coherence import conditional_coherence
from mmbench.metrics.fid import feature_statistics
from mmbench.metrics.inception import InceptionFeatures, build_fid_inception, find_weights
from mmbench.registry import MODELS

GOAL = 1.2


@torch.no_grad()
def bare_coherence(model, data, classifiers, batch_size: int) -> None:
    names = model.modality_names
    subsets = [g for n in range(1, len(names)) for g in itertools.combinations(range(len(names)), n)]
    for batch in data.batches(batch_size):
        experts = model.parts.experts(batch["x"], names)  # every encoder once
        for given in subsets:
            idx = torch.tensor(given)
            q = product_of_stacked_experts(
                type(experts)(experts.mu[idx], experts.logvar[idx]), prior_expert=len(given) == len(names)
            )
            z = q.rsample()
            for m in (names[i] for i in range(len(names)) if i not in given):
                classifiers[m](model.parts.decoders[m](z)).argmax(-1)


def median_pair(ours, floor, repeats: int) -> tuple[float, float]:
    ours(), floor()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours()
        a.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        floor()
        b.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modalities", type=int, default=5)
    p.add_argument("--tuples", type=int, default=1000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--fid-images", type=int, default=400)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print(f"{torch.get_num_threads()} threads, median of {args.repeats} alternating runs")
    print("| case | ours s | floor s | ratio | goal | pass |")
    print("|---|---|---|---|---|---|")

    data = polymnist_shaped(args.tuples, args.modalities)
    cls = MODELS.get("mopoe")
    torch.manual_seed(0)
    model = cls(data.modalities, build_config(cls.Config, {})).eval()
    clfs = {m: DigitClassifier().eval() for m in model.modality_names}
    ours, floor = median_pair(
        lambda: conditional_coherence(model, data, clfs, batch_size=args.batch),
        lambda: bare_coherence(model, data, clfs, args.batch),
        args.repeats,
    )
    report(f"coherence, MoPoE M={args.modalities}, {args.tuples} tuples", ours, floor)

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        path = Path(tmp) / "inception-random.pth"
        torch.save(build_fid_inception().state_dict(), path)
        net = InceptionFeatures(find_weights(path), dims=2048)
    images = torch.rand(args.fid_images, 3, 28, 28)
    batches = lambda: (images[i : i + 200] for i in range(0, len(images), 200))  # noqa: E731
    ours, floor = median_pair(
        lambda: feature_statistics(net, batches()), lambda: [net(b) for b in batches()], args.repeats
    )
    report(f"FID feature pass, {args.fid_images} images, 2048-d", ours, floor)
    return 0


def report(case: str, ours: float, floor: float) -> None:
    ratio = ours / floor
    print(
        f"| {case} | {ours:.2f} | {floor:.2f} | {ratio:.2f}x | {GOAL}x | {'pass' if ratio <= GOAL else 'FAIL'} |",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
