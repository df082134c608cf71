"""mmbench.diffusion's latent score model against closed forms: a Gaussian latent N(mu, cov), whose exact noise
prediction is known at every time (``gaussian_eps``), sampled through the model's samplers, unconditionally and
with part of it observed; and the multi-time loss against the single-time one.

Tolerances: with N samples, a sampled mean has standard error sqrt(cov_ii / N) and a sampled covariance entry
sqrt((cov_ii cov_jj + cov_ij^2) / N); each check allows 5 standard errors (a false alarm about once in 10^6 per
entry) plus ``DISCRETE``, the samplers' own error at these step counts with the exact denoiser (DDIM at 200 steps
is off by up to ~0.03 in a covariance entry, Euler-Maruyama at 300 by ~0.02; both shrink as steps grow).
"""

import pytest
import torch
from torch import nn

from mmbench.diffusion import LatentScoreConfig, LatentScoreModel, ddpm_loss, dsm_loss, score_from_noise_model
from mmbench.diffusion.processes import gaussian_eps
from mmbench.errors import MMBenchError

MU = torch.tensor([0.5, -1.0, 2.0])
COV = torch.tensor([[1.0, 0.6, 0.3], [0.6, 1.5, -0.4], [0.3, -0.4, 0.8]])
N = 20_000
DISCRETE = 0.03
STEPS = {"ddpm": 200, "vpsde": 300}  # DDIM, Euler-Maruyama


class Exact(nn.Module):
    """The exact noise prediction of N(MU, cov), a time per dimension (groups of one dimension each)."""

    def __init__(self, process, cov=COV):
        super().__init__()
        self.eps = gaussian_eps(MU, cov, process)

    def forward(self, x, t, *, time_scale):
        return self.eps(x, t)


def exact_model(process, cov=COV, **config):
    model = LatentScoreModel(
        3, LatentScoreConfig(net="mlp", process=process, standardise=False, **config), groups=(1, 1, 1)
    )
    model.net = Exact(model.process, cov)
    return model


def assert_gaussian(x, mean, cov):
    n = x.shape[0]
    se_mean = (cov.diagonal() / n).sqrt()
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n).sqrt()
    assert ((x.mean(0) - mean).abs() <= 5 * se_mean + DISCRETE).all(), (x.mean(0), mean)
    assert ((torch.cov(x.T) - cov).abs() <= 5 * se_cov + DISCRETE).all(), (torch.cov(x.T), cov)


def conditional(observed_value, o, u, cov=COV):
    """The Gaussian conditional of dimensions u given x_o = observed_value[o]."""
    gain = cov[u][:, o] @ torch.linalg.inv(cov[o][:, o])
    return MU[u] + gain @ (observed_value[o] - MU[o]), cov[u][:, u] - gain @ cov[o][:, u]


@pytest.mark.parametrize(
    "process,config",
    [("ddpm", {}), ("vpsde", {}), ("vpsde", {"corrector_steps": 1})],
    ids=["ddim", "euler_maruyama", "predictor_corrector"],
)
def test_sampling_with_the_exact_denoiser_recovers_mean_and_covariance(process, config):
    model = exact_model(process, **config)
    steps = STEPS[process] // (2 if config else 1)
    x = model.sample(N, steps=steps, generator=torch.Generator().manual_seed(0))
    assert_gaussian(x, MU, COV)


@pytest.mark.parametrize("process", ["ddpm", "vpsde"])
def test_the_clean_conditional_sampler_recovers_the_gaussian_conditional(process):
    """Observed dimension 0 held at 1.2 (time 0 for its group): the other two follow N(mu_u|o, cov_u|o)."""
    value, mask = torch.tensor([1.2, 0.0, 0.0]), torch.tensor([True, False, False])
    model = exact_model(process)
    x = model.sample(
        N,
        steps=STEPS[process],
        observed=value.expand(N, 3),
        mask=mask,
        mode="clean",
        generator=torch.Generator().manual_seed(1),
    )
    assert (x[:, 0] == 1.2).all()
    assert_gaussian(x[:, 1:], *conditional(value, [0], [1, 2]))
    # two observed dimensions, per-example values: the remaining one given both
    values = torch.tensor([[0.0, -2.0, 0.0], [1.0, 0.0, 0.0]]).repeat_interleave(N // 2, 0)
    mask = torch.tensor([True, True, False])
    x = model.sample(
        N, steps=STEPS[process], observed=values, mask=mask, mode="clean", generator=torch.Generator().manual_seed(2)
    )
    assert torch.equal(x[:, :2], values[:, :2])
    for half, value in zip(x.chunk(2), values[[0, -1]]):
        assert_gaussian(half[:, 2:], *conditional(value, [0, 1], [2]))


@pytest.mark.parametrize("process", ["ddpm", "vpsde"])
def test_the_replacement_sampler_keeps_the_observed_part_and_samples_an_independent_part_exactly(process):
    """Replacement (inpainting) needs no multi-time training but is exact only where the parts are independent:
    with correlated parts it stays biased as steps grow (on COV, observed x_0 = 1.2, the conditional mean of x_1
    comes out ~0.2 too low at 200 and at 1000 steps), so only the independent case is a closed form here."""
    cov = COV.clone()
    cov[0, 1:] = cov[1:, 0] = 0.0
    value, mask = torch.tensor([1.2, 0.0, 0.0]), torch.tensor([True, False, False])
    model = exact_model(process, cov)
    x = model.sample(
        N,
        steps=STEPS[process],
        observed=value.expand(N, 3),
        mask=mask,
        mode="replace",
        generator=torch.Generator().manual_seed(3),
    )
    assert (x[:, 0] == 1.2).all()
    assert_gaussian(x[:, 1:], MU[1:], cov[1:, 1:])


@pytest.mark.parametrize("process", ["ddpm", "vpsde"])
@pytest.mark.parametrize("weighting", ["variance", "likelihood"])
def test_the_multi_time_loss_with_equal_times_is_the_single_time_loss(process, weighting):
    torch.manual_seed(0)
    model = LatentScoreModel(
        3, LatentScoreConfig(net="mlp", hidden=16, depth=2, process=process, weighting=weighting), groups=(2, 1)
    )
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(1)) * 2 + 1
    model.fit_standardisation(z)
    draw = model.process.draw_times((64,), generator=torch.Generator().manual_seed(2))
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    per_group = model.loss(z, t=draw[:, None].expand(64, 2), generator=g())
    assert torch.equal(per_group, model.loss(z, t=draw, generator=g()))
    x = model.normalise(z)
    if process == "ddpm":
        single = ddpm_loss(model.eps, x, model.process.schedule, weighting=weighting, t=draw, generator=g())
    else:
        single = dsm_loss(
            score_from_noise_model(model.eps, model.process),
            x,
            model.process,
            weighting=weighting,
            t=draw,
            generator=g(),
        )
    assert torch.allclose(per_group, single, rtol=1e-4, atol=1e-5)
    # and distinct times per group give a different loss (each group is noised at its own time)
    other = draw.flip(0)
    assert not torch.allclose(model.loss(z, t=torch.stack([draw, other], 1), generator=g()), per_group)


def test_a_mask_keeps_observed_groups_clean_unscored_and_at_time_zero():
    seen = {}

    class Recorder(nn.Module):
        def forward(self, x, t, *, time_scale):
            seen["x"], seen["t"] = x, t
            return torch.zeros_like(x)

    model = LatentScoreModel(3, LatentScoreConfig(net="mlp", process="vpsde"), groups=(2, 1), net=Recorder())
    z = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    model.fit_standardisation(z)
    t = torch.full((8, 2), 0.7)
    mask = torch.tensor([True, True, False])
    loss = model.loss(z, t=t, mask=mask, generator=torch.Generator().manual_seed(1))
    x = model.normalise(z)
    assert torch.equal(seen["x"][:, :2], x[:, :2]) and not torch.allclose(seen["x"][:, 2], x[:, 2])
    assert (seen["t"][:, 0] == 0).all() and (seen["t"][:, 1] == 0.7).all()
    # zero prediction: the loss is 1/2 ||noise||^2 over the unobserved dimension only
    noise = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(loss, 0.5 * noise[:, 2] ** 2)


@pytest.mark.parametrize("net", ["unet", "mlp"])
def test_the_built_in_networks_train_and_sample_in_the_latents_units(net):
    torch.manual_seed(0)
    config = LatentScoreConfig(net=net, base=8, mults=(1, 2), hidden=32, depth=2, sampler_steps=5)
    model = LatentScoreModel(6, config)
    z = torch.randn(128, 6, generator=torch.Generator().manual_seed(1)) * 3 + 10
    model.fit_standardisation(z)
    assert torch.allclose(model.denormalise(model.normalise(z)), z, atol=1e-5)
    assert model.normalise(z).mean().abs() < 1e-5
    opt = torch.optim.Adam(model.net.parameters(), 1e-2)
    g = torch.Generator().manual_seed(2)
    losses = []
    for _ in range(40):
        loss = model.loss(z, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < sum(losses[:10])
    x = model.sample(4, generator=torch.Generator().manual_seed(3))
    assert x.shape == (4, 6) and torch.isfinite(x).all()


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: LatentScoreModel(3, groups=(2, 2)), r"latent groups \[2, 2\] must be positive and sum to 3"),
        (lambda: LatentScoreModel(3, groups=(2, 1)), "net = 'unet' takes one diffusion time per example"),
        (lambda: LatentScoreConfig(process="ve"), "LatentScoreConfig.process = 've'; allowed: 'ddpm', 'vpsde'"),
        (lambda: LatentScoreModel(3).loss(torch.zeros(4, 2)), r"latents have shape \(4, 2\), expected \(N, 3\)"),
        (
            lambda: LatentScoreModel(3, LatentScoreConfig(net="mlp")).loss(torch.zeros(4, 3), t=torch.zeros(4, 2)),
            r"t must be \(N,\) or \(N, groups\)",
        ),
        (lambda: LatentScoreModel(3).sample(2, mask=torch.ones(3, dtype=torch.bool)), "needs both observed and mask"),
        (
            lambda: LatentScoreModel(3, LatentScoreConfig(net="mlp"), groups=(2, 1)).sample(
                2, observed=torch.zeros(2, 3), mask=torch.tensor([True, False, False]), mode="clean"
            ),
            r"mask must observe whole latent groups \[2, 1\]",
        ),
        (
            lambda: LatentScoreModel(3).sample(2, observed=torch.zeros(2, 3), mask=torch.ones(3), mode="gibbs"),
            "conditional sampling mode 'gibbs'; known: replace, clean",
        ),
        (lambda: LatentScoreModel(3).sample(2, steps=0), "sampler steps must be an integer >= 1"),
        (
            lambda: LatentScoreConfig(sampler_steps=1001),
            r"LatentScoreConfig.sampler_steps = 1001 is out of range; allowed: \[1, 1000\]",
        ),
    ],
)
def test_bad_input_is_one_line(call, message):
    with pytest.raises(MMBenchError, match=message):
        call()


def test_observed_dimensions_at_time_zero_leave_the_likelihood_weighted_loss_and_its_gradient_finite():
    """Under the VP-SDE a time of 0 has std 0, where the likelihood weighting g^2 / std^2 is infinite: observed
    dimensions (MLD passes them time 0) must not reach it, in the loss or its gradient."""
    torch.manual_seed(0)
    model = LatentScoreModel(
        3, LatentScoreConfig(net="mlp", hidden=16, depth=1, process="vpsde", weighting="likelihood"), groups=(2, 1)
    )
    z = torch.randn(16, 3, generator=torch.Generator().manual_seed(1))
    t = torch.stack([torch.zeros(16), torch.full((16,), 0.5)], 1)
    loss = model.loss(z, t=t, mask=torch.tensor([True, True, False])).mean()
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.net.parameters())
