"""Registries: built-ins through entry points, a third-party package the same way, clear errors."""

import sys
import textwrap

import pytest

from mmbench.errors import MMBenchError
from mmbench.registry import DATASETS, METRICS, MODELS, Registry


def test_builtin_plugins_are_found_through_their_entry_points():
    assert "mopoe" in MODELS.names()
    assert "polymnist" in DATASETS.names()
    assert "coherence" in METRICS.names()
    assert MODELS.entries()[0].description


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(MMBenchError, match=r"unknown model 'nope'; known models: .*mopoe"):
        MODELS.get("nope")


def test_two_objects_claiming_one_name_are_refused():
    reg = Registry("model", "mmbench.none")

    @reg.register("same")
    class A:
        pass

    with pytest.raises(MMBenchError, match="two plugins claim the model name 'same'"):

        @reg.register("same")
        class B:
            pass


def _fake_distribution(tmp_path, dist, module, name, body):
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
    info = tmp_path / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[mmbench.models]\n{name} = {module}:Model\n")


def test_a_third_party_package_registers_a_model_exactly_like_the_builtins(tmp_path, monkeypatch):
    _fake_distribution(
        tmp_path,
        "thirdparty_vae",
        "thirdparty_vae_mod",
        "thirdparty",
        '''
        from mmbench.model import MultimodalVAE
        class Model(MultimodalVAE):
            """A third-party model."""
    ''',
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("model", "mmbench.models")
    assert reg.get("thirdparty").__doc__ == "A third-party model."
    assert "mopoe" in reg.names()
    sys.modules.pop("thirdparty_vae_mod", None)


def test_a_third_party_package_claiming_a_builtin_name_is_refused(tmp_path, monkeypatch):
    _fake_distribution(
        tmp_path,
        "squatter_vae",
        "squatter_vae_mod",
        "mopoe",
        '''
        class Model:
            """Not MoPoE."""
    ''',
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("model", "mmbench.models")
    with pytest.raises(MMBenchError, match="two plugins claim the model name 'mopoe'"):
        reg.names()
    sys.modules.pop("squatter_vae_mod", None)
