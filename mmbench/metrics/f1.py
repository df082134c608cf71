"""F1 of conditionally generated binary modalities (CelebAMask-HQ's attributes and masks, as the Diff-MVAE paper).

For every subset of observed modalities and every attribute or mask modality outside it, the model generates
that modality; a value counts as 1 when its probability is above 0.5 (the decoder's Bernoulli mean).
Attributes: the F1 of each attribute over the test set, averaged over attributes (scikit-learn's macro F1).
Masks: the F1 over every pixel of the test set (binary F1). Rows per (target, given) and their average per
number of observed modalities.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from sklearn.metrics import f1_score

from mmbench.errors import MMBenchError
from mmbench.metrics.base import EvalContext, MetricRow
from mmbench.model import MultimodalVAE
from mmbench.registry import register_metric

BINARY_KINDS = ("attributes", "mask")


def binary_f1(truth: np.ndarray, probability: np.ndarray, kind: str) -> float:
    """F1 of ``probability > 0.5`` against ``truth > 0.5``: macro over attributes (columns), or over all pixels."""
    t = np.asarray(truth).reshape(len(truth), -1) > 0.5
    p = np.asarray(probability).reshape(len(probability), -1) > 0.5
    if kind == "attributes":
        return float(f1_score(t, p, average="macro", zero_division=0))
    return float(f1_score(t.ravel(), p.ravel(), zero_division=0))


@register_metric("f1")
class F1Metric:
    """F1 of generated attributes (macro over attributes) and masks (over pixels), per number of observed modalities.

    batch_size: test tuples per generation batch.
    max_test:   evaluate on the first N test tuples (0: all).
    """

    def __init__(self, batch_size: int = 500, max_test: int = 0):
        if batch_size < 1 or max_test < 0:
            raise MMBenchError("f1 options: batch_size must be >= 1 and max_test >= 0")
        self.batch_size, self.max_test = batch_size, max_test

    @torch.no_grad()
    def __call__(self, model: MultimodalVAE, ctx: EvalContext) -> list[MetricRow]:
        kinds = {m.name: m.kind for m in model.modalities}
        targets_all = [m for m, k in kinds.items() if k in BINARY_KINDS]
        if not targets_all:
            raise MMBenchError(
                f"f1 needs an attributes or mask modality; dataset {ctx.test.name!r} has "
                + ", ".join(f"{m} ({k})" for m, k in kinds.items())
            )
        test = ctx.test.head(self.max_test) if self.max_test else ctx.test
        g = torch.Generator().manual_seed(ctx.seed)
        names = model.modality_names
        rows: list[MetricRow] = []
        model.eval()
        for n in range(1, len(names)):
            per_n = []
            for given in itertools.combinations(names, n):
                targets = [m for m in targets_all if m not in given]
                if not targets:
                    continue
                probs: dict[str, list] = {m: [] for m in targets}
                truth: dict[str, list] = {m: [] for m in targets}
                for batch in test.batches(self.batch_size):
                    out = model.cond_generate(batch["x"], given, targets, generator=g)
                    for m in targets:
                        probs[m].append(out[m].float().cpu().numpy())
                        truth[m].append(batch["x"][m].float().cpu().numpy())
                for m in targets:
                    value = binary_f1(np.concatenate(truth[m]), np.concatenate(probs[m]), kinds[m])
                    rows.append(MetricRow("f1", m, "+".join(given), n, value, len(test)))
                    per_n.append(value)
            if per_n:
                rows.append(MetricRow("f1", "*", "*", n, float(np.mean(per_n)), len(test)))
        return rows
