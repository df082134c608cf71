"""mmbench data check: every split of any registered adapter summarised, or the first problem as one line."""

import pytest
import torch

from mmbench.cli import main
from mmbench.data.base import MultimodalDataset
from mmbench.data.check import check_dataset, dataset_splits
from mmbench.data.polymnist import PolyMNIST
from mmbench.data.polymnist_build import build_polymnist
from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.registry import DATASETS, Entry


def test_synthetic_summary_names_splits_counts_shapes_and_labels():
    s = check_dataset("synthetic", options={"views": ["image", "mask", "text"], "n": 40, "size": 8})
    assert [x.split for x in s.splits] == ["train", "test"] and [x.n for x in s.splits] == [40, 40]
    view = {v.name: v for v in s.splits[1].views}
    assert view["image0"].shape == (3, 8, 8) and view["image0"].dtype == "float32"
    assert view["text0"].kind == "text" and view["text0"].dtype == "int64" and view["mask0"].high == 1
    lines = s.lines()
    assert lines[0] == "synthetic at (no folder): generated in code (v1)" and lines[1] == "splits: train, test"
    assert lines[2].startswith("train: 40 tuples, labels 0..9")


def test_polymnist_summary_and_the_extended_val_split(tmp_path, polymnist_pt):
    s = check_dataset("polymnist", polymnist_pt, {"subset": ["m1"]})
    assert s.release == "offline build, 4,000/1,000 tuples"
    assert [(x.split, x.n, x.labels) for x in s.splits] == [
        ("train", 4000, "labels 0..9 (10 distinct)"),
        ("test", 1000, "labels 0..9 (10 distinct)"),
    ]
    ext = build_polymnist(tmp_path / "ext", variant="extended", per_class=10, layout="pt", progress=False)
    s = check_dataset("polymnist", ext, {"modalities": 2, "pad_to": 32})
    assert [x.split for x in s.splits] == ["train", "val", "test"]
    assert s.splits[1].views[1].shape == (3, 32, 32)


def test_cli_prints_the_summary_and_returns_0(capsys):
    assert main(["data", "check", "synthetic", "--set", "n=12", "--set", 'views=["attributes"]']) == 0
    out = capsys.readouterr().out
    assert "train: 12 tuples" in out and "attributes0  attributes  (8,)" in out


def test_cli_names_the_first_problem_in_one_line_and_returns_2(capsys, tmp_path, polymnist_pt):
    import shutil

    root = tmp_path / "pm"
    shutil.copytree(polymnist_pt, root)
    (root / "test" / "m1.pt").unlink()
    (root / "test" / "m2.pt").unlink()
    assert main(["data", "check", "polymnist", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("mmbench: error: ") and f"{root / 'test'} holds modalities" in err
    assert main(["data", "check", "polymnist"]) == 2
    assert "give its folder: mmbench data check polymnist DIR" in capsys.readouterr().err
    assert main(["data", "check", "nodata", str(root)]) == 2
    assert "unknown dataset 'nodata'" in capsys.readouterr().err


class Fake:
    """A third-party adapter whose splits can be made faulty one at a time."""

    SPLITS = ("train", "val", "test")
    faults: dict = {}

    @staticmethod
    def load(root, split="train", n=4):
        fault = Fake.faults.get(split)
        if fault == "raise":
            raise RuntimeError("disk on fire")
        if fault == "not a dataset":
            return {"x": {}}
        mods = [
            Modality("img", (1, 2, 2), "image"),
            Modality("mask", (1, 2, 2), "mask", "bernoulli"),
            Modality("tok", (3,), "text", "categorical", classes=5),
        ]
        x = {"img": torch.rand(n, 1, 2, 2), "mask": torch.ones(n, 1, 2, 2), "tok": torch.zeros(n, 3, dtype=torch.long)}
        y = torch.arange(n) % 3
        if fault == "empty":
            return MultimodalDataset(mods, {k: v[:0] for k, v in x.items()}, y[:0], "fake")
        if fault == "other shape":
            mods[0], x["img"] = Modality("img", (1, 3, 3), "image"), torch.rand(n, 1, 3, 3)
        if fault == "nan":
            x["img"][0, 0, 0, 0] = float("nan")
        if fault == "mask range":
            x["mask"][1] = 2.0
        if fault == "token range":
            x["tok"][2, 1] = 5
        if fault == "negative label":
            y[0] = -1
        return MultimodalDataset(mods, x, y, "fake")


@pytest.fixture
def fake(monkeypatch):
    DATASETS.discover()
    monkeypatch.setitem(DATASETS._entries, "fake", Entry("fake", Fake, "tests"))
    monkeypatch.setattr(Fake, "faults", {})
    return Fake


def test_a_third_party_adapter_declares_its_splits(fake, tmp_path):
    s = check_dataset("fake", tmp_path)
    assert [x.split for x in s.splits] == ["train", "val", "test"] and s.release == ""
    assert s.splits[0].labels == "labels 0..2 (3 distinct)"
    assert dataset_splits(PolyMNIST, {"root": str(tmp_path)}) == ("train", "test")
    assert dataset_splits(object(), {}) == ("train", "test")


@pytest.mark.parametrize(
    "split, fault, message",
    [
        ("val", "raise", r"dataset 'fake' failed to load the val split from .*: RuntimeError: disk on fire"),
        ("test", "not a dataset", "returned a dict for the test split, expected a MultimodalDataset"),
        ("val", "empty", r"fake val split at .* is empty"),
        ("test", "other shape", r"test split does not declare the same modalities .*\[1, 2, 2\].* vs img \[1, 3, 3\]"),
        ("train", "nan", "fake train split at .*: modality 'img' holds NaN or infinite values"),
        ("val", "mask range", r"modality 'mask' \(mask, bernoulli\) holds values in \[1, 2\]; expected \[0, 1\]"),
        ("test", "token range", r"modality 'tok' \(text, categorical\) must hold integer indices 0\.\.4"),
        ("train", "negative label", r"labels must be class indices >= 0"),
    ],
)
def test_each_defect_is_one_clear_error(fake, tmp_path, split, fault, message):
    fake.faults = {split: fault}
    with pytest.raises(MMBenchError, match=message):
        check_dataset("fake", tmp_path)


def test_bad_adapter_options_are_refused_before_loading(fake, tmp_path):
    with pytest.raises(MMBenchError, match=r"bad options for dataset 'fake' .*unexpected keyword argument 'm'"):
        check_dataset("fake", tmp_path, {"m": 3})
