"""Coherence (Shi et al. 2019; Sutter et al. 2021): do generated modalities show the right digit?"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from mmbench.data.base import MultimodalDataset
from mmbench.errors import MMBenchError
from mmbench.metrics.base import EvalContext, MetricRow
from mmbench.metrics.classifier import classifiers_for, published_classifiers
from mmbench.model import MultimodalVAE
from mmbench.registry import register_metric
from mmbench.unimodal import reuse_encodings


@torch.no_grad()
def conditional_coherence(
    model: MultimodalVAE,
    data: MultimodalDataset,
    classifiers: Mapping[str, nn.Module],
    *,
    batch_size: int = 500,
    generator: torch.Generator | None = None,
    sizes: Sequence[int] | None = None,
) -> list[MetricRow]:
    """Conditional coherence per (given subset, target) and its averages per number of observed modalities.

    For every subset A of size n (1..M-1) and every target m not in A: generate m from x_A, classify
    it, compare with the label. Per n the average is taken over targets within a subset, then over
    subsets (MoPoE's protocol). Rows: "coherence" per (target, given) and "coherence" with target
    and given "*" per n.
    """
    names = model.modality_names
    sizes = list(sizes) if sizes is not None else list(range(1, len(names)))
    subsets = [given for n in sizes for given in itertools.combinations(names, n)]
    correct = {given: {m: 0 for m in names if m not in given} for given in subsets}
    model.eval()
    for batch in data.batches(batch_size):  # each batch encoded once for all its subsets (reuse_encodings)
        with reuse_encodings():
            for given in subsets:
                out = model.cond_generate(batch["x"], given, list(correct[given]), generator=generator)
                for m in correct[given]:
                    correct[given][m] += (
                        (classifiers[m](out[m]).argmax(-1) == batch["y"].to(out[m].device)).sum().item()
                    )
    rows: list[MetricRow] = []
    for n in sizes:
        per_subset = []
        for given in (g for g in subsets if len(g) == n):
            accs = {m: c / len(data) for m, c in correct[given].items()}
            rows += [MetricRow("coherence", m, "+".join(given), n, a) for m, a in accs.items()]
            per_subset.append(sum(accs.values()) / len(accs))
        rows.append(MetricRow("coherence", "*", "*", n, sum(per_subset) / len(per_subset)))
    return rows


@torch.no_grad()
def unconditional_coherence(
    model: MultimodalVAE,
    classifiers: Mapping[str, nn.Module],
    *,
    n_samples: int = 1000,
    batch_size: int = 500,
    z: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> MetricRow:
    """Share of unconditional samples whose M predicted digits all agree; z from p(z) unless given."""
    names = model.modality_names
    agree = 0
    for s in range(0, n_samples, batch_size):
        k = min(batch_size, n_samples - s)
        out = model.generate(k, None if z is None else z[s : s + k], generator=generator)
        preds = torch.stack([classifiers[m](out[m]).argmax(-1) for m in names])
        agree += (preds == preds[0]).all(0).sum().item()
    return MetricRow("coherence", "*", "", 0, agree / n_samples)


@register_metric("coherence")
class CoherenceMetric:
    """Conditional coherence per number of observed modalities and unconditional coherence (digit classifiers).

    classifier_epochs: epochs of each modality's digit classifier, trained on the training split.
    n_unconditional:   unconditional samples whose digits must agree across modalities.
    max_test:          evaluate on the first N test tuples (0: all).
    classifiers:       folder of MoPoE's published PolyMNIST classifiers instead of training them (None: train).
    """

    def __init__(
        self,
        classifier_epochs: int = 20,
        n_unconditional: int = 1000,
        max_test: int = 0,
        classifiers: str | None = None,
    ):
        if classifier_epochs < 1 or n_unconditional < 1 or max_test < 0:
            raise MMBenchError("coherence options: classifier_epochs and n_unconditional must be >= 1, max_test >= 0")
        if classifiers is not None and not Path(classifiers).expanduser().is_dir():
            raise MMBenchError(
                f"coherence option classifiers = {classifiers!r} is not a folder; it takes the folder of "
                "MoPoE's published PolyMNIST classifiers (pretrained_img_to_digit_clf_m0, ...)"
            )
        self.classifier_epochs = classifier_epochs
        self.n_unconditional = n_unconditional
        self.max_test = max_test
        self.classifiers = classifiers
        self.provenance = {"classifiers": str(Path(classifiers).expanduser()) if classifiers else "trained by mmbench"}

    def __call__(self, model: MultimodalVAE, ctx: EvalContext) -> list[MetricRow]:
        if not torch.is_tensor(ctx.test.y) or ctx.test.y.ndim != 1:
            raise MMBenchError(f"coherence needs one class label per example; dataset {ctx.test.name!r} has none")
        if self.classifiers:
            classifiers, accs = published_classifiers(Path(self.classifiers).expanduser(), ctx.test, device=ctx.device)
        else:
            classifiers, accs = classifiers_for(
                ctx.train,
                ctx.test,
                ctx.cache_dir / "classifiers",
                epochs=self.classifier_epochs,
                seed=0,
                progress=ctx.progress,
                device=ctx.device,
            )
        test = ctx.test.head(self.max_test) if self.max_test else ctx.test
        g = torch.Generator().manual_seed(ctx.seed)
        rows = [MetricRow("classifier_accuracy", m, "", 0, a) for m, a in accs.items()]
        if not ctx.unconditional_only:
            rows += conditional_coherence(model, test, classifiers, generator=g)
        for prior, sampler in ctx.priors.items():
            z = None if sampler is None else sampler(self.n_unconditional, g)
            row = unconditional_coherence(model, classifiers, n_samples=self.n_unconditional, z=z, generator=g)
            rows.append(dataclasses.replace(row, n_samples=self.n_unconditional, prior=prior))
        return rows
