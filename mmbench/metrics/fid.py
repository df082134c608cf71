"""FID (Heusel et al. 2017) with pytorch-fid's Inception: unconditional per image modality and prior, and
conditional per target modality and number of observed modalities (Figure 7 of the Diff-MVAE paper).

Real statistics come from the test split's first ``n_samples`` images of a modality (all of them when it is
smaller), cached per dataset fingerprint, feature size and weights. Unconditional: ``n_samples`` draws from
each prior of the evaluation (the model's p(z), "gaussian", and fitted priors). Conditional: for every subset
of observed modalities (or a seeded sample of ``max_subsets`` per size) the missing image modalities are
generated from the first ``n_samples`` test tuples. Every row carries its number of samples.
"""

from __future__ import annotations

import io
import itertools
import random
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tqdm import tqdm

from mmbench.data.base import MultimodalDataset
from mmbench.errors import MMBenchError
from mmbench.metrics.base import EvalContext, MetricRow
from mmbench.metrics.classifier import fingerprint
from mmbench.metrics.frechet import frechet_distance
from mmbench.metrics.inception import DIMS, InceptionFeatures, find_weights
from mmbench.model import MultimodalVAE
from mmbench.registry import register_metric
from mmbench.storage.atomic import atomic_write_bytes


def image_modalities(model: MultimodalVAE) -> list[str]:
    return [m.name for m in model.modalities if m.kind == "image" and len(m.shape) == 3 and m.shape[0] in (1, 3)]


class FeatureStatistics:
    """Running sums for a feature mean and covariance in float64, without keeping the features."""

    def __init__(self, dims: int):
        self.n, self.s, self.ss = 0, np.zeros(dims), np.zeros((dims, dims))

    def add(self, f: torch.Tensor) -> None:
        a = f.double().cpu().numpy()
        self.n += len(a)
        self.s += a.sum(0)
        self.ss += a.T @ a

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        mu = self.s / self.n
        return mu, (self.ss - self.n * np.outer(mu, mu)) / (self.n - 1)


def feature_statistics(net: InceptionFeatures, images: Iterable[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the Inception features of a stream of image batches (the FID feature pass)."""
    acc = FeatureStatistics(net.dims)
    for batch in images:
        acc.add(net(batch))
    return acc.statistics()


@register_metric("fid")
class FIDMetric:
    """FID with pytorch-fid's Inception: unconditional per modality and prior, conditional per target and number observed.

    n_samples:     generated and real images per FID (10,000 as the paper).
    dims:          Inception feature size (2048: the standard pool features; 64, 192, 768 for small tests).
    batch_size:    images per Inception pass.
    weights:       path of pt_inception-2015-12-05-6726825d.pth (None: $MMBENCH_FID_WEIGHTS, then the torch hub cache).
    conditional:   FID of each target generated from each subset of the others.
    unconditional: FID of samples from the prior.
    max_subsets:   conditional subsets per number observed (0: every subset).
    """

    def __init__(
        self,
        n_samples: int = 10000,
        dims: int = 2048,
        batch_size: int = 200,
        weights: str | None = None,
        conditional: bool = True,
        unconditional: bool = True,
        max_subsets: int = 0,
    ):
        if dims not in DIMS:
            raise MMBenchError(f"fid option dims = {dims}; allowed: {', '.join(map(str, DIMS))}")
        if n_samples < dims:
            raise MMBenchError(
                f"fid option n_samples = {n_samples} is below the feature size {dims}: the covariance "
                f"would be singular; use n_samples >= {dims} or lower dims explicitly "
                f"({', '.join(str(d) for d in DIMS if d < dims)})"
            )
        if batch_size < 1 or max_subsets < 0:
            raise MMBenchError("fid options: batch_size must be >= 1 and max_subsets >= 0")
        self.n_samples, self.dims, self.batch_size = n_samples, dims, batch_size
        self.conditional, self.unconditional, self.max_subsets = conditional, unconditional, max_subsets
        self.weights = find_weights(weights)  # refused here, at submit time, when they are missing or wrong
        self.provenance = {
            "weights": str(self.weights.path),
            "sha256": self.weights.sha256,
            "standard_weights": self.weights.standard,
            "dims": dims,
            "pipeline": "pytorch-fid",
        }

    def _real(self, net: InceptionFeatures, test: MultimodalDataset, m: str, cache: Path) -> tuple:
        n = min(self.n_samples, len(test))
        if n < self.dims:
            raise MMBenchError(
                f"FID of {m}: the test split has {len(test)} images, fewer than the feature size "
                f"{self.dims}; lower the fid option dims ({', '.join(str(d) for d in DIMS if d <= n)})"
            )
        part = test.head(n)
        path = cache / f"{m}-{fingerprint(part, m)}-d{self.dims}-w{self.weights.sha256[:12]}-n{n}.npz"
        if path.is_file():
            with np.load(path) as f:
                return f["mu"], f["sigma"]
        mu, sigma = feature_statistics(net, (batch["x"][m] for batch in part.batches(self.batch_size)))
        buf = io.BytesIO()
        np.savez(buf, mu=mu, sigma=sigma)
        atomic_write_bytes(path, buf.getvalue())
        return mu, sigma

    def _subsets(self, names: list[str], n: int, seed: int) -> list[tuple[str, ...]]:
        subsets = list(itertools.combinations(names, n))
        if self.max_subsets and len(subsets) > self.max_subsets:
            subsets = sorted(random.Random(seed * 1000 + n).sample(subsets, self.max_subsets))
        return subsets

    @torch.no_grad()
    def __call__(self, model: MultimodalVAE, ctx: EvalContext) -> list[MetricRow]:
        images = image_modalities(model)
        if not images:
            raise MMBenchError(f"fid needs image modalities; dataset {ctx.test.name!r} has none")
        names = model.modality_names
        conditional = self.conditional and len(names) > 1 and not ctx.unconditional_only
        if conditional and self.n_samples > len(ctx.test):
            raise MMBenchError(
                f"conditional FID generates from test tuples: n_samples = {self.n_samples} is more than "
                f"the {len(ctx.test)} of the test split; lower the fid option n_samples"
            )
        net = InceptionFeatures(self.weights, self.dims).to(ctx.device)
        cache = Path(ctx.cache_dir) / "fid"
        real = {m: self._real(net, ctx.test, m, cache) for m in images}
        g = torch.Generator().manual_seed(ctx.seed)
        model.eval()
        rows: list[MetricRow] = []
        bar = tqdm(desc="fid", unit="sample", disable=not ctx.progress, leave=False)
        if self.unconditional:
            for prior, sampler in ctx.priors.items():
                acc = {m: FeatureStatistics(self.dims) for m in images}
                for s in range(0, self.n_samples, self.batch_size):
                    k = min(self.batch_size, self.n_samples - s)
                    z = None if sampler is None else sampler(k, g)
                    out = model.generate(k, z, generator=g)
                    for m in images:
                        acc[m].add(net(out[m]))
                    bar.update(k)
                values = {m: frechet_distance(*acc[m].statistics(), *real[m]) for m in images}
                rows += [MetricRow("fid", m, "", 0, v, self.n_samples, prior) for m, v in values.items()]
                rows.append(MetricRow("fid", "*", "", 0, float(np.mean(list(values.values()))), self.n_samples, prior))
        if conditional:
            test = ctx.test.head(self.n_samples)
            for n in range(1, len(names)):
                per_target: dict[str, list[float]] = {}
                for given in self._subsets(names, n, ctx.seed):
                    targets = [m for m in images if m not in given]
                    if not targets:
                        continue
                    acc = {m: FeatureStatistics(self.dims) for m in targets}
                    for batch in test.batches(self.batch_size):
                        out = model.cond_generate(batch["x"], given, targets, generator=g)
                        for m in targets:
                            acc[m].add(net(out[m]))
                        bar.update(len(batch["y"]))
                    for m in targets:
                        v = frechet_distance(*acc[m].statistics(), *real[m])
                        rows.append(MetricRow("fid", m, "+".join(given), n, v, len(test)))
                        per_target.setdefault(m, []).append(v)
                rows += [MetricRow("fid", m, "*", n, float(np.mean(v)), len(test)) for m, v in per_target.items()]
                if per_target:
                    rows.append(
                        MetricRow(
                            "fid", "*", "*", n, float(np.mean([np.mean(v) for v in per_target.values()])), len(test)
                        )
                    )
        bar.close()
        return rows
