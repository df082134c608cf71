"""mmbench: a benchmarking harness for multimodal VAEs (Diff-MVAE and its baselines)."""

__version__ = "0.1.0"

from mmbench.errors import MMBenchError  # noqa: E402
from mmbench.fusion import Gaussian, kl_normal, product_of_experts, subset_posteriors, subset_weights, subsets  # noqa: E402
from mmbench.modality import Modality  # noqa: E402
from mmbench.model import LossOutput, MultimodalVAE  # noqa: E402
from mmbench.objectives import Likelihood, mixture_elbo  # noqa: E402
from mmbench.registry import DATASETS, METRICS, MODELS, register_dataset, register_metric, register_model  # noqa: E402

__all__ = [
    "DATASETS", "METRICS", "MODELS", "Gaussian", "Likelihood", "LossOutput", "MMBenchError", "Modality",
    "MultimodalVAE", "kl_normal", "mixture_elbo", "product_of_experts", "register_dataset", "register_metric",
    "register_model", "subset_posteriors", "subset_weights", "subsets",
]
