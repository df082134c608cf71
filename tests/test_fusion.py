"""Product of experts, KL, subsets and weights against closed forms and Monte Carlo."""

import math

import pytest
import torch

from mmbench.errors import MMBenchError
from mmbench.fusion import (
    Gaussian,
    kl_normal,
    product_of_experts,
    stratified_assignment,
    subset_mask,
    subset_posteriors,
    subset_weights,
    subsets,
)


def random_gaussian(g, *shape):
    return Gaussian(
        torch.randn(*shape, generator=g, dtype=torch.float64),
        torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5,
    )


def test_product_of_experts_is_the_normalised_product_of_densities_on_a_grid():
    g = torch.Generator().manual_seed(0)
    experts = [random_gaussian(g, 1) for _ in range(3)]
    z = torch.linspace(-8, 8, 20001, dtype=torch.float64)[:, None]
    product = torch.exp(sum(e.log_prob(z) for e in experts))
    dz = z[1, 0] - z[0, 0]
    normalised = product / (product.sum() * dz)
    poe = product_of_experts(experts)
    assert torch.allclose(normalised, poe.log_prob(z).exp(), atol=1e-6, rtol=1e-4)


def test_product_of_experts_with_prior_expert_differs_by_a_constant_from_the_product():
    g = torch.Generator().manual_seed(1)
    experts = [random_gaussian(g, 4) for _ in range(2)]
    prior = Gaussian(torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64))
    poe = product_of_experts(experts, prior_expert=True)
    z = torch.randn(50, 4, generator=g, dtype=torch.float64) * 3
    diff = poe.log_prob(z) - sum(e.log_prob(z) for e in experts + [prior])
    assert torch.allclose(diff, diff[0].expand_as(diff), atol=1e-9)


def test_subset_posteriors_match_product_of_experts_for_every_subset():
    g = torch.Generator().manual_seed(2)
    names = ["a", "b", "c"]
    experts = random_gaussian(g, 3, 5, 4)  # (M, B, D)
    family = subsets(names)
    flags = torch.tensor([float(len(s) == 3) for s in family])
    q = subset_posteriors(experts, subset_mask(family, names).T, flags)
    for s, subset in enumerate(family):
        parts = [Gaussian(experts.mu[names.index(m)], experts.logvar[names.index(m)]) for m in subset]
        ref = product_of_experts(parts, prior_expert=len(subset) == 3)
        assert torch.allclose(q.mu[s], ref.mu, atol=1e-10) and torch.allclose(q.logvar[s], ref.logvar, atol=1e-10)


@pytest.mark.parametrize("against_standard", [True, False])
def test_kl_normal_matches_monte_carlo(against_standard):
    g = torch.Generator().manual_seed(3)
    q = random_gaussian(g, 3)
    p = None if against_standard else random_gaussian(g, 3)
    ref = p or Gaussian(torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    z = q.rsample(400_000, generator=g)
    samples = q.log_prob(z) - ref.log_prob(z)
    stderr = samples.std() / math.sqrt(len(samples))
    assert abs(samples.mean() - kl_normal(q, p)) < 4 * stderr + 1e-6


def test_kl_of_a_distribution_with_itself_is_zero():
    g = torch.Generator().manual_seed(4)
    q = random_gaussian(g, 7)
    assert kl_normal(q, q).abs().item() < 1e-12


def test_subsets_enumerates_all_non_empty_subsets_and_validates_families():
    assert len(subsets(list("abcd"))) == 15
    assert subsets(list("abc"))[:3] == [("a",), ("b",), ("c",)]
    assert subsets(list("abc"), [["c", "a"], ["b"]]) == [("a", "c"), ("b",)]
    with pytest.raises(MMBenchError, match="unknown modalities"):
        subsets(list("abc"), [["a", "z"]])
    with pytest.raises(MMBenchError, match="empty"):
        subsets(list("abc"), [[]])


def test_subset_weights_are_uniform_by_default_and_normalised_otherwise():
    fam = subsets(list("abc"))
    assert torch.allclose(subset_weights(fam), torch.full((7,), 1 / 7))
    w = subset_weights(fam, [1, 1, 1, 1, 1, 1, 2])
    assert math.isclose(w.sum().item(), 1.0, rel_tol=1e-6) and math.isclose(w[-1].item(), 0.25, rel_tol=1e-6)
    with pytest.raises(MMBenchError, match="non-negative"):
        subset_weights(fam, [-1, 1, 1, 1, 1, 1, 1])
    with pytest.raises(MMBenchError, match="7 subsets"):
        subset_weights(fam, [1, 1])


def test_stratified_assignment_gives_contiguous_blocks_sized_by_weight():
    a = stratified_assignment(10, torch.tensor([0.5, 0.3, 0.2]))
    assert a.tolist() == [0] * 5 + [1] * 3 + [2] * 2
    a = stratified_assignment(7, torch.full((3,), 1 / 3))
    assert len(a) == 7 and sorted(torch.bincount(a).tolist()) == [2, 2, 3]
    assert torch.equal(a, a.sort().values)  # contiguous blocks


def test_stratified_assignment_weights_are_right_in_expectation():
    g = torch.Generator().manual_seed(0)
    weights = torch.full((31,), 1 / 31)  # MoPoE's 31 subsets of 5 modalities, batch 32: one row left over
    counts = torch.zeros(31)
    n = 4000
    for _ in range(n):
        counts += torch.bincount(stratified_assignment(32, weights, generator=g), minlength=31)
    share = counts / (32 * n)
    assert torch.allclose(share, torch.full((31,), 1 / 31), atol=0.0015)  # the first subset is not favoured
    uneven = torch.tensor([0.55, 0.3, 0.15])
    counts = sum(torch.bincount(stratified_assignment(7, uneven, generator=g), minlength=3) for _ in range(n))
    assert torch.allclose(counts / (7 * n), uneven.float(), atol=0.01)
    assert all(len(stratified_assignment(b, uneven, generator=g)) == b for b in range(1, 40))
