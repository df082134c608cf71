"""The FID feature network: pytorch-fid's InceptionV3 with the standard TF-Inception weights, loaded from a file.

Weights are looked for at the path the user gives (``--fid-weights`` / the metric's ``weights`` option), then at
``$MMBENCH_FID_WEIGHTS``, then in the torch hub cache (``$TORCH_HOME/hub/checkpoints/``, where pytorch-fid keeps
them). Without them FID is refused; it never runs on random or other weights. A file named like the standard
one must have its digest (sha256 starting 6726825d); any file must hold the FID Inception's exact state dict.

Input pipeline (pytorch-fid's): images in [0, 1], grey repeated to 3 channels, resized to 299x299
(bilinear, align_corners=False), scaled to [-1, 1]; features are the pooled output of the block of the chosen
size (2048: pool3, the standard FID).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.errors import MMBenchError

STANDARD_NAME = "pt_inception-2015-12-05-6726825d.pth"
STANDARD_DIGEST = "6726825d"
SOURCE = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + STANDARD_NAME
DIMS = (64, 192, 768, 2048)  # pytorch-fid's blocks: after the first convolutions, the second, Mixed_6e, pool3


@dataclass(frozen=True)
class FIDWeights:
    path: Path
    sha256: str

    @property
    def standard(self) -> bool:
        return self.sha256.startswith(STANDARD_DIGEST)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """The file's digest, read once per version of the file (every run of a sweep builds its FID metric when
    the sweep is validated, and the weights are ~100 MB)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def find_weights(path: str | Path | None = None) -> FIDWeights:
    """The weights file to use, checked; one line naming the file and where to get it when there is none."""
    candidates = [Path(path).expanduser()] if path else []
    if not path and os.environ.get("MMBENCH_FID_WEIGHTS"):
        candidates.append(Path(os.environ["MMBENCH_FID_WEIGHTS"]).expanduser())
    if not path:
        candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / STANDARD_NAME)
    for c in candidates:
        if c.is_file():
            stat = c.stat()
            digest = _sha256(str(c.resolve()), stat.st_size, stat.st_mtime_ns)
            if c.name == STANDARD_NAME and not digest.startswith(STANDARD_DIGEST):
                raise MMBenchError(
                    f"FID weights {c} have the standard name but not its digest (sha256 {digest[:8]}..., "
                    f"expected {STANDARD_DIGEST}...): the file is damaged or another network; get it "
                    f"again from {SOURCE}"
                )
            return FIDWeights(c, digest)
        if path:
            raise MMBenchError(f"FID weights {c} do not exist; get {STANDARD_NAME} from {SOURCE}")
    raise MMBenchError(
        f"FID needs the Inception weights {STANDARD_NAME}, found neither at $MMBENCH_FID_WEIGHTS nor in "
        f"{candidates[-1].parent}; download it from {SOURCE} (on a machine with network) and put it "
        "there, or pass its path: mmbench eval --fid-weights PATH, or the fid metric's weights option "
        "(--set evaluate.fid.weights=PATH for train and sweeps, [evaluate.fid] weights in a sweep file)"
    )


def _pytorch_fid():
    try:
        from pytorch_fid import inception
    except ImportError as exc:
        raise MMBenchError(f"FID needs pytorch-fid (pip install pytorch-fid): {exc}") from None
    except RuntimeError as exc:  # a CUDA torchvision beside a CPU torch: "operator torchvision::nms does not exist"
        raise MMBenchError(
            f"pytorch-fid cannot import torchvision ({exc}); install the torchvision that matches "
            f"torch {torch.__version__} (see the README's set-up)"
        ) from None
    return inception


def build_fid_inception() -> nn.Module:
    """pytorch-fid's FID Inception architecture (torchvision's Inception3 with its patched blocks), untrained."""
    inception = _pytorch_fid()
    net = inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = inception.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = inception.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = inception.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = inception.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = inception.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = inception.FIDInceptionE_1(1280)
    net.Mixed_7c = inception.FIDInceptionE_2(2048)
    return net


def fid_inception(weights: FIDWeights) -> nn.Module:
    """The FID Inception holding ``weights`` (refused by name when the file is not its exact state dict)."""
    net = build_fid_inception()
    try:
        state = torch.load(weights.path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MMBenchError(
            f"FID weights {weights.path} cannot be read as a state dict ({type(exc).__name__})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MMBenchError(
            f"FID weights {weights.path} are not the FID Inception's state dict ({first[:160]}); "
            f"use {STANDARD_NAME} from {SOURCE}"
        ) from None
    return net


class InceptionFeatures(nn.Module):
    """Images (B, 1 or 3, H, W) in [0, 1] -> (B, dims) pooled Inception features, pytorch-fid's pipeline."""

    def __init__(self, weights: FIDWeights, dims: int = 2048):
        super().__init__()
        if dims not in DIMS:
            raise MMBenchError(f"FID feature size {dims}; allowed: {', '.join(map(str, DIMS))}")
        net = fid_inception(weights)
        blocks = [
            [net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, nn.MaxPool2d(3, 2)],
            [net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(3, 2)],
            [
                net.Mixed_5b,
                net.Mixed_5c,
                net.Mixed_5d,
                net.Mixed_6a,
                net.Mixed_6b,
                net.Mixed_6c,
                net.Mixed_6d,
                net.Mixed_6e,
            ],
            [net.Mixed_7a, net.Mixed_7b, net.Mixed_7c],
        ]
        self.body = nn.Sequential(*[m for b in blocks[: DIMS.index(dims) + 1] for m in b])
        self.dims = dims
        self.weights = weights
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise MMBenchError(f"FID takes images (B, 1 or 3, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = self.body(2 * x - 1)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
