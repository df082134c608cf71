"""mmbench: a benchmarking harness for multimodal VAEs (Diff-MVAE and its baselines).

The names below are the plugin API (docs/plugins.md): a model, dataset, metric or prior plugin needs nothing
else. They stay importable from here across releases; the machinery (``storage``, ``training``, ``runs``,
``sweeps``, ``report``, ``cli``) may move.
"""

from mmbench import _moved
from mmbench._version import __version__
from mmbench.config import TrainConfig, build_config, check_choice, check_range  # noqa: E402
from mmbench.data.base import MultimodalDataset  # noqa: E402
from mmbench.errors import MMBenchError  # noqa: E402
from mmbench.fusion import (  # noqa: E402
    Gaussian,
    kl_normal,
    product_of_experts,
    product_of_stacked_experts,
    subset_mask,
    subset_posteriors,
    subset_weights,
    subsets,
)
from mmbench.metrics.base import EvalContext, MetricRow  # noqa: E402
from mmbench.mixture import SubsetMixtureConfig, SubsetMixtureVAE  # noqa: E402
from mmbench.modality import Modality  # noqa: E402
from mmbench.model import LossOutput, MultimodalVAE  # noqa: E402
from mmbench.nets import default_decoder, default_encoder  # noqa: E402
from mmbench.objectives import Likelihood, importance_objective, mixture_elbo, stratified_mixture_elbo  # noqa: E402
from mmbench.optim import adam  # noqa: E402
from mmbench.registry import (  # noqa: E402
    DATASETS,
    METRICS,
    MODELS,
    PRIORS,
    register_dataset,
    register_metric,
    register_model,
    register_prior,
)
from mmbench.stages import Stage, StageConfig, StagedConfig  # noqa: E402
from mmbench.storage.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from mmbench.unimodal import UnimodalParts, decoded_log_prob, decoded_mean  # noqa: E402

_moved.install()  # the flat layout's module paths, for this release

__all__ = [
    "__version__",
    "DATASETS",
    "METRICS",
    "MODELS",
    "PRIORS",
    "EvalContext",
    "Gaussian",
    "Likelihood",
    "LossOutput",
    "MMBenchError",
    "MetricRow",
    "Modality",
    "MultimodalDataset",
    "MultimodalVAE",
    "Stage",
    "StageConfig",
    "StagedConfig",
    "SubsetMixtureConfig",
    "SubsetMixtureVAE",
    "TrainConfig",
    "UnimodalParts",
    "adam",
    "build_config",
    "check_choice",
    "check_range",
    "decoded_log_prob",
    "decoded_mean",
    "default_decoder",
    "default_encoder",
    "importance_objective",
    "kl_normal",
    "load_checkpoint",
    "mixture_elbo",
    "product_of_experts",
    "product_of_stacked_experts",
    "register_dataset",
    "register_metric",
    "register_model",
    "register_prior",
    "save_checkpoint",
    "stratified_mixture_elbo",
    "subset_mask",
    "subset_posteriors",
    "subset_weights",
    "subsets",
]
