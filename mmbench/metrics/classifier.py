"""The per-modality digit classifiers behind coherence (MoPoE's PolyMNIST classifier), trained and cached."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from mmbench.data.base import MultimodalDataset
from mmbench.errors import MMBenchError
from mmbench.storage.checkpoint import load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)


class DigitClassifier(nn.Module):
    """Conv 3->10 k4 s2 p1, Dropout2d .5, ReLU; Conv 10->20 k4 s2 p1, Dropout2d .5, ReLU; Linear 980->128,
    Dropout .5, ReLU; Linear 128->10 (MoPoE's PolyMNIST classifier)."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 10, 4, 2, 1),
            nn.Dropout2d(0.5),
            nn.ReLU(),
            nn.Conv2d(10, 20, 4, 2, 1),
            nn.Dropout2d(0.5),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(980, 128),
            nn.Dropout(0.5),
            nn.ReLU(),
            nn.Linear(128, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def fingerprint(data: MultimodalDataset, name: str) -> str:
    """sha256 of one modality's tensor and the labels: the cache key of its classifier."""
    h = hashlib.sha256()
    h.update(data.x[name].detach().cpu().contiguous().numpy().tobytes())
    h.update(data.y.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def train_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    desc: str = "classifier",
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> DigitClassifier:
    """Train a DigitClassifier on ``device`` (x and y may live anywhere; batches are moved there)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = DigitClassifier(int(y.max()) + 1 if len(y) else 10).to(device)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    clf.train()
    n = len(y)
    for _ in tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=False):
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, batch_size):
            rows = perm[s : s + batch_size]
            loss = nn.functional.cross_entropy(clf(x[rows].to(device)), y[rows].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return clf.eval()


@torch.no_grad()
def accuracy(clf: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    device = next(clf.parameters()).device
    correct = sum(
        (clf(x[s : s + batch_size].to(device)).argmax(-1).cpu() == y[s : s + batch_size].cpu()).sum().item()
        for s in range(0, len(y), batch_size)
    )
    return correct / max(len(y), 1)


def classifiers_for(
    train: MultimodalDataset,
    test: MultimodalDataset,
    cache_dir: Path,
    *,
    epochs: int = 20,
    seed: int = 0,
    min_accuracy: float = 0.8,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, DigitClassifier], dict[str, float]]:
    """One classifier per modality, loaded from ``cache_dir`` when trained on the same data before.

    Returns the classifiers and their test accuracies. A classifier under ``min_accuracy`` is refused:
    coherence measured with it would mean little.
    """
    log = log or logger.info
    cache_dir = Path(cache_dir)
    classifiers, accuracies = {}, {}
    for name in train.modality_names:
        path = cache_dir / f"{name}-{fingerprint(train, name)}-e{epochs}-s{seed}.pt"
        if path.is_file():
            state = load_checkpoint(path)
            clf = DigitClassifier(state["n_classes"])
            clf.load_state_dict(state["state_dict"])
            clf.to(device).eval()
        else:
            clf = train_classifier(
                train.x[name],
                train.y,
                epochs=epochs,
                seed=seed,
                desc=f"classifier {name}",
                progress=progress,
                device=device,
            )
            save_checkpoint(
                path,
                {
                    "state_dict": {k: v.cpu() for k, v in clf.state_dict().items()},
                    "n_classes": clf.net[-1].out_features,
                },
            )
        acc = accuracy(clf, test.x[name], test.y)
        if acc < min_accuracy:
            raise MMBenchError(
                f"the coherence classifier for {name} reaches only {acc:.1%} test accuracy "
                f"(< {min_accuracy:.0%}); train it longer (classifier_epochs) or check the data"
            )
        classifiers[name], accuracies[name] = clf, acc
    log("coherence classifiers, test accuracy: " + ", ".join(f"{k} {v:.1%}" for k, v in accuracies.items()))
    return classifiers, accuracies


PUBLISHED_NAME = "pretrained_img_to_digit_clf_{modality}"


def published_classifiers(
    folder: Path, test: MultimodalDataset, *, min_accuracy: float = 0.8, device: torch.device | str = "cpu"
) -> tuple[dict[str, DigitClassifier], dict[str, float]]:
    """MoPoE's published PolyMNIST classifiers (``pretrained_img_to_digit_clf_m{k}``: state dicts of their
    ``ClfImg``, whose ``encoder`` Sequential has DigitClassifier's layers at the same indices), with their test
    accuracies; a missing or foreign file is one line naming it."""
    classifiers, accuracies = {}, {}
    for name in test.modality_names:
        path = Path(folder) / PUBLISHED_NAME.format(modality=name)
        if not path.is_file():
            raise MMBenchError(
                f"published classifier {path} does not exist; the folder must hold MoPoE's "
                f"{PUBLISHED_NAME.format(modality='m{k}')} for every modality"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            clf = DigitClassifier()
            clf.load_state_dict({k.replace("encoder.", "net.", 1): v for k, v in state.items()}, strict=True)
        except Exception as exc:
            raise MMBenchError(
                f"{path} is not a MoPoE PolyMNIST classifier state dict ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:120] if str(exc) else ''})"
            ) from None
        clf.to(device).eval()
        acc = accuracy(clf, test.x[name], test.y)
        if acc < min_accuracy:
            raise MMBenchError(
                f"published classifier {path} reaches only {acc:.1%} on {name}'s test split: is it the "
                "classifier of this modality (and of this dataset)?"
            )
        classifiers[name], accuracies[name] = clf, acc
    return classifiers, accuracies
