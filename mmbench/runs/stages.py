"""Finished reusable stages shared between runs: ``RUNS/.stages/<stage>-<hash12>/`` holds ``stage.pt`` (the stage's
modules' weights and the buffers its ``end_stage`` set: ``training.trainer.stage_payload``) and ``stage.json`` (the
key fields, the run that trained it, its cost).

A stage's key is what determines its result: the model, the dataset and its options as the run id resolves them
(missing-data options included), the modalities, the seed, the precision, the stage's ``StageConfig`` less
``reuse``, and the config fields its ``Stage.depends`` names. Runs whose key agrees share one result: the first
trains and publishes it, the others load it (``reuse = ""``); ``reuse = "off"`` always trains; ``reuse = "<id>"``
loads that result, refused in one line when it is missing or was trained under another key (the field named).

Runs of one key that start at once (a SLURM array, parallel local jobs) still train it once: the first to find no
result claims it, a run lock (``runs.locks``) in its folder held while it trains, and the others wait for it,
looking again every ``CLAIM_POLL_S`` seconds, then load what it published. A claim whose holder died or stopped
beating goes stale as a run's lock does, and a waiting run takes it over and trains the stage itself. A
data-parallel run never waits (its ranks would time out): it trains the stage when none is stored, as do runs
of ``reuse = "off"``; such duplicates publish the same key, and the last rename wins.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.runs.locks import RunLock, RunLocked, read_lock
from mmbench.runs.spec import RunSpec
from mmbench.stages import REUSE_OFF, Stage
from mmbench.storage.atomic import atomic_write_json
from mmbench.storage.checkpoint import load_checkpoint, save_checkpoint
from mmbench.storage.names import check_name
from mmbench.storage.validate import get_field, read_json_object

STAGES_DIR = ".stages"
STAGE_WEIGHTS = "stage.pt"
STAGE_INFO = "stage.json"
CLAIM_POLL_S = 10.0  # how often a run waiting for another job's training of the same result looks again


def _canonical(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


class RunStages:
    """The stored stage results one run may load or publish (the trainer's ``StageStore``): ``runs_dir``'s
    ``.stages`` folder, the run's spec and built config, and (once its data is loaded) its modalities."""

    def __init__(
        self,
        runs_dir: Path,
        spec: RunSpec,
        config: Any,
        modalities: Sequence[Modality] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.folder = Path(runs_dir) / STAGES_DIR
        self.spec = spec
        self.config = config
        self.modalities = list(modalities) if modalities is not None else None
        self.log = log
        self._dataset_options = spec.normalized()["dataset_options"]
        self._claims: dict[str, RunLock] = {}  # stage name -> the claim this run holds while it trains that stage

    def key(self, stage: Stage) -> dict:
        """The fields that determine ``stage``'s result (module docstring); "modalities" only once they are known."""
        section = dataclasses.asdict(getattr(self.config, stage.name))
        section.pop("reuse", None)
        key = {
            "model": self.spec.model,
            "stage": stage.name,
            "dataset": self.spec.dataset,
            "dataset_options": self._dataset_options,
            "seed": self.spec.seed,
            "precision": self.config.precision,
            "stage_config": section,
            "depends": {d: getattr(self.config, d) for d in stage.depends},
        }
        if self.modalities is not None:
            key["modalities"] = [m.to_dict() for m in self.modalities]
        return _canonical(key)

    def result_id(self, stage: Stage) -> str:
        """``<stage>-<12 hex digits of the key's sha256>``: where a result of this key is stored."""
        digest = hashlib.sha256(json.dumps(self.key(stage), sort_keys=True).encode()).hexdigest()
        return f"{stage.name}-{digest[:12]}"

    def _stored(self, result_id: str) -> bool:
        folder = self.folder / result_id
        return (folder / STAGE_INFO).is_file() and (folder / STAGE_WEIGHTS).is_file()

    # -- StageStore ------------------------------------------------------------------------------------------

    def find(self, stage: Stage, *, claim: bool = False) -> str | None:
        """The result this run loads for ``stage``: its explicit ``reuse`` id (checked), else a stored one of the
        same key; None to train it ("off", or none stored). With ``claim``, a run that finds none claims the key
        (held until ``publish`` or ``close``), or waits while another live job holds the claim and loads what it
        publishes (module docstring)."""
        reuse = getattr(self.config, stage.name).reuse
        if reuse == REUSE_OFF:
            return None
        if reuse:
            self.check(stage, reuse)
            return reuse
        found = self.result_id(stage)
        if self._stored(found):
            return found
        return self._claim(stage, found) if claim else None

    def _claim(self, stage: Stage, result_id: str) -> str | None:
        """Wait until ``result_id`` is stored (return it) or this run holds its claim (return None)."""
        folder, waited = self.folder / result_id, False
        while True:
            try:
                lock = RunLock(folder).__enter__()
            except RunLocked:
                if not waited:
                    holder = read_lock(folder) or {"owner": "a job that just finished", "host": "?"}
                    self.log(
                        f"stage {stage.name!r}: waiting for {holder['owner']} on {holder['host']}, which trains "
                        f"the same result {result_id}; it is loaded once published"
                    )
                    waited = True
                time.sleep(CLAIM_POLL_S)
                if self._stored(result_id):
                    return result_id
                continue
            if self._stored(result_id):  # published between the look and the claim
                lock.__exit__(None, None, None)
                return result_id
            self._claims[stage.name] = lock
            return None

    def reclaim(self, stage: Stage) -> None:
        """Take the claim of ``stage`` again for a run resuming in its middle (its own from before a requeue, or
        one gone stale), so that waiting runs keep waiting; left alone while another live job holds it."""
        if getattr(self.config, stage.name).reuse or stage.name in self._claims:
            return
        try:
            self._claims[stage.name] = RunLock(self.folder / self.result_id(stage)).__enter__()
        except RunLocked:
            pass

    def close(self) -> None:
        """Release the claims this run still holds (a stage it did not finish: a waiting run takes the key over)."""
        for name in list(self._claims):
            self._claims.pop(name).__exit__(None, None, None)

    def load(self, stage: Stage, result_id: str) -> dict:
        payload = load_checkpoint(self.folder / result_id / STAGE_WEIGHTS)
        where = f"stored stage result {self.folder / result_id / STAGE_WEIGHTS}"
        get_field(payload, "modules", "dict", where, required=True)
        get_field(payload, "buffers", "dict", where, required=True)
        return payload

    def publish(self, stage: Stage, payload: dict, cost: dict) -> str:
        """Store this run's result of ``stage`` under its key's id (weights first, then stage.json, both atomic)."""
        result_id = self.result_id(stage)
        folder = self.folder / result_id
        folder.mkdir(parents=True, exist_ok=True)
        save_checkpoint(folder / STAGE_WEIGHTS, payload)
        info = {
            "id": result_id,
            "key": self.key(stage),
            "run_id": self.spec.run_id,
            "cost": dict(cost),
            "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(folder / STAGE_INFO, info)
        claim = self._claims.pop(stage.name, None)
        if claim is not None:
            claim.__exit__(None, None, None)
        return result_id

    # -- explicit ids ----------------------------------------------------------------------------------------

    def check(self, stage: Stage, result_id: str) -> None:
        """Refuse in one line an explicit ``reuse`` id of ``stage`` that names no stored result, or one trained
        under another key (naming the first field that differs; modalities only once this run knows them)."""
        what = f"stage {stage.name!r}: reuse = {result_id!r}"
        check_name(result_id, f"{what.split(':')[0]}: field 'reuse'")
        if not self._stored(result_id):
            stored = sorted(p.name for p in self.folder.glob(f"{stage.name}-*") if self._stored(p.name))
            raise MMBenchError(
                f"{what} names no stored stage result ({self.folder / result_id} has no {STAGE_INFO} and "
                f"{STAGE_WEIGHTS}); stored results of this stage: {', '.join(stored) or 'none'} "
                '(reuse = "" finds one by its key, "off" trains the stage)'
            )
        path = self.folder / result_id / STAGE_INFO
        theirs = get_field(read_json_object(path, "stage result"), "key", "dict", f"stage result {path}", required=True)
        mine = self.key(stage)
        for name, value in _flat(mine).items():
            other = _flat(theirs).get(name, "(absent)")
            if other != value:
                raise MMBenchError(
                    f"{what} was trained with {name} = {json.dumps(other)} but this run has {name} = "
                    f'{json.dumps(value)} ({path}); use a result of this run\'s key, or reuse = "" to find one'
                )

    def check_explicit(self, stages: Sequence[Stage]) -> None:
        """``check`` of every explicit ``reuse`` id among ``stages`` (before a run starts)."""
        for stage in stages:
            reuse = getattr(self.config, stage.name).reuse
            if stage.reusable and reuse not in ("", REUSE_OFF):
                self.check(stage, reuse)


def _flat(d: dict, prefix: str = "") -> dict:
    """A nested dict as {"a.b": value} (lists kept whole), to name the first differing field of two keys."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
