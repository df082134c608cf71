"""The README's commands run: the block marked runnable (the five-minute tour) in a fresh folder, its Python
examples (a dataset plugin, a model plugin) in a fresh interpreter, and the commands it names exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def fenced(language: str, text: str | None = None, marker: str | None = None) -> list[str]:
    """The fenced blocks of ``language``; with ``marker``, only those right after an HTML comment holding it."""
    text = text if text is not None else README.read_text()
    pattern = (rf"<!--[^>]*{marker}[^>]*-->\n" if marker else "") + rf"```{language}\n(.*?)```"
    return re.findall(pattern, text, re.S)


@pytest.mark.slow
def test_the_runnable_block_runs_in_a_fresh_folder(tmp_path):
    (block,) = fenced("bash", marker="runnable")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished" in done.stdout and (tmp_path / "results" / "reports" / "index.html").is_file()
    assert "probe" in (tmp_path / "results" / "reports" / "leaderboard.md").read_text().lower()


def test_the_python_examples_run(tmp_path):
    dataset_example, model_example = fenced("python")
    for name, n in (("train", 6), ("test", 4)):
        torch.save(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), tmp_path / f"{name}_images.pt")
        torch.save(torch.randint(0, 2, (n, 8)), tmp_path / f"{name}_attributes.pt")
        torch.save(torch.randint(0, 10, (n,)), tmp_path / f"{name}_labels.pt")
    check = (
        dataset_example
        + f"""
data = MyPairs.load({str(tmp_path)!r}, "train")
assert len(data) == 6 and data.x["image"].max() <= 1
from mmbench import MODELS, build_config
from mmbench.describe import dataset_options
assert [f.name for f in dataset_options("my_pairs")[1]] == ["root", "normalise"]
model = MODELS.get("mopoe")(data.modalities, build_config(MODELS.get("mopoe").Config, {{"latent_dim": 8}}))
batch = {{"x": {{k: v[:4] for k, v in data.x.items()}}, "y": data.y[:4]}}
assert model.loss(batch).loss.isfinite()
"""
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            model_example.replace("    ...\n", "")
            + "\nfrom mmbench import MODELS\nassert MODELS.get('mine').display_name == 'Mine'\n",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_every_command_the_readme_names_has_help():
    from mmbench.cli import build_parser

    commands = set(re.findall(r"`mmbench ((?:sweep |data |prior )?[a-z]+)", README.read_text()))
    parser = build_parser()
    for command in sorted(commands):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([*command.split(), "--help"])
        assert exit_.value.code == 0, command
