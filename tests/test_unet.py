"""The UNets: shapes for images and latent vectors, and the output depends on z."""

import dataclasses

import pytest
import torch

from diffmvae.unet import PRESETS, UNet, UNetConfig
from mmbench.errors import MMBenchError


@pytest.mark.parametrize(
    "preset, shape", [("image28", (2, 3, 28, 28)), ("image64", (2, 3, 64, 64)), ("latent", (2, 8)), ("latent", (2, 30))]
)
def test_output_has_the_input_shape(preset, shape):
    torch.manual_seed(0)
    net = UNet(dataclasses.replace(PRESETS[preset], cond_dim=5))
    out = net(torch.randn(*shape), torch.tensor([3, 700]), torch.randn(2, 5))
    assert out.shape == shape and torch.isfinite(out).all()


CONDITIONINGS = ["embedding", "scale_shift", "spatial", "scale_shift+spatial", "embedding+scale_shift+spatial"]


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_the_output_depends_on_z_and_on_t(conditioning):
    torch.manual_seed(0)
    net = UNet(UNetConfig(dims=2, channels=3, base=16, mults=(1, 2), cond_dim=4, conditioning=conditioning))
    # only the named paths exist: an option that fell back to another path would fail here
    parts = conditioning.split("+")
    assert (net.cond is not None) == ("embedding" in parts)
    assert (net.modulation is not None) == ("scale_shift" in parts)
    assert (net.spatial is not None) == ("spatial" in parts)
    for p in net.parameters():  # break the zero-initialised symmetry a trained net would have
        p.data.add_(0.05 * torch.randn_like(p))
    x, t = torch.randn(2, 3, 28, 28), torch.tensor([10, 10])
    z1, z2 = torch.randn(2, 4), torch.randn(2, 4)
    assert not torch.allclose(net(x, t, z1), net(x, t, z2), atol=1e-4)
    assert not torch.allclose(net(x, t, z1), net(x, torch.tensor([900, 900]), z1), atol=1e-4)
    # gradients reach the conditioning path, so an encoder upstream learns through the diffusion loss
    z = torch.randn(2, 4, requires_grad=True)
    net(x, t, z).square().sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_a_conditioned_unet_refuses_a_missing_z():
    net = UNet(UNetConfig(dims=1, channels=1, base=8, mults=(1, 2), cond_dim=3))
    with pytest.raises(MMBenchError, match="pass z"):
        net(torch.randn(2, 8), torch.tensor([1, 2]))


def test_the_timestep_embedding_follows_the_process_not_the_values():
    import math

    from diffmvae.unet import timestep_embedding

    def reference(values, dim=8):
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = torch.tensor(values, dtype=torch.float32)[:, None] * freqs[None]
        return torch.cat([args.sin(), args.cos()], -1)

    discrete = torch.tensor([0, 1, 999])
    assert torch.allclose(timestep_embedding(discrete, 8), reference([0.0, 1.0, 999.0]))
    assert torch.allclose(timestep_embedding(torch.tensor([0, 1]), 8), reference([0.0, 1.0]))  # not t = 1000
    continuous = torch.tensor([1e-3, 0.5, 1.0])
    assert torch.allclose(timestep_embedding(continuous, 8), reference([1.0, 500.0, 1000.0]), atol=1e-5)
    # a process that states its scale (VPSDE.time_scale, DDPM.time_scale) gets what the type rule gives
    assert torch.equal(timestep_embedding(continuous, 8, 1000.0), timestep_embedding(continuous, 8))
    assert torch.equal(timestep_embedding(discrete, 8, 1.0), timestep_embedding(discrete, 8))


@pytest.mark.parametrize("conditioning", ["scale_shift", "embedding+scale_shift"])
def test_a_latent_unet_takes_z_by_modulation(conditioning):
    torch.manual_seed(0)
    net = UNet(UNetConfig(dims=1, channels=1, base=8, mults=(1, 2), cond_dim=3, conditioning=conditioning))
    x, t = torch.randn(2, 12), torch.tensor([5, 5])
    assert not torch.allclose(net(x, t, torch.randn(2, 3)), net(x, t, torch.randn(2, 3)), atol=1e-5)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(conditioning="film"), "conditioning = 'film': use one of embedding, scale_shift, spatial"),
        (dict(conditioning="spatial+spatial"), "use one of"),
        (dict(dims=1, conditioning="spatial"), "'spatial' makes feature maps for an image UNet"),
        (dict(pad_to=-1), "pad_to must be >= 0"),
    ],
)
def test_bad_unet_settings_are_one_line(fields, message):
    with pytest.raises(MMBenchError, match=message):
        UNetConfig(**{"cond_dim": 4, **fields})


def test_padding_to_32_keeps_28x28_outputs_and_ignores_the_border():
    torch.manual_seed(0)
    net = UNet(UNetConfig(dims=2, channels=3, base=8, mults=(1, 2, 2, 2), cond_dim=4, pad_to=32))
    x, t, z = torch.randn(2, 3, 28, 28), torch.tensor([3, 400]), torch.randn(2, 4)
    seen = []
    net.inp.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape))
    out = net(x, t, z)
    assert out.shape == x.shape and seen == [torch.Size([2, 3, 32, 32])]  # four levels: 32/16/8/4
    assert torch.equal(net(x, t, z), out)
