"""The trainer's memory layout (channels-last on the CPU) and its Adam (fused where torch has the kernel): both
change how a step runs, not what it computes."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import tiny_dataset

from mmbench.cli import build_parser
from mmbench.cli.common import run_flags
from mmbench.config import build_config
from mmbench.errors import MMBenchError
from mmbench.nets.polymnist import PolyMNISTEncoder
from mmbench.nets.resnet_polymnist import ResNetPolyMNISTDecoder
from mmbench.optim import adam, fused_supported
from mmbench.registry import MODELS
from mmbench.sweeps.files import run_options_from
from mmbench.training.memory_format import apply_memory_format, resolve_memory_format, to_memory_format
from mmbench.training.options import RunOptions
from mmbench.training.trainer import train


def test_auto_is_channels_last_on_the_cpu_and_contiguous_on_cuda():
    assert resolve_memory_format("auto", torch.device("cpu")) is torch.channels_last
    assert resolve_memory_format("auto", torch.device("cuda", 0)) is torch.contiguous_format
    assert resolve_memory_format("contiguous", torch.device("cpu")) is torch.contiguous_format
    assert resolve_memory_format("channels_last", torch.device("cuda", 0)) is torch.channels_last


def test_a_bad_layout_is_one_line_naming_the_value_and_the_choices():
    with pytest.raises(MMBenchError, match=r"memory_format 'nhwc'; allowed: auto, channels_last, contiguous"):
        RunOptions(memory_format="nhwc")
    with pytest.raises(MMBenchError, match="memory_format"):
        resolve_memory_format("NCHW", torch.device("cpu"))


def test_the_layout_is_a_run_table_key_and_a_command_line_flag():
    assert run_options_from({"memory_format": "contiguous"}, "sweep.toml").memory_format == "contiguous"
    args = build_parser().parse_args(
        ["train", "--model", "mopoe", "--data-root", "d", "--memory-format", "channels_last"]
    )
    assert run_flags(args)["memory_format"] == "channels_last"
    assert run_options_from({"memory_format": "contiguous"}, "f", run_flags(args)).memory_format == "channels_last"


def test_only_image_batches_change_layout_and_values_stay():
    images, text = torch.rand(2, 3, 5, 5), torch.randint(0, 9, (2, 2, 8))
    out = to_memory_format({"x": {"a": images, "t": text}, "y": [torch.arange(2)], "name": "b"}, torch.channels_last)
    assert out["x"]["a"].is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous(
        memory_format=torch.channels_last
    )
    assert torch.equal(out["x"]["a"], images) and out["x"]["t"] is text and out["name"] == "b"


def _small(name: str):
    data = tiny_dataset(48)
    cls = MODELS.get(name)
    small = {"latent_dim": 8, "batch_size": 16, "epochs": 1}
    if name == "mmvaeplus":
        small.update(private_dim=4)
    if name.startswith("diffmvae"):
        small.update(unet_base=8, unet_mults=[1, 2])
    torch.manual_seed(0)
    return data, cls(data.modalities, build_config(cls.Config, small))


@pytest.mark.parametrize("name", ["mopoe", "mmvaeplus", "diffmvae_star"])
def test_a_channels_last_step_computes_the_loss_and_gradients_of_a_contiguous_one(name):
    """The same weights, batch and noise in both layouts: the same loss, and gradients within the fp32 error of
    the CPU's contiguous convolution backward (up to 3e-3 of a tensor's largest entry against fp64 on MMVAE+'s
    ResNet decoder; see the next test)."""
    data, model = _small(name)
    batch = data.batch(torch.arange(16))
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        twin = copy.deepcopy(model)
        apply_memory_format(twin, layout)
        torch.manual_seed(1)
        loss = twin.loss(to_memory_format(batch, layout)).loss
        loss.backward()
        results.append((loss.detach(), {k: p.grad for k, p in twin.named_parameters() if p.grad is not None}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=0)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for k, g in grads_a.items():
        scale = float(g.abs().max()) + 1e-12
        # 1e-7 absolute: a bias ahead of a one-channel GroupNorm has a gradient of 0 up to rounding (1e-9)
        torch.testing.assert_close(g, grads_b[k], rtol=1e-3, atol=5e-3 * scale + 1e-7, msg=lambda m: f"{name} {k}: {m}")


def _resnet_decoder():
    return ResNetPolyMNISTDecoder(12), (torch.randn(16, 12),)


def _polymnist_encoder():
    return PolyMNISTEncoder(12), (torch.rand(16, 3, 28, 28),)


@pytest.mark.parametrize("build", [_resnet_decoder, _polymnist_encoder], ids=["resnet", "polymnist"])
def test_channels_last_passes_are_fp32_accurate_against_float64(build):
    """Output and parameter gradients of a network in fp32 channels-last, against the same network in fp64:
    within 1e-3 of each tensor's largest entry."""
    torch.manual_seed(0)
    net, inputs = build()

    def run(layout, dtype):
        twin = apply_memory_format(copy.deepcopy(net).to(dtype), layout)
        out = twin(*[to_memory_format(v.to(dtype) if v.is_floating_point() else v, layout) for v in inputs])
        out = torch.cat([o.flatten(1) for o in out], 1) if isinstance(out, tuple) else out.flatten(1)
        out.backward(torch.ones_like(out) / out.numel() ** 0.5)
        return [out.detach().double()] + [p.grad.double() for p in twin.parameters()]

    reference = run(torch.contiguous_format, torch.float64)
    for got, want in zip(run(torch.channels_last, torch.float32), reference):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-3 * float(want.abs().max()) + 1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mopoe", "diffmvae_star"])
def test_the_trainer_puts_the_model_in_the_layout_asked_for(name):
    """Trained with memory_format = "channels_last" every convolution kernel is channels-last, and the losses of
    its steps are the contiguous run's (Adam turns float rounding in near-zero gradients into weight
    differences of the order of lr, so the weights themselves are compared through the losses)."""
    runs = {}
    for layout in ("contiguous", "channels_last"):
        data, model = _small(name)
        result = train(
            model,
            data,
            seed=0,
            options=RunOptions(tensorboard=False, memory_format=layout),
            progress=False,
            log=lambda s: None,
        )
        runs[layout] = (model, result)
    kernels = [p for p in runs["channels_last"][0].parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    assert not any(
        p.is_contiguous(memory_format=torch.channels_last)
        for p in runs["contiguous"][0].parameters()
        if p.dim() == 4 and p.shape[-1] > 1
    )
    losses = [[h["loss"] for h in result.history] for _, result in runs.values()]
    assert len(losses[0]) == 1 and losses[0] == pytest.approx(losses[1], rel=1e-4)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_fused_adam_takes_the_steps_of_torchs_default_adam(amsgrad):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
    twin = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
    twin.load_state_dict(net.state_dict())
    fused = adam(net.parameters(), 1e-2, amsgrad=amsgrad)
    default = torch.optim.Adam(twin.parameters(), lr=1e-2, amsgrad=amsgrad, foreach=False)
    assert fused.defaults["fused"] == fused_supported(list(net.parameters()))
    x = torch.randn(5, 3, 8, 8)
    for _ in range(5):
        for model, opt in ((net, fused), (twin, default)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fused_adam_is_asked_for_only_where_torch_has_it(monkeypatch):
    params = [torch.nn.Parameter(torch.zeros(3))]
    monkeypatch.setattr(torch, "__version__", "2.3.1")
    assert not fused_supported(params)
    monkeypatch.setattr(torch, "__version__", "2.4.0")
    assert fused_supported(params)
    assert not fused_supported([])
