"""Models trained in stages: latent-diffusion models train unimodal autoencoders, then a score model over their
latents (SBM-AE, MLD). A model lists its ``Stage``s; its config holds one ``StageConfig`` per stage, in a field
named after the stage. Models without stages train in one stage, the whole model, as before."""

from __future__ import annotations

import dataclasses

from mmbench.config import TrainConfig, check_range
from mmbench.errors import MMBenchError

REUSE_OFF = "off"


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """One training stage's budget.

    epochs:     passes over the training set in this stage.
    lr:         Adam learning rate of this stage.
    batch_size: training batch size of this stage.
    max_steps:  stop the stage after this many optimiser steps (0: no limit).
    reuse:      "" loads a finished result of this stage with the same key when one is stored (reusable stages),
                "off" always trains it, any other value is the id of a stored result (RUNS/.stages/ID) to load.
    """

    epochs: int
    lr: float
    batch_size: int
    max_steps: int = 0
    reuse: str = ""

    def __post_init__(self) -> None:
        check_range(self, "epochs", lo=0)
        check_range(self, "lr", lo=0.0, lo_open=True)
        check_range(self, "batch_size", lo=1)
        check_range(self, "max_steps", lo=0)


@dataclasses.dataclass(frozen=True)
class Stage:
    """name: the stage, and the model config's field holding its ``StageConfig``; modules: the model's submodules
    (attribute names) whose parameters this stage trains; reusable: a finished result may be shared by runs whose
    stage key agrees; depends: the config fields besides the stage's own that determine its result."""

    name: str
    modules: tuple[str, ...]
    reusable: bool = False
    depends: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class StagedConfig(TrainConfig):
    """The config of a model trained in stages: TrainConfig's fields, and one ``StageConfig`` field per stage.

    A stage section is given as a table (``[config.mld.autoencoders] epochs = 5``) or dotted keys
    (``--set config.mld.autoencoders.epochs=5``) that replace only those fields of the preset.

    epochs:     every stage's epochs, when given here: applies to each stage section that does not set its own.
    lr:         every stage's learning rate, when given here: applies to each stage section that does not set its own.
    batch_size: every stage's batch size, when given here: applies to each stage section that does not set its own.
    max_steps:  every stage's step budget, when given here: applies to each stage section that does not set its own.
    """


def stage_fields(config_cls: type) -> list[str]:
    """The names of ``config_cls``'s fields that are stage sections (typed ``StageConfig``)."""
    import typing

    hints = typing.get_type_hints(config_cls)
    return [f.name for f in dataclasses.fields(config_cls) if hints.get(f.name) is StageConfig]


def check_stages(model_cls: type) -> None:
    """Refuse in one line a model whose ``stages`` do not match its config: each stage needs a ``StageConfig`` field
    of its name, stage names are distinct, and a stage trains at least one module."""
    stages = getattr(model_cls, "stages", ())
    name = getattr(model_cls, "registry_name", "") or model_cls.__name__
    sections = stage_fields(model_cls.Config)
    seen = set()
    for stage in stages:
        if stage.name in seen:
            raise MMBenchError(f"model {name!r} declares stage {stage.name!r} twice")
        seen.add(stage.name)
        if stage.name not in sections:
            raise MMBenchError(
                f"model {name!r} declares stage {stage.name!r} but {model_cls.Config.__name__} has no StageConfig "
                f"field of that name (its stage sections: {sections or 'none'})"
            )
        if not stage.modules:
            raise MMBenchError(f"model {name!r}: stage {stage.name!r} names no module to train")
        missing = [d for d in stage.depends if d not in {f.name for f in dataclasses.fields(model_cls.Config)}]
        if missing:
            raise MMBenchError(
                f"model {name!r}: stage {stage.name!r} depends on {missing[0]!r}, which is not a field of "
                f"{model_cls.Config.__name__}"
            )
