"""Helpers the tests share: hand-made run records in the layout mmbench writes."""

import json

import torch


def record(
    run_id,
    *,
    model="mopoe",
    seed=0,
    m=5,
    epochs=27,
    release="published",
    status="finished",
    git="abc",
    sweep="s",
    metrics=(),
    failure=None,
    schema=4,
    missing_rate=None,
    observed=None,
):
    spec = {
        "model": model,
        "dataset": "polymnist",
        "dataset_options": {"root": "/data/p", "modalities": m},
        "seed": seed,
        "config": {"epochs": epochs},
        "metrics": ["coherence"],
        "metric_options": {},
        "sweep": sweep,
    }
    out = {
        "schema": schema,
        "run_id": run_id,
        "status": status,
        "failure": failure,
        "spec": spec,
        "n_modalities": m,
        "config": {"beta": 2.5, "epochs": epochs},
        "provenance": {"git": git},
        "data": {"release": release},
        "finished_at": "2026-11-20T10:00:00+00:00",
        "metrics": list(metrics),
        **({"observed": observed} if observed is not None else {}),
    }
    if missing_rate is not None:
        out["spec"]["dataset_options"]["missing_rate"] = missing_rate
    return out


def row(metric, n, value, target="*", given=None, prior=None):
    given = ("*" if n else "") if given is None else given
    prior = ("gaussian" if n == 0 else "") if prior is None else prior
    return {"metric": metric, "target": target, "given": given, "n_given": n, "value": value, "prior": prior}


def write(runs, *records):
    for rec in records:
        folder = runs / rec["run_id"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "record.json").write_text(json.dumps(rec))


def tiny_dataset(n: int = 64, shapes=((3, 28, 28), (3, 28, 28), (3, 28, 28)), seed: int = 0):
    from mmbench.data.base import MultimodalDataset
    from mmbench.modality import Modality

    g = torch.Generator().manual_seed(seed)
    mods = [Modality(f"m{i}", s) for i, s in enumerate(shapes)]
    x = {m.name: torch.rand(n, *m.shape, generator=g) for m in mods}
    y = torch.randint(0, 10, (n,), generator=g)
    return MultimodalDataset(mods, x, y, "tiny")


def installed_models() -> list[str]:
    """The installed plugins' model names, without the test-local ones test modules (and helper modules here, such
    as ddp_helpers) register when collected."""
    import inspect
    from pathlib import Path

    from mmbench.registry import MODELS

    here = Path(__file__).resolve().parent

    def test_local(cls) -> bool:
        return cls.__module__.startswith(("tests.", "test_")) or Path(inspect.getfile(cls)).resolve().parent == here

    return [n for n in MODELS.names() if not test_local(MODELS.get(n))]


class Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler sees it."""


def crash_if(model, step: int, at) -> None:
    """Raise Crash when ``model`` begins step ``at``: a step index, or (stage, step within it) for a staged model."""
    if (step if not isinstance(at, tuple) else (model.active_stage, step)) == at:
        raise Crash()


def crash_before_step(model, at) -> None:
    """Make ``model`` raise Crash as it begins step ``at`` (``crash_if``), its own ``begin_step`` run otherwise."""
    original = model.begin_step

    def begin_step(step, per_epoch):
        crash_if(model, step, at)
        original(step, per_epoch)

    model.begin_step = begin_step
