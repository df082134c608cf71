"""The trainer: Adam over epochs (or a step budget), a progress bar, verified checkpoints, resume, NaN guard."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from mmbench.checkpoint import load_checkpoint, save_model
from mmbench.data.base import MultimodalDataset
from mmbench.errors import MMBenchError
from mmbench.model import MultimodalVAE


class NonFiniteLossError(MMBenchError):
    """The loss became NaN or infinite; the message names the step and the last finite checkpoint."""


@dataclass
class TrainResult:
    """What a training run did: optimiser steps, epochs completed, wall seconds of training up to the end of
    the last epoch (summed over resumed sessions; checkpoint writes excluded), mean loss per epoch."""

    steps: int
    epochs: int
    seconds: float
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def train(model: MultimodalVAE, data: MultimodalDataset, *, seed: int = 0, checkpoint: Path | None = None,
          progress: bool = True, log=print) -> TrainResult:
    """Train ``model`` on ``data`` for config.epochs (stopping early at config.max_steps if set).

    With ``checkpoint`` the state (weights, optimiser, epoch, RNG) is saved atomically after every
    epoch and a run finds and resumes from it.
    """
    cfg = model.config
    if set(model.modality_names) - set(data.modality_names):
        raise MMBenchError(f"model modalities {model.modality_names} are not all in dataset {data.modality_names}")
    generator = seed_everything(seed)
    optimizer = model.make_optimizer()
    start_epoch, steps, history, seconds_before = 0, 0, [], 0.0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = load_checkpoint(checkpoint)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, steps, history = state["epoch"], state["steps"], state["history"]
        seconds_before = state.get("seconds", 0.0)
        log(f"resuming from {checkpoint} at epoch {start_epoch} (step {steps})")
    trained_seconds = seconds_before

    per_epoch = data.num_batches(cfg.batch_size)
    total = cfg.epochs * per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(total=total, initial=min(steps, total), desc=f"train {model.registry_name}", unit="step",
               disable=not progress, dynamic_ncols=True)
    epoch = start_epoch
    try:
        while epoch < cfg.epochs and steps < total:
            sums: dict[str, float] = {}
            n = 0
            for batch in data.batches(cfg.batch_size, shuffle=True, generator=generator):
                model.begin_step(steps, per_epoch)
                out = model.loss(batch)
                if not torch.isfinite(out.loss):
                    raise NonFiniteLossError(
                        f"loss is {out.loss.item()} at step {steps} (epoch {epoch}); "
                        + (f"last good state is in {checkpoint}" if checkpoint else "no checkpoint was kept")
                        + "; try a smaller lr"
                    )
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                optimizer.step()
                steps += 1
                n += 1
                sums["loss"] = sums.get("loss", 0.0) + out.loss.item()
                for k, v in out.terms.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{out.loss.item():.1f}")
                if steps >= total:
                    break
            epoch += 1
            history.append({"epoch": epoch, "steps": steps, **{k: v / max(n, 1) for k, v in sums.items()}})
            trained_seconds = seconds_before + time.perf_counter() - t0
            if checkpoint is not None:
                save_model(checkpoint, model, {
                    "optimizer": optimizer.state_dict(), "epoch": epoch, "steps": steps, "history": history,
                    "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                    "seconds": trained_seconds,
                })
    finally:
        bar.close()
    model.eval()
    return TrainResult(steps, epoch, trained_seconds, history)
