"""Latent-sample comparisons used by `mmbench prior fit` against closed forms."""

import math

import torch

from mmbench.runs.latents import gaussian_fit_distance, moment_errors


def gaussian_sample(n, mean, cov, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, len(mean), generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T + mean


def test_frechet_distance_of_gaussian_fits_matches_the_closed_form():
    # Diagonal covariances: ||m1 - m2||^2 + sum (s1 - s2)^2 with s the standard deviations.
    a = gaussian_sample(200_000, torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64), 0)
    cov_b = torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64))
    b = gaussian_sample(200_000, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), cov_b, 1)
    expected = 1.0 + (1 - 2) ** 2 + 0 + (1 - 0.5) ** 2
    assert math.isclose(gaussian_fit_distance(a, b), expected, abs_tol=0.03)
    assert gaussian_fit_distance(b, b) < 1e-6


def test_moment_errors_measure_mean_shift_and_relative_covariance_gap():
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    b = gaussian_sample(200_000, torch.zeros(2, dtype=torch.float64), cov, 0)
    mean_err, cov_err = moment_errors(b + torch.tensor([3.0, 4.0], dtype=torch.float64), b)
    assert math.isclose(mean_err, 5.0, abs_tol=1e-9) and cov_err < 1e-9
    independent = gaussian_sample(200_000, torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64), 1)
    # ||I - C||_F / ||C||_F = sqrt(2 * 0.8^2) / sqrt(2 + 2 * 0.8^2)
    _, gap = moment_errors(independent, b)
    assert math.isclose(gap, math.sqrt(1.28) / math.sqrt(3.28), abs_tol=0.01)
