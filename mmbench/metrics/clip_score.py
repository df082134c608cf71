"""CLIP score (Hessel et al. 2021) with open_clip and a local checkpoint: 100 x the cosine similarity of CLIP's
image and text embeddings, averaged over pairs and clipped at 0 (torchmetrics' CLIPScore convention).

The checkpoint is a file the user gives (the metric's ``checkpoint`` option or ``$MMBENCH_CLIP_CHECKPOINT``),
loaded with ``open_clip.create_model_and_transforms(model, pretrained=PATH)``; nothing is downloaded
(``HF_HUB_OFFLINE=1`` is set while the model is built) and a missing or foreign file is refused by name. The
tokenizer is open_clip's built-in BPE, shipped inside the package.

For an image-caption dataset (CUB) the metric scores images generated from captions against those captions,
and captions generated from images against those images; caption tokens become text through the dataset's
vocabulary (``MultimodalDataset.decode_text``), which the caption adapters provide.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from mmbench.errors import MMBenchError
from mmbench.metrics.base import EvalContext, MetricRow
from mmbench.model import MultimodalVAE
from mmbench.registry import register_metric


def load_clip(model_name: str, checkpoint: str | Path | None, device: torch.device | str = "cpu"):
    """(model, preprocess, tokenizer) of open_clip from a local checkpoint; one line when it cannot be had."""
    path = checkpoint or os.environ.get("MMBENCH_CLIP_CHECKPOINT")
    if not path:
        raise MMBenchError(
            f"CLIP score needs a local open_clip checkpoint for {model_name!r}: pass the clip_score "
            "option checkpoint = PATH or set $MMBENCH_CLIP_CHECKPOINT (e.g. the open_clip_pytorch_model.bin "
            f"of laion's {model_name} release, downloaded on a machine with network)"
        )
    path = Path(path).expanduser()
    if not path.is_file():
        raise MMBenchError(f"CLIP checkpoint {path} does not exist")
    try:
        import open_clip
    except ImportError:
        raise MMBenchError("CLIP score needs open_clip: pip install open_clip_torch") from None
    if model_name not in open_clip.list_models():
        raise MMBenchError(
            f"unknown open_clip model {model_name!r}; known: {', '.join(open_clip.list_models()[:12])}, ..."
        )
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(path), device=device)
    except Exception as exc:
        raise MMBenchError(
            f"CLIP checkpoint {path} is not a {model_name} checkpoint ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''})"
        ) from None
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
    return model.eval(), preprocess, open_clip.get_tokenizer(model_name)


@torch.no_grad()
def clip_score(model, tokenizer, images: torch.Tensor, texts: Sequence[str], *, batch_size: int = 100) -> float:
    """100 x mean cosine similarity of (image, text) pairs, clipped at 0. Images (N, 3, H, W) in [0, 1] are
    resized to the model's input size and normalised with CLIP's mean and std."""
    if len(images) != len(texts) or not len(texts):
        raise MMBenchError(f"CLIP score pairs images with texts: got {len(images)} images and {len(texts)} texts")
    device = next(model.parameters()).device
    size = model.visual.image_size
    size = size if isinstance(size, (tuple, list)) else (size, size)
    mean = torch.tensor(getattr(model.visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073), device=device)
    std = torch.tensor(getattr(model.visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711), device=device)
    total = 0.0
    for s in range(0, len(texts), batch_size):
        x = images[s : s + batch_size].to(device).float()
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False).clamp(0, 1)
        x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
        img = F.normalize(model.encode_image(x).float(), dim=-1)
        txt = F.normalize(model.encode_text(tokenizer(list(texts[s : s + batch_size])).to(device)).float(), dim=-1)
        total += float((100 * (img * txt).sum(-1)).sum())
    return max(total / len(texts), 0.0)


@register_metric("clip_score")
class CLIPScoreMetric:
    """CLIP score (open_clip, local checkpoint) of generated images against captions and generated captions against images.

    model:      open_clip architecture name.
    checkpoint: path of its local weights file (required: nothing is downloaded).
    batch_size: pairs per CLIP pass.
    max_test:   evaluate on the first N test tuples (0: all).
    """

    def __init__(
        self, model: str = "ViT-B-32", checkpoint: str | None = None, batch_size: int = 100, max_test: int = 0
    ):
        if batch_size < 1 or max_test < 0:
            raise MMBenchError("clip_score options: batch_size must be >= 1 and max_test >= 0")
        self.model_name, self.checkpoint = model, checkpoint
        self.batch_size, self.max_test = batch_size, max_test
        path = checkpoint or os.environ.get("MMBENCH_CLIP_CHECKPOINT")
        if not path or not Path(path).expanduser().is_file():  # refused at submit time, with what is missing
            load_clip(model, path)
        self.provenance = {"model": model, "checkpoint": str(Path(path).expanduser())}

    def __call__(self, model: MultimodalVAE, ctx: EvalContext) -> list[MetricRow]:
        kinds = {m.name: m.kind for m in model.modalities}
        images = [m for m, k in kinds.items() if k == "image"]
        texts = [m for m, k in kinds.items() if k == "text"]
        decode = getattr(ctx.test, "decode_text", None)
        if not images or not texts or decode is None:
            raise MMBenchError(
                f"clip_score needs an image and a text (caption) modality with a vocabulary; dataset "
                f"{ctx.test.name!r} has " + ", ".join(f"{m} ({k})" for m, k in kinds.items())
            )
        clip, _, tokenizer = load_clip(self.model_name, self.checkpoint, ctx.device)
        test = ctx.test.head(self.max_test) if self.max_test else ctx.test
        g = torch.Generator().manual_seed(ctx.seed)
        rows = []
        for image in images:
            for text in texts:
                real_x, real_t, gen_images, gen_texts = [], [], [], []
                for batch in test.batches(self.batch_size):
                    real_x.append(batch["x"][image].cpu())
                    real_t += decode(text, batch["x"][text].cpu())
                    gen_images.append(model.cond_generate(batch["x"], [text], [image], generator=g)[image].cpu())
                    gen_texts += decode(text, model.cond_generate(batch["x"], [image], [text], generator=g)[text].cpu())
                rows.append(
                    MetricRow(
                        "clip_score",
                        image,
                        text,
                        1,
                        clip_score(clip, tokenizer, torch.cat(gen_images), real_t),
                        len(test),
                    )
                )
                rows.append(
                    MetricRow(
                        "clip_score",
                        text,
                        image,
                        1,
                        clip_score(clip, tokenizer, torch.cat(real_x), gen_texts),
                        len(test),
                    )
                )
        return rows
