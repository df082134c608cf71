"""Modality: what a dataset declares about each of its modalities, and what models are built from."""

from __future__ import annotations

from dataclasses import dataclass

from mmbench.errors import MMBenchError

KINDS = ("image", "text", "attributes", "mask")
LIKELIHOODS = ("laplace", "bernoulli", "normal", "categorical")


@dataclass(frozen=True)
class Modality:
    """One modality of a dataset.

    name:       key in every batch's ``x`` dict (``"m0"``, ``"image"``, ...).
    shape:      shape of one example, e.g. ``(3, 28, 28)``.
    kind:       one of ``image | text | attributes | mask``.
    likelihood: default feed-forward likelihood for this modality (see ``mmbench.objectives``).
    classes:    number of categories of a categorical modality (a caption's vocabulary size), else 0.
    pretrained: a local folder of pretrained networks for this modality, "" for the shared ones (a text
                modality: a BERT/GPT-2 text VAE, ``mmbench.textvae``).
    """

    name: str
    shape: tuple[int, ...]
    kind: str = "image"
    likelihood: str = "laplace"
    classes: int = 0
    pretrained: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MMBenchError(f"modality {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.likelihood not in LIKELIHOODS:
            raise MMBenchError(
                f"modality {self.name!r}: likelihood {self.likelihood!r} is not one of {', '.join(LIKELIHOODS)}"
            )
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.likelihood == "categorical" and self.classes < 2:
            raise MMBenchError(
                f"modality {self.name!r}: a categorical modality needs classes >= 2 (its vocabulary "
                f"size), got {self.classes}"
            )
        if self.pretrained and self.kind != "text":
            raise MMBenchError(
                f"modality {self.name!r}: pretrained networks are for text modalities (a text VAE), not {self.kind}"
            )

    def to_dict(self) -> dict:
        d = {"name": self.name, "shape": list(self.shape), "kind": self.kind, "likelihood": self.likelihood}
        if self.classes:
            d["classes"] = self.classes
        return {**d, "pretrained": self.pretrained} if self.pretrained else d

    @classmethod
    def from_dict(cls, d: dict) -> "Modality":
        return cls(
            d["name"],
            tuple(d["shape"]),
            d.get("kind", "image"),
            d.get("likelihood", "laplace"),
            int(d.get("classes", 0)),
            str(d.get("pretrained", "")),
        )
