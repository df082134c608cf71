"""Finished reusable stages shared between runs: ``RUNS/.stages/<stage>-<hash12>/`` holds ``stage.pt`` (the stage's
modules' weights and the buffers its ``end_stage`` set: ``training.trainer.stage_payload``) and ``stage.json`` (the
key fields, the run that trained it, its cost).

A stage's key is what determines its result: the model, the dataset and its options as the run id resolves them
(missing-data options included), the modalities, the seed, the precision, the stage's ``StageConfig`` less
``reuse``, and the config fields its ``Stage.depends`` names. Runs whose key agrees share one result: the first
trains and publishes it, the others load it (``reuse = ""``); ``reuse = "off"`` always trains; ``reuse = "<id>"``
loads that result, refused in one line when it is missing or was trained under another key (the field named).
Two runs that train the same stage at once both publish; the results are the same and the last rename wins.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.runs.spec import RunSpec
from mmbench.stages import REUSE_OFF, Stage
from mmbench.storage.atomic import atomic_write_json
from mmbench.storage.checkpoint import load_checkpoint, save_checkpoint
from mmbench.storage.names import check_name
from mmbench.storage.validate import get_field, read_json_object

STAGES_DIR = ".stages"
STAGE_WEIGHTS = "stage.pt"
STAGE_INFO = "stage.json"


def _canonical(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


class RunStages:
    """The stored stage results one run may load or publish (the trainer's ``StageStore``): ``runs_dir``'s
    ``.stages`` folder, the run's spec and built config, and (once its data is loaded) its modalities."""

    def __init__(
        self, runs_dir: Path, spec: RunSpec, config: Any, modalities: Sequence[Modality] | None = None
    ) -> None:
        self.folder = Path(runs_dir) / STAGES_DIR
        self.spec = spec
        self.config = config
        self.modalities = list(modalities) if modalities is not None else None
        self._dataset_options = spec.normalized()["dataset_options"]

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

    def find(self, stage: Stage) -> str | None:
        """The result this run loads for ``stage``: its explicit ``reuse`` id (checked), else a stored one of the
        same key; None to train it ("off", or none stored)."""
        reuse = getattr(self.config, stage.name).reuse
        if reuse == REUSE_OFF:
            return None
        if reuse:
            self.check(stage, reuse)
            return reuse
        found = self.result_id(stage)
        return found if self._stored(found) else None

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
