"""Where a training run is, as its checkpoint keeps it: ``TrainState`` and the migration of older checkpoints.

A checkpoint is restored in two halves: the model's weights (``state_dict``), and the training state: the
optimiser's state (``optimizer``) and the entries of ``TrainState.state_dict()``:

    steps, epoch, position   optimiser steps taken; epochs completed; batches of the current epoch already taken
    history                  [{"epoch", "steps", mean loss terms}] of every completed epoch
    sums                     per rank, the running sums of the current epoch's loss terms: {"values", "rows"}
    generator                the data-order generator's state (the same on every rank)
    epoch_generator          its state at the start of the current epoch: the epoch's permutation is drawn again
                             from it and its first ``position`` batches skipped
    rng                      per rank, torch's RNG states: {"cpu"} and, on a GPU, {"cuda"}
    seconds                  training seconds, summed over the sessions of the run (checkpoint writes excluded)
    world_size               the number of processes that wrote it
    stage                    only a model trained in stages: {"index", "name", "done", "offset", "seconds",
                             "costs"} (the trainer's ``_StageAt``): the stage it is in, whether that stage has
                             ended (the boundary checkpoint, after ``end_stage``), the run's steps and seconds when
                             it began, the costs of the stages done; absent: stage 0 (or no stages)

Every entry is a tensor, a number, a string, or a list or dict of them (``torch.load(weights_only=True)`` reads
them). ``migrate_checkpoint`` turns the layouts older trainers wrote into this one, so the loop reads these keys
only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from mmbench.errors import MMBenchError
from mmbench.storage.checkpoint import load_checkpoint
from mmbench.storage.validate import get_field, kind_of
from mmbench.training.distributed import DistEnv, all_gather_objects, all_reduce_sum


def rng_state(device: torch.device) -> dict:
    """torch's RNG states of this process: {"cpu"}, and {"cuda"} of ``device`` when it is a GPU."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class TermSums:
    """Running sums of the loss terms weighted by rows, reduced over ranks when read."""

    def __init__(self, state: dict | None = None):
        self.values: dict[str, float] = dict((state or {}).get("values", {}))
        self.rows = (state or {}).get("rows", 0)

    def add(self, terms: dict[str, float], rows: int) -> None:
        for k, v in terms.items():
            self.values[k] = self.values.get(k, 0.0) + v * rows
        self.rows += rows

    def means(self, env: DistEnv) -> dict[str, float]:
        """The row-weighted mean of each term over every rank (a collective call in a data-parallel run)."""
        keys = sorted(self.values)
        t = torch.tensor([self.values[k] for k in keys] + [float(self.rows)], dtype=torch.float64)
        t = all_reduce_sum(t, env)
        return {k: float(t[i] / max(float(t[-1]), 1.0)) for i, k in enumerate(keys)}

    def state_dict(self) -> dict:
        return {"values": dict(self.values), "rows": self.rows}


@dataclass(eq=False)
class TrainState:
    """The progress of a training run on this rank: steps, epoch, position in it, the data order, the epoch's
    running sums (``TermSums``), the history and the training seconds.

    Start one with ``TrainState.start(seed)``. torch's RNG states are not kept here but in torch itself:
    ``state_dict`` reads them and ``load_state_dict`` sets them, as a checkpoint needs.
    """

    steps: int = 0
    epoch: int = 0
    position: int = 0
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    generator: torch.Generator = field(default_factory=torch.Generator)
    epoch_start: torch.Tensor | None = None  # the generator's state at the start of the current epoch
    sums: TermSums = field(default_factory=TermSums)

    @classmethod
    def start(cls, seed: int) -> "TrainState":
        """Step 0, the data order drawn from a generator seeded with ``seed`` (the same on every rank)."""
        generator = torch.Generator().manual_seed(seed)
        return cls(generator=generator, epoch_start=generator.get_state())

    def next_stage(self, seed: int) -> "TrainState":
        """The state a new training stage starts from: epoch 0 of a data order seeded with ``seed``, the run's
        steps, history and training seconds carried over."""
        nxt = TrainState.start(seed)
        nxt.steps, nxt.history, nxt.seconds = self.steps, self.history, self.seconds
        return nxt

    def epoch_order(self, n: int) -> torch.Tensor:
        """The current epoch's permutation of ``n`` rows, drawn from the generator's state at the epoch's start:
        an epoch resumed part-way draws the one it began with."""
        if self.position == 0:
            self.epoch_start = self.generator.get_state()
        self.generator.set_state(self.epoch_start)
        return torch.randperm(n, generator=self.generator)

    def end_epoch(self, env: DistEnv) -> None:
        """Count the epoch, append its mean loss terms (over every rank) to the history, start the next one."""
        self.epoch += 1
        self.position = 0
        self.history.append({"epoch": self.epoch, "steps": self.steps, **self.sums.means(env)})
        self.sums = TermSums()

    def state_dict(self, env: DistEnv | None = None, device: torch.device | str = "cpu") -> dict:
        """The checkpoint's entries (the module's docstring lists them), with every rank's RNG states and sums.

        In a data-parallel run every rank calls it (the per-rank entries are gathered); each gets the same dict.
        """
        env = env or DistEnv()
        rng = all_gather_objects(rng_state(torch.device(device)), env)
        sums = all_gather_objects(self.sums.state_dict(), env)
        return {
            "epoch": self.epoch,
            "position": self.position,
            "steps": self.steps,
            "history": [dict(h) for h in self.history],
            "sums": sums,
            "generator": self.generator.get_state(),
            "epoch_generator": self.epoch_start,
            "rng": rng,
            "seconds": self.seconds,
            "world_size": env.world_size,
        }

    def load_state_dict(self, state: dict, env: DistEnv | None = None, device: torch.device | str = "cpu") -> None:
        """Take this rank's part of ``state`` (the current layout: ``migrate_checkpoint`` first) and set torch's RNG
        states to it. Written by another number of processes, the sums of a part-done epoch start over and rank r
        takes the RNG states of rank r modulo the writers (the resumed run is then not bit-identical)."""
        env = env or DistEnv()
        self.steps, self.epoch, self.position = state["steps"], state["epoch"], state["position"]
        self.history = [dict(h) for h in state["history"]]
        self.seconds = state["seconds"]
        self.generator.set_state(state["generator"])
        self.epoch_start = state["epoch_generator"]
        rank_sums = state["sums"]
        self.sums = TermSums(rank_sums[env.rank] if len(rank_sums) == env.world_size else None)
        rng = state["rng"]
        set_rng_state(rng[env.rank % len(rng)], torch.device(device))


def migrate_checkpoint(payload: dict) -> dict:
    """``payload`` (a loaded checkpoint) in the current layout; the input is left as it is.

    The older layouts, each still resumed:

    - the first trainer's (checkpoints at epoch ends, one process): ``torch_rng`` (the CPU RNG state) instead of
      ``rng``; no ``position``, ``epoch_generator``, ``sums`` or ``world_size``; and, before training time was
      kept, no ``seconds``. At an epoch's end the position is 0, the generator stands at the next epoch's start,
      the sums are empty and the time of those sessions is lost (0).
    - the first step checkpoints': ``sums`` was one dict, rank 0's. It is rank 0's entry of the list when one
      process wrote it; with more the other ranks' sums are lost, and the resumed epoch's mean covers the
      batches after the resume.

    A payload of the current layout comes back equal.
    """
    migrated = dict(payload)
    if not migrated.get("rng"):
        migrated["rng"] = [{"cpu": migrated["torch_rng"]}]
    migrated.pop("torch_rng", None)
    migrated.setdefault("position", 0)
    migrated.setdefault("epoch_generator", migrated["generator"])
    migrated.setdefault("seconds", 0.0)
    migrated.setdefault("world_size", len(migrated["rng"]))
    sums = migrated.get("sums")
    if isinstance(sums, dict):
        sums = [sums] if migrated["world_size"] == 1 else None
    migrated["sums"] = sums or [TermSums().state_dict() for _ in range(migrated["world_size"])]
    return migrated


# the training entries a checkpoint resumes from, in every layout ``migrate_checkpoint`` reads: (name, kind)
_TRAIN_ENTRIES = (
    ("state_dict", "dict"),
    ("optimizer", "dict"),
    ("steps", "int"),
    ("epoch", "int"),
    ("history", "list"),
)
_OPTIONAL_ENTRIES = (("position", "int"), ("seconds", "number"), ("world_size", "int"), ("stage", "dict"))
_STAGE_ENTRIES = (
    ("index", "int"),
    ("name", "str"),
    ("done", "bool"),
    ("offset", "int"),
    ("seconds", "number"),
    ("costs", "list"),
)


def check_train_checkpoint(payload: dict, path: Path | str) -> dict:
    """``payload`` (a loaded checkpoint) when it holds the training state a run resumes from, in any layout
    ``migrate_checkpoint`` reads; refused in one line naming the file and the entry otherwise (a model-only
    checkpoint, another program's file, wrong types)."""
    where = f"checkpoint {path}"
    for name, kind in _TRAIN_ENTRIES:
        get_field(payload, name, kind, where, required=True)
    for name, kind in _OPTIONAL_ENTRIES:
        get_field(payload, name, kind, where)
    for name in ("generator", "epoch_generator"):
        if (name in payload or name == "generator") and not isinstance(payload.get(name), torch.Tensor):
            raise MMBenchError(
                f"{where}: field {name!r} must be a generator state (a tensor), got {kind_of(payload.get(name))}"
            )
    rng = payload.get("rng")
    if rng:
        if not isinstance(rng, list) or not all(
            isinstance(r, dict) and isinstance(r.get("cpu"), torch.Tensor) for r in rng
        ):
            raise MMBenchError(f"{where}: field 'rng' must be a list of RNG states ({{'cpu': tensor}} per rank)")
    elif not isinstance(payload.get("torch_rng"), torch.Tensor):
        raise MMBenchError(f"{where}: field 'rng' is missing (no RNG state to resume from)")
    stage = payload.get("stage")
    if stage is not None:
        for name, kind in _STAGE_ENTRIES:
            get_field(stage, name, kind, where, prefix="stage.", required=True)
        for i, cost in enumerate(stage["costs"]):
            if not isinstance(cost, dict) or not isinstance(cost.get("name"), str):
                raise MMBenchError(f"{where}: field 'stage.costs[{i}]' must be a stage's cost (an object with a name)")
    sums = payload.get("sums")
    if sums is not None and not isinstance(sums, (list, dict)):
        raise MMBenchError(f"{where}: field 'sums' must be a list of running sums, got {kind_of(sums)}")
    return payload


def read_train_checkpoint(path: Path) -> dict:
    """The training checkpoint at ``path`` (or its previous copy: ``load_checkpoint``), checked and migrated to the
    current layout; MMBenchError in one line naming the file when a run cannot resume from it."""
    return migrate_checkpoint(check_train_checkpoint(load_checkpoint(path), path))
