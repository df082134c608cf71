"""Diffusion losses and samplers where the true score is known (Gaussian data, mixture of two Gaussians)."""

import pytest
import torch

from diffmvae.diffusion import (
    DDPM,
    VPSDE,
    DDPMSchedule,
    ddpm_loss,
    dsm_loss,
    gaussian_ddpm_eps,
    gaussian_vp_score,
    sample_ancestral,
    sample_ddim,
    sample_euler_maruyama,
    score_from_noise_model,
)
from mmbench.errors import MMBenchError

MU = torch.tensor([1.5, -0.5], dtype=torch.float64)
VAR = torch.tensor([0.25, 2.0], dtype=torch.float64)


def data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MU + VAR.sqrt() * torch.randn(n, 2, generator=g, dtype=torch.float64)


def noise(n, seed=1):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def assert_moments(x, tol_mean=0.05, tol_var=0.08):
    assert torch.allclose(x.mean(0), MU, atol=tol_mean), x.mean(0)
    assert torch.allclose(x.var(0), VAR, rtol=tol_var), x.var(0)


def test_ddpm_loss_is_lowest_at_the_true_noise_prediction():
    sched = DDPMSchedule.linear()
    eps = gaussian_ddpm_eps(MU, VAR, sched)
    x0 = data(20000)
    true = ddpm_loss(eps, x0, sched, generator=torch.Generator().manual_seed(3)).mean()
    off = ddpm_loss(lambda x, t: eps(x, t) * 1.1 + 0.05, x0, sched, generator=torch.Generator().manual_seed(3)).mean()
    assert true < off


@pytest.mark.parametrize("weighting", ["variance", "likelihood"])
def test_dsm_loss_is_lowest_at_the_true_score(weighting):
    sde = VPSDE()
    score = gaussian_vp_score(MU, VAR, sde)
    x0 = data(20000)
    true = dsm_loss(score, x0, sde, weighting=weighting, generator=torch.Generator().manual_seed(4)).mean()
    off = dsm_loss(
        lambda x, t: score(x, t) * 0.9, x0, sde, weighting=weighting, generator=torch.Generator().manual_seed(4)
    ).mean()
    assert true < off


def test_ddim_with_the_exact_score_reproduces_the_data_moments_and_converges_in_steps():
    sched = DDPMSchedule.linear()
    eps = gaussian_ddpm_eps(MU, VAR, sched)
    x = sample_ddim(eps, noise(20000), sched, steps=200, eta=0.0)
    assert_moments(x, tol_var=0.03)
    # With few steps the ODE discretisation shrinks the variance (50 steps: about -8 %); it closes as steps grow.
    errors = [(sample_ddim(eps, noise(20000), sched, steps=k).var(0) - VAR).abs().max() for k in (10, 50, 200)]
    assert errors[0] > errors[1] > errors[2]


def test_noise_parametrised_score_turns_dsm_into_noise_prediction_and_samples_the_data():
    sde = VPSDE()
    exact = gaussian_vp_score(MU, VAR, sde)
    eps_exact = lambda x, t: -sde.marginal(t)[1][:, None] * exact(x, t)  # noqa: E731
    score = score_from_noise_model(eps_exact, sde)
    x = noise(50)
    t = torch.rand(50, dtype=torch.float64) * 0.99 + 0.01
    assert torch.allclose(score(x, t), exact(x, t))
    # lambda(t) = std(t)^2: (1/2) std^2 ||-eps_theta/std + noise/std||^2 = (1/2) ||eps_theta - noise||^2.
    net = lambda x, t: 0.3 * x + t[:, None]  # noqa: E731 - any noise model
    x0 = data(64)
    loss = dsm_loss(score_from_noise_model(net, sde), x0, sde, generator=torch.Generator().manual_seed(8))
    g = torch.Generator().manual_seed(8)
    t = torch.rand(64, generator=g, dtype=torch.float64) * (1 - 1e-5) + 1e-5
    n = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    mean, std = sde.marginal(t)
    expected = 0.5 * ((net(mean[:, None] * x0 + std[:, None] * n, t) - n) ** 2).sum(1)
    assert torch.allclose(loss, expected)
    assert_moments(sample_euler_maruyama(score, noise(20000), sde, steps=500))


def test_clipped_vp_score_keeps_euler_maruyama_in_range():
    sde = VPSDE()
    exact = gaussian_vp_score(MU, VAR, sde)
    biased = lambda x, t: -sde.marginal(t)[1][:, None] * exact(x, t) + 0.2  # noqa: E731
    free = sample_euler_maruyama(
        score_from_noise_model(biased, sde), noise(2000), sde, steps=100, generator=torch.Generator().manual_seed(0)
    )
    clipped = sample_euler_maruyama(
        score_from_noise_model(biased, sde, clip=4.0),
        noise(2000),
        sde,
        steps=100,
        generator=torch.Generator().manual_seed(0),
    )
    assert free.abs().max() > 5 and clipped.abs().max() < 4.05  # the last EM step moves a little past x_0


def test_ddim_clipping_keeps_samples_in_range_and_leaves_in_range_data_alone():
    sched = DDPMSchedule.linear()
    eps = gaussian_ddpm_eps(MU, VAR, sched)
    biased = lambda x, t: eps(x, t) + 0.05  # noqa: E731 - a noise model with a small constant error
    free = sample_ddim(biased, noise(2000), sched, steps=50)
    assert free.abs().max() > 5  # the error is amplified by 1/sqrt(abar_t) early on
    clipped = sample_ddim(biased, noise(2000), sched, steps=50, clip=4.0)
    assert clipped.abs().max() <= 4.0
    # Data well inside the range: clipping never binds, the exact score's moments are kept.
    wide = sample_ddim(eps, noise(20000), sched, steps=200, clip=50.0)
    assert torch.allclose(wide, sample_ddim(eps, noise(20000), sched, steps=200), atol=1e-9)


def test_ddim_with_eta_zero_is_deterministic_for_fixed_noise_and_eta_one_is_not():
    sched = DDPMSchedule.linear()
    eps = gaussian_ddpm_eps(MU, VAR, sched)
    a = sample_ddim(eps, noise(64), sched, steps=20, eta=0.0, generator=torch.Generator().manual_seed(0))
    b = sample_ddim(eps, noise(64), sched, steps=20, eta=0.0, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    c = sample_ddim(eps, noise(64), sched, steps=20, eta=1.0, generator=torch.Generator().manual_seed(0))
    d = sample_ddim(eps, noise(64), sched, steps=20, eta=1.0, generator=torch.Generator().manual_seed(9))
    assert not torch.allclose(c, d)


@pytest.mark.slow
def test_ancestral_sampling_with_the_exact_score_reproduces_the_data_moments():
    sched = DDPMSchedule.linear()
    x = sample_ancestral(
        gaussian_ddpm_eps(MU, VAR, sched), noise(20000), sched, generator=torch.Generator().manual_seed(5)
    )
    assert_moments(x)


@pytest.mark.slow
@pytest.mark.parametrize("corrector_steps", [0, 1])
def test_euler_maruyama_with_the_exact_score_reproduces_the_data_moments(corrector_steps):
    sde = VPSDE()
    x = sample_euler_maruyama(
        gaussian_vp_score(MU, VAR, sde),
        noise(20000),
        sde,
        steps=1000,
        corrector_steps=corrector_steps,
        generator=torch.Generator().manual_seed(6),
    )
    assert_moments(x)


def test_ddim_samples_a_mixture_of_two_gaussians_with_its_weights():
    """p_0 = 0.3 N(-2, 0.3^2) + 0.7 N(2, 0.3^2) in 1-D; the exact eps comes from the mixture's score."""
    sched = DDPMSchedule.linear()
    ab_all = sched.alphas_cumprod
    weights = torch.tensor([0.3, 0.7], dtype=torch.float64)
    means = torch.tensor([-2.0, 2.0], dtype=torch.float64)

    def eps(x, t):
        ab = ab_all[t].unsqueeze(-1)  # (N, 1)
        var = ab * 0.09 + 1 - ab
        log_r = torch.log(weights) - 0.5 * torch.log(var) - 0.5 * (x - ab.sqrt() * means) ** 2 / var  # (N, 2)
        r = torch.softmax(log_r, -1)
        score = (r * (-(x - ab.sqrt() * means) / var)).sum(-1, keepdim=True)
        return -(1 - ab).sqrt() * score

    x = sample_ddim(
        eps, torch.randn(20000, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64), sched, steps=50
    )
    assert abs((x > 0).double().mean().item() - 0.7) < 0.02
    assert abs(x[x > 0].mean().item() - 2.0) < 0.05 and abs(x[x < 0].mean().item() + 2.0) < 0.05


@pytest.mark.parametrize(
    "call",
    [
        lambda: sample_ddim(lambda x, t: x, noise(2), DDPMSchedule.linear(), steps=0),
        lambda: sample_euler_maruyama(lambda x, t: x, noise(2), VPSDE(), steps=0),
        lambda: sample_ddim(lambda x, t: x, noise(2), DDPMSchedule.linear(), steps=2000),
    ],
)
def test_sampler_steps_below_one_are_refused(call):
    with pytest.raises(MMBenchError, match="sampler steps must be an integer >= 1"):
        call()


def test_the_likelihood_weighting_is_g_squared_times_the_score_error():
    """dsm_loss(weighting="likelihood") = 1/2 beta(t) || s(x_t, t) - grad log p_t(x_t | x_0) ||^2 for a known s."""
    sde = VPSDE()
    x0 = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.01, 0.3, 0.6, 0.95])
    score = gaussian_vp_score(torch.zeros(3, 5, 5), torch.ones(3, 5, 5) * 0.3, sde)
    loss = dsm_loss(score, x0, sde, weighting="likelihood", t=t, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    mean, std = sde.marginal(t)
    xt = mean[:, None, None, None] * x0 + std[:, None, None, None] * noise
    err = score(xt, t) - (-noise / std[:, None, None, None])
    assert torch.allclose(loss, 0.5 * sde.beta(t) * err.flatten(1).square().sum(-1), rtol=1e-5)


def test_both_losses_carry_the_half_and_agree_under_the_variance_weighting():
    """DDPM's loss with w = 1 is eq. 17's lambda(t)/2 || score error ||^2 with lambda = std^2, the VP default."""
    sched = DDPMSchedule.linear()
    x0 = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 400, 999])
    eps_model = lambda x, t: 0.5 * x  # noqa: E731
    loss = ddpm_loss(eps_model, x0, sched, t=t, generator=torch.Generator().manual_seed(2))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    ab = sched.alphas_cumprod[t].float()[:, None, None, None]
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    score_err = (-eps_model(xt, t) + noise) / (1 - ab).sqrt()  # s_theta - grad log p_t(x_t|x_0)
    expected = 0.5 * (1 - ab).flatten() * score_err.flatten(1).square().sum(-1)
    assert torch.allclose(loss, expected, rtol=1e-4)


def test_the_high_noise_weighting_grows_with_t_and_the_likelihood_one_with_small_t():
    from diffmvae.diffusion import noise_weight

    sde = VPSDE()
    t = torch.tensor([0.05, 0.3, 0.6, 0.9])
    _, std = sde.marginal(t)
    high, lik = noise_weight("high_noise", std, sde.beta(t)), noise_weight("likelihood", std, sde.beta(t))
    assert (high.diff() > 0).all() and high[-1] <= 1 and lik[0] > lik[-1]
    with pytest.raises(MMBenchError, match="unknown diffusion loss weighting 'snr'; known: variance, likelihood"):
        noise_weight("snr", std, std)


def test_both_processes_are_the_functions_behind_one_interface():
    """VPSDE and DDPM (the DiffusionProcess of the Diff-MVAE models) give what the function forms give, draw for draw."""
    x0, n = data(4), noise(4)
    eps = gaussian_ddpm_eps(MU, VAR, DDPMSchedule.linear())  # any noise model serves; this one takes discrete t
    vp_eps = lambda x, t: x * t.reshape(-1, 1)  # noqa: E731
    sde, ddpm = VPSDE(), DDPM(eta=0.5)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(
        sde.loss(vp_eps, x0, weighting="likelihood", generator=g()),
        dsm_loss(score_from_noise_model(vp_eps, sde), x0, sde, weighting="likelihood", generator=g()),
    )
    assert torch.equal(
        ddpm.loss(eps, x0, weighting="high_noise", generator=g()),
        ddpm_loss(eps, x0, ddpm.schedule, weighting="high_noise", generator=g()),
    )
    assert torch.equal(
        sde.sample(vp_eps, n, steps=5, clip=1.0, generator=g()),
        sample_euler_maruyama(score_from_noise_model(vp_eps, sde, clip=1.0), n, sde, steps=5, generator=g()),
    )
    assert torch.equal(
        ddpm.sample(eps, n, steps=5, clip=1.0, generator=g()),
        sample_ddim(eps, n, ddpm.schedule, steps=5, eta=0.5, clip=1.0, generator=g()),
    )
    assert (sde.time_scale, ddpm.time_scale) == (1000.0, 1.0)
    with pytest.raises(MMBenchError, match="eta"):
        DDPM(eta=-1.0)
