"""The Fréchet distance between Gaussians, the number behind FID (Heusel et al. 2017):

    d^2 = ||mu_1 - mu_2||^2 + Tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^(1/2))

computed in float64 with scipy's matrix square root, as pytorch-fid does: when the product is singular an
``eps`` is added to both diagonals, and a negligible imaginary part of the root (numerical error) dropped.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from mmbench.errors import MMBenchError


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise MMBenchError(
            f"Fréchet distance of Gaussians of different sizes: means {mu1.shape} and {mu2.shape}, "
            f"covariances {sigma1.shape} and {sigma2.shape}"
        )
    diff = mu1 - mu2
    root = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(root).all():
        offset = np.eye(sigma1.shape[0]) * eps
        root = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise MMBenchError(
                f"the covariance product's square root has an imaginary part of "
                f"{np.max(np.abs(root.imag)):.3g}: too few samples for the feature size?"
            )
        root = root.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root))


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples) in float64."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise MMBenchError(f"feature statistics need at least 2 samples of shape (N, D), got {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False)
