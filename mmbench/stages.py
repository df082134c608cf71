"""Models trained in stages: latent-diffusion models train unimodal autoencoders, then a score model over their
latents (SBM-AE, MLD). A model lists its ``Stage``s; its config holds one ``StageConfig`` per stage, in a field
named after the stage. Models without stages train in one stage, the whole model, as before."""

from __future__ import annotations

import dataclasses

from mmbench.config import TrainConfig, check_range

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
    """The config of a model trained in stages: TrainConfig's fields, and one ``StageConfig`` field per stage."""
