"""Linear probe of the latent space: logistic regression (scikit-learn) on posterior means of each subset of
modalities, fitted on the training split, accuracy on the test split; per subset and averaged per subset size.

With class labels (N,) the probe predicts the class; with attributes (N, k) one probe per attribute, and the
value is their mean accuracy.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from mmbench.data.base import MultimodalDataset
from mmbench.errors import MMBenchError
from mmbench.metrics.base import EvalContext, MetricRow
from mmbench.model import MultimodalVAE
from mmbench.registry import register_metric


def probe_accuracy(
    train_z: np.ndarray, train_y: np.ndarray, test_z: np.ndarray, test_y: np.ndarray, *, seed: int = 0
) -> float:
    """Test accuracy of a logistic regression fitted on (train_z, train_y); labels (N,) or attributes (N, k)."""
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if train_y.ndim == 1:
        train_y, test_y = train_y[:, None], test_y[:, None]
    accs = []
    for j in range(train_y.shape[1]):
        if len(np.unique(train_y[:, j])) < 2:  # a constant label: the probe predicts it
            accs.append(float(np.mean(test_y[:, j] == train_y[0, j])))
            continue
        clf = LogisticRegression(max_iter=1000, random_state=seed)
        clf.fit(train_z, train_y[:, j])
        accs.append(float(clf.score(test_z, test_y[:, j])))
    return float(np.mean(accs))


@torch.no_grad()
def subset_means(model: MultimodalVAE, data: MultimodalDataset, subset, batch_size: int = 500) -> np.ndarray:
    return torch.cat([model.encode(b["x"], list(subset)).mu.float().cpu() for b in data.batches(batch_size)]).numpy()


@register_metric("probe")
class LinearProbe:
    """Linear-probe accuracy of the label from posterior means of every subset, per subset size.

    max_train: training tuples the logistic regression is fitted on.
    max_test:  evaluate on the first N test tuples (0: all).
    """

    def __init__(self, max_train: int = 10000, max_test: int = 0):
        if max_train < 2 or max_test < 0:
            raise MMBenchError("probe options: max_train must be >= 2 and max_test >= 0")
        self.max_train, self.max_test = max_train, max_test

    def __call__(self, model: MultimodalVAE, ctx: EvalContext) -> list[MetricRow]:
        if not torch.is_tensor(ctx.train.y) or ctx.train.y.numel() == 0:
            raise MMBenchError(f"probe needs labels or attributes; dataset {ctx.train.name!r} has none")
        train = ctx.train.head(self.max_train)
        test = ctx.test.head(self.max_test) if self.max_test else ctx.test
        names = model.modality_names
        model.eval()
        rows = []
        for n in range(1, len(names) + 1):
            accs = []
            for subset in itertools.combinations(names, n):
                acc = probe_accuracy(
                    subset_means(model, train, subset),
                    train.y.cpu().numpy(),
                    subset_means(model, test, subset),
                    test.y.cpu().numpy(),
                    seed=ctx.seed,
                )
                rows.append(MetricRow("probe", "*", "+".join(subset), n, acc))
                accs.append(acc)
            rows.append(MetricRow("probe", "*", "*", n, float(np.mean(accs))))
        return rows
