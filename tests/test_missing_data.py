"""Training on incomplete data: masks in the dataset contract, drawn from a missing rate or read from a file, in a
run (refusals, the record's ``observed``, the saved masks), in sweeps, ``data check`` and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ddp_helpers import DeterministicAE
from helpers import record, row, tiny_dataset, write

from mmbench import register_model
from mmbench.cli import main
from mmbench.data.base import MultimodalDataset
from mmbench.data.check import check_dataset
from mmbench.data.missing import (
    MASK_FILE,
    MissingOptions,
    apply_missing,
    load_masks,
    parse_options,
    read_mask_file,
    save_or_check_masks,
)
from mmbench.errors import MMBenchError
from mmbench.missing import batch_masks
from mmbench.modality import Modality
from mmbench.report.build import build_report
from mmbench.runs.execute import execute, load_split
from mmbench.runs.spec import RunSpec
from mmbench.storage.records import load_record
from mmbench.sweeps.files import load_sweep
from mmbench.training.options import RunOptions

SYNTH = {"views": ["image", "attributes"], "n": 48, "size": 8}


@register_model("test_masked_ae")
class MaskedAE(DeterministicAE):
    """The deterministic test model declaring that it takes masks."""

    supports_missing = True


@register_model("test_complete_ae")
class CompleteAE(DeterministicAE):
    """The same model without the declaration: refused on incomplete data."""


# -- the dataset contract ------------------------------------------------------------------------------------


def test_a_mask_is_validated_carried_by_batches_and_fills_missing_rows():
    data = tiny_dataset(8, shapes=((2,), (3,)))
    observed = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1], dtype=torch.bool)
    masked = data.with_mask({"m0": observed})
    assert masked.incomplete and masked.observed_fraction() == {"m0": 0.75, "m1": 1.0}
    batch = masked.batch(torch.tensor([0, 1, 4]))
    assert batch["mask"]["m0"].tolist() == [True, False, False] and "m1" not in batch["mask"]
    assert torch.isnan(batch["x"]["m0"][1:]).all() and torch.isfinite(batch["x"]["m0"][0]).all()
    assert torch.isfinite(batch["x"]["m1"]).all()
    assert torch.equal(masked.x["m0"], data.x["m0"])  # the dataset's tensors keep what was read
    assert masked.head(2).mask["m0"].tolist() == [True, False] and masked.select(["m1"]).mask is None
    assert len(masked.complete()) == 6 and masked.complete().mask is None
    assert masked.to("cpu").mask["m0"].tolist() == observed.tolist()
    with pytest.raises(MMBenchError, match="with only modalities \\['m0'\\], 2 rows observe none"):
        masked.select(["m0"])
    tokens = MultimodalDataset(
        [Modality("t", (4,), "text", "categorical", classes=9)],
        {"t": torch.ones(3, 4, dtype=torch.long)},
        torch.zeros(3, dtype=torch.long),
        mask={"t": torch.tensor([True, True, True])},
    )
    assert not tokens.incomplete
    t2 = MultimodalDataset(
        [Modality("t", (4,), "text", "categorical", classes=9), Modality("a", (2,))],
        {"t": torch.ones(3, 4, dtype=torch.long), "a": torch.zeros(3, 2)},
        torch.zeros(3, dtype=torch.long),
        mask={"t": torch.tensor([True, False, True])},
    )
    assert t2.batch(torch.arange(3))["x"]["t"][1].tolist() == [-1] * 4  # token ids: -1, which no embedding takes


def test_the_training_path_passes_the_mask_through_unchanged():
    from mmbench.device import to_device
    from mmbench.training.memory_format import to_memory_format

    data = tiny_dataset(6, shapes=((3, 4, 4), (2,))).with_mask({"m0": torch.tensor([1, 0, 1, 1, 0, 1]).bool()})
    batch = to_memory_format(to_device(data.batch(torch.arange(6)), torch.device("cpu")), torch.channels_last)
    assert batch["mask"]["m0"].dtype == torch.bool and batch["mask"]["m0"].tolist() == [1, 0, 1, 1, 0, 1]
    assert batch["x"]["m0"].is_contiguous(memory_format=torch.channels_last)
    assert batch_masks(batch, ["m0", "m1"])["m1"].all()


@pytest.mark.parametrize(
    "mask, says",
    [
        ({"m0": torch.ones(8)}, "must be a bool tensor of shape \\(8,\\), got torch.float32"),
        ({"m0": torch.ones(7, dtype=torch.bool)}, "shape \\(8,\\), got torch.bool \\(7,\\)"),
        ({"zz": torch.ones(8, dtype=torch.bool)}, "names modality 'zz'"),
        (
            {"m0": torch.tensor([0, 1] * 4, dtype=torch.bool), "m1": torch.tensor([0, 1] * 4, dtype=torch.bool)},
            "4 of 8 rows observe no modality \\(first: row 0\\)",
        ),
    ],
)
def test_a_bad_mask_is_one_line(mask, says):
    data = tiny_dataset(8, shapes=((2,), (3,)))
    with pytest.raises(MMBenchError, match=says):
        MultimodalDataset(data.modalities, data.x, data.y, "tiny", mask=mask)


# -- masks from a rate ---------------------------------------------------------------------------------------


def _drawn(rate, seed=0, n=4000, m=4, split="train", evaluate=False):
    data = tiny_dataset(n, shapes=((1,),) * m)
    return apply_missing(
        data, split, parse_options({"missing_rate": rate, "missing_seed": seed, "missing_eval": evaluate}), "t"
    )


def test_masks_from_a_rate_are_reproducible_realise_the_rate_and_keep_one_modality_per_row():
    a, b, c = _drawn(0.5), _drawn(0.5), _drawn(0.5, seed=1)
    assert all(torch.equal(a.mask[k], b.mask[k]) for k in a.mask)
    assert any(not torch.equal(a.mask[k], c.mask[k]) for k in a.mask)
    stacked = torch.stack(list(a.mask.values()))
    assert stacked.any(0).all()  # every row keeps one
    # P(missing) = r - r^M / M (a row that would drop all keeps one, uniformly): 0.5 - 0.0625 / 4
    expected, n = 0.5 - 0.5**4 / 4, 4000
    for frac in a.observed_fraction().values():
        assert abs((1 - frac) - expected) < 4 * (expected * (1 - expected) / n) ** 0.5
    assert _drawn(0.0).mask is None and not _drawn(0.0).incomplete  # rate 0: complete
    assert _drawn(0.5, split="test").mask is None  # eval splits stay complete by default
    test = _drawn(0.5, split="test", evaluate=True)
    assert test.incomplete and any(not torch.equal(test.mask[k], a.mask[k]) for k in a.mask)  # a draw of its own
    table = _drawn({"m1": 0.5})
    assert table.observed_fraction()["m0"] == 1.0 and 0.45 < table.observed_fraction()["m1"] < 0.55


def test_the_missing_options_are_part_of_the_run_identity_and_rate_0_is_the_complete_run():
    base = RunSpec("test_masked_ae", "synthetic", dict(SYNTH))
    same = [RunSpec("test_masked_ae", "synthetic", {**SYNTH, "missing_rate": 0, "missing_seed": 3})]
    assert {s.run_id for s in same} == {base.run_id}
    ids = {RunSpec("test_masked_ae", "synthetic", {**SYNTH, "missing_rate": r}).run_id for r in (0.25, 0.5)}
    seeded = RunSpec("test_masked_ae", "synthetic", {**SYNTH, "missing_rate": 0.25, "missing_seed": 1}).run_id
    assert len(ids | {seeded, base.run_id}) == 4
    for options in ({"missing_rate": 0.25, "missing_seed": 1, "missing_eval": True}, {"missing": "masks.csv"}):
        spec = RunSpec("test_masked_ae", "synthetic", {**SYNTH, **options})
        again = RunSpec.from_dict(json.loads(json.dumps(spec.to_dict())))  # as spec.json reads back
        assert again.run_id == spec.run_id and again.to_dict() == spec.to_dict()
    assert (
        base.normalized()["dataset_options"]
        == RunSpec("test_masked_ae", "synthetic", SYNTH).normalized()["dataset_options"]
    )


@pytest.mark.parametrize(
    "options, says",
    [
        ({"missing_rate": 1.0}, "missing_rate must be a number in \\[0, 1\\)"),
        ({"missing_rate": -0.1}, "missing_rate must be a number in \\[0, 1\\)"),
        ({"missing_rate": "half"}, "missing_rate must be a number in \\[0, 1\\)"),
        ({"missing_rate": {"m0": 2}}, "missing_rate.m0 must be a number in \\[0, 1\\)"),
        ({"missing_seed": 0.5}, "missing_seed must be an integer"),
        ({"missing_eval": "yes"}, "missing_eval must be true or false"),
        ({"missing": 3}, "missing must be a mask file"),
        ({"missing": "m.csv", "missing_rate": 0.2}, "give missing_rate or a mask file \\(missing\\), not both"),
    ],
)
def test_bad_missing_options_are_one_line(options, says):
    with pytest.raises(MMBenchError, match=says):
        parse_options(options)


# -- masks from a file ---------------------------------------------------------------------------------------


def test_mask_files_in_csv_and_json_give_the_same_masks(tmp_path):
    (tmp_path / "m.csv").write_text("m0,m1\n1,1\n0,1\ntrue,false\n")
    (tmp_path / "m.json").write_text(json.dumps({"m0": [1, 0, True], "m1": [1, 1, 0]}))
    (tmp_path / "rows.json").write_text(json.dumps([{"m0": 1, "m1": 1}, {"m0": 0, "m1": 1}, {"m0": 1, "m1": 0}]))
    (tmp_path / "one.csv").write_text("m1\n1\n0\n1\n")
    want = {"m0": [True, False, True], "m1": [True, True, False]}
    for name in ("m.csv", "m.json", "rows.json"):
        assert {k: v.tolist() for k, v in read_mask_file(tmp_path / name, ["m0", "m1"], 3).items()} == want
    assert {k: v.tolist() for k, v in read_mask_file(tmp_path / "one.csv", ["m0", "m1"], 3).items()} == {
        "m1": [True, False, True]
    }
    data = apply_missing(
        tiny_dataset(3, shapes=((1,), (1,))), "train", parse_options({"missing": str(tmp_path / "m.csv")}), "t"
    )
    assert data.observed_fraction() == pytest.approx({"m0": 2 / 3, "m1": 2 / 3})


@pytest.mark.parametrize(
    "name, text, says",
    [
        ("rows.csv", "m0,m1\n1,1\n0,1\n", "has 2 rows for modality 'm0', but the split has 3 tuples"),
        ("unknown.csv", "m0,zz\n1,1\n0,1\n1,1\n", "names modality 'zz', which the dataset does not hold"),
        ("none.csv", "m0,m1\n1,1\n0,0\n1,1\n", "row 2 \\(and 0 more\\) has every modality missing"),
        ("value.csv", "m0,m1\n1,1\n2,1\n1,1\n", "row 2, column 'm0' is '2'; a mask value is 1/0 or true/false"),
        ("ragged.csv", "m0,m1\n1,1\n1\n1,1\n", "row 2 has 1 values for the 2 columns"),
        ("bad.json", "{", "is not valid JSON"),
        ("shape.json", "[1, 0]", "must hold \\{modality: \\[1/0, ...\\]\\}"),
        ("m.txt", "m0\n1\n", "must be .csv or .json"),
    ],
)
def test_a_bad_mask_file_is_one_line_naming_it(tmp_path, name, text, says):
    (tmp_path / name).write_text(text)
    with pytest.raises(MMBenchError) as caught:
        read_mask_file(tmp_path / name, ["m0", "m1"], 3)
    assert str(caught.value).startswith(f"mask file {tmp_path / name}") and "\n" not in str(caught.value)
    assert caught.match(says)


def test_saved_masks_round_trip_and_a_resumed_run_refuses_other_masks(tmp_path):
    a = _drawn(0.5, n=50)
    save_or_check_masks(tmp_path, {"train": a.mask, "test": None})
    assert {k: v.tolist() for k, v in load_masks(tmp_path)["train"].items()} == {
        k: v.tolist() for k, v in a.mask.items()
    }
    save_or_check_masks(tmp_path, {"train": a.mask, "test": None})  # the same draw: accepted
    with pytest.raises(MMBenchError, match=f"{MASK_FILE} holds other masks than the run's options"):
        save_or_check_masks(tmp_path, {"train": _drawn(0.5, seed=1, n=50).mask, "test": None})
    save_or_check_masks(tmp_path / "complete", {"train": None})
    assert not (tmp_path / "complete" / MASK_FILE).exists()


# -- runs ----------------------------------------------------------------------------------------------------

OPTIONS = RunOptions(device="cpu")
CONFIG = {"epochs": 1, "batch_size": 16, "latent_dim": 4}


def test_a_run_with_a_missing_rate_trains_records_observed_and_saves_its_masks(tmp_path):
    spec = RunSpec("test_masked_ae", "synthetic", {**SYNTH, "missing_rate": 0.5, "missing_seed": 2}, CONFIG, 0, ())
    rec = execute(spec, tmp_path, options=OPTIONS, progress=False, log=lambda *_: None)
    assert rec.status == "finished" and rec.missing_rate == 0.5
    assert set(rec.observed) == {"image0", "attributes0"} and all(0.2 < v < 0.9 for v in rec.observed.values())
    assert load_record(tmp_path / spec.run_id / "record.json").observed == rec.observed
    masks = load_masks(tmp_path / spec.run_id)
    assert list(masks) == ["train"] and np.mean(masks["train"]["image0"]) == pytest.approx(rec.observed["image0"])
    complete = RunSpec("test_masked_ae", "synthetic", dict(SYNTH), CONFIG, 0, ())
    rec0 = execute(complete, tmp_path, options=OPTIONS, progress=False, log=lambda *_: None)
    assert (
        rec0.observed == {"image0": 1.0, "attributes0": 1.0} and not (tmp_path / complete.run_id / MASK_FILE).exists()
    )


def test_a_model_without_mask_support_is_refused_before_anything_is_written(tmp_path):
    spec = RunSpec("test_complete_ae", "synthetic", {**SYNTH, "missing_rate": 0.25}, CONFIG, 0, ())
    with pytest.raises(MMBenchError, match="model 'test_complete_ae' does not declare support for missing"):
        execute(spec, tmp_path, options=OPTIONS, progress=False, log=lambda *_: None)
    assert not (tmp_path / spec.run_id).exists()


def test_the_refusals_are_cli_one_liners_with_exit_2(tmp_path, capsys):
    (tmp_path / "short.csv").write_text("image0\n1\n0\n")
    base = ["train", "--dataset", "synthetic", "--runs", str(tmp_path / "runs"), "--metrics", "--device", "cpu"]
    sets = [f"dataset.{k}={json.dumps(v)}" for k, v in SYNTH.items()] + ["config.epochs=1", "config.batch_size=16"]
    cases = [
        ("test_masked_ae", ["dataset.missing_rate=1.0"], "missing_rate must be a number in [0, 1)"),
        ("test_masked_ae", [f"dataset.missing={json.dumps(str(tmp_path / 'short.csv'))}"], "has 2 rows for modality"),
        ("test_masked_ae", ["dataset.missing_rate={zz = 0.5}"], "missing_rate names modality 'zz'"),
        ("test_complete_ae", ["dataset.missing_rate=0.25"], "does not declare support for missing modalities"),
    ]
    for model, extra, says in cases:
        argv = [*base, "--model", model]
        for s in sets + extra:
            argv += ["--set", s]
        assert main(argv) == 2, says
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
    # nothing trained: options and model are refused before any file; the data-dependent refusals (the file's
    # rows, the table's names) after loading the data, recorded as failed runs without a checkpoint
    records = [load_record(p) for p in (tmp_path / "runs").glob("*/record.json")]
    assert len(records) == 2 and all(r.status == "failed" and not r.train for r in records)
    assert not list((tmp_path / "runs").glob("*/checkpoint.pt"))


def test_masked_test_data_refuses_metrics_that_need_complete_data(tmp_path):
    options = {**SYNTH, "missing_rate": 0.25, "missing_eval": True}
    spec = RunSpec("test_masked_ae", "synthetic", options, CONFIG, 0, ("coherence",))
    with pytest.raises(MMBenchError, match="give the test split missing modalities .* metrics \\['coherence'\\] need"):
        execute(spec, tmp_path, options=OPTIONS, progress=False, log=lambda *_: None)
    assert not (tmp_path / spec.run_id).exists()
    rec = execute(
        RunSpec("test_masked_ae", "synthetic", options, CONFIG, 0, ()),
        tmp_path,
        options=OPTIONS,
        progress=False,
        log=lambda *_: None,
    )
    assert sorted(load_masks(tmp_path / rec.run_id)) == ["test", "train"]


# -- sweeps and data check -----------------------------------------------------------------------------------


def test_missing_rate_is_a_grid_axis_and_a_set_override(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text(
        '[sweep]\nname = "miss"\nmodels = ["test_masked_ae"]\nseeds = [0]\n'
        '[dataset]\nname = "synthetic"\nn = 48\nsize = 8\nviews = ["image", "attributes"]\n'
        '[grid]\n"dataset.missing_rate" = [0, 0.25, 0.5]\n'
    )
    s = load_sweep(sweep)
    assert [spec.dataset_options.get("missing_rate") for spec in s.specs] == [0, 0.25, 0.5]
    assert len({spec.run_id for spec in s.specs}) == 3
    over = load_sweep(sweep, overrides=["grid.dataset.missing_rate=[0.1]", "dataset.missing_seed=4"])
    assert [(x.dataset_options["missing_rate"], x.dataset_options["missing_seed"]) for x in over.specs] == [(0.1, 4)]


def test_data_check_prints_the_observed_fraction_per_modality(capsys):
    s = check_dataset("synthetic", options={**SYNTH, "n": 400, "missing_rate": 0.5})
    train, test = s.splits
    assert all(0.4 < v.observed < 0.7 for v in train.views) and all(v.observed == 1.0 for v in test.views)
    argv = ["data", "check", "synthetic", "--set", "dataset.n=40", "--set", "dataset.size=8"]
    assert main([*argv, "--set", 'dataset.views=["image", "attributes"]', "--set", "dataset.missing_rate=0.5"]) == 0
    out = capsys.readouterr().out
    assert "observed 100.0%" in out and out.count("observed") == 4


# -- the report ----------------------------------------------------------------------------------------------


def _missing_records():
    recs = []
    for model, base in (("mopoe", 0.6), ("mvae", 0.5)):
        for rate in (None, 0.25, 0.5):
            for seed in (0, 1):
                r = rate or 0.0
                metrics = [row("coherence", n, base - 0.2 * r * n + 0.01 * seed) for n in (1, 2, 3, 4)]
                metrics.append(row("fid", 1, 80 + 40 * r + seed, given="*"))
                observed = {f"m{i}": 1 - r for i in range(5)} if rate else None
                name = f"{model}-{r}-{seed}"
                recs.append(record(name, model=model, seed=seed, missing_rate=rate, observed=observed, metrics=metrics))
    return recs


def test_the_report_shows_the_missing_rate_as_a_column_and_draws_the_missing_rate_figure(tmp_path):
    runs = tmp_path / "runs"
    write(runs, *_missing_records())
    report = build_report(runs, tmp_path / "out", None, samples=[], log=lambda *_: None)
    names = [f.name for f in report.figures]
    assert "figure-missing" in names and "figure-missing" not in [m.name for m in report.missing]
    fig = next(f for f in report.figures if f.name == "figure-missing")
    assert [p.suffix for p in fig.files] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in fig.files)
    assert "coherence given 1 modality" in fig.caption and "FID" in fig.caption
    text = report.readme.read_text()
    assert "dataset.missing_rate" in text
    board = [line for line in text.splitlines() if line.startswith("| mopoe")]
    assert {line.split("|")[4].strip() for line in board} == {"0", "0.25", "0.5"}


def test_without_two_missing_rates_the_figure_is_listed_as_not_drawn(tmp_path):
    runs = tmp_path / "runs"
    write(runs, *[r for r in _missing_records() if r["spec"]["dataset_options"].get("missing_rate") == 0.25])
    report = build_report(runs, tmp_path / "out", None, samples=[], log=lambda *_: None)
    assert "figure-missing" in [m.name for m in report.missing]
    text = report.readme.read_text()
    assert "dataset.missing_rate" in text  # one rate, still a column: the runs saw incomplete data


def test_a_records_missing_rate_option_is_not_in_the_adapters_options():
    opts = MissingOptions(0.25)
    assert opts.active and opts.normalized() == {"missing_rate": 0.25}
    assert not MissingOptions({"m0": 0.0}).active and MissingOptions().normalized() == {}


# -- adapters whose files lack a modality: allow_missing -----------------------------------------------------


def test_cub_images_without_captions_are_refused_or_masked_with_allow_missing(tmp_path):
    from test_cub import make_cub

    from mmbench.data.cub import CUB

    root = make_cub(tmp_path / "cub")
    path = root / "text_testclasses.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([""] * 10 + lines[10:]) + "\n")  # the first test image: 10 blank caption lines
    with pytest.raises(
        MMBenchError, match="has no caption \\(lines 1-10 are blank; 1 image\\(s\\) in all\\); .*allow_missing = true"
    ):
        CUB.load(root, split="test")
    with pytest.raises(MMBenchError, match="has no caption"):
        CUB.check_options(root)
    CUB.check_options(root, allow_missing=True)
    data = CUB.load(root, split="test", allow_missing=True)
    assert data.mask["caption"].tolist() == [False, True] and data.observed_fraction() == {"image": 1.0, "caption": 0.5}
    assert data.batch(torch.arange(2))["x"]["caption"][0].tolist() == [-1] * data.x["caption"].shape[1]
    assert CUB.load(root, split="train", allow_missing=True).mask is None  # complete: no mask
    spec = RunSpec("test_masked_ae", "cub", {"root": str(root), "allow_missing": True})
    assert len(load_split(spec, "test")) == 1 and load_split(spec, "test").mask is None  # evaluation: complete tuples
    with pytest.raises(MMBenchError, match="allow_missing must be true or false"):
        CUB.load(root, split="test", allow_missing="yes")


def test_celebamaskhq_images_without_a_mask_file_are_refused_or_masked_with_allow_missing(tmp_path):
    import shutil

    from test_celebamaskhq import make_release

    from mmbench.data.celebamaskhq import CelebAMaskHQ
    from mmbench.data.celebamaskhq_prepare import prepare_celebamaskhq

    src = make_release(tmp_path / "src")
    shutil.rmtree(src / "CelebAMask-HQ-mask-anno" / "2")  # image 4001 (test split) has no mask file
    with pytest.raises(MMBenchError, match="mask folder .*/2 does not exist.*pass --allow-missing"):
        prepare_celebamaskhq(src, tmp_path / "refused", 64, progress=False)
    out = prepare_celebamaskhq(src, tmp_path / "prepared", 64, progress=False, allow_missing=True)
    assert json.loads((out / "manifest.json").read_text())["without_mask"] == {"train": 0, "val": 0, "test": 1}
    with pytest.raises(MMBenchError, match="holds images without a mask file \\(1 in test; .*allow_missing = true"):
        CelebAMaskHQ.load(out, split="train")
    with pytest.raises(MMBenchError, match="holds images without a mask file"):
        CelebAMaskHQ.check_options(out)
    test = CelebAMaskHQ.load(out, split="test", allow_missing=True)
    assert test.mask["mask"].tolist() == [True, False] and test.x["mask"][1].sum() == 0
    assert CelebAMaskHQ.load(out, split="train", allow_missing=True).mask is None
    s = check_dataset("celebamaskhq", out, {"allow_missing": True})
    assert [v.observed for v in s.splits[2].views] == [1.0, 0.5, 1.0]
    assert (
        main(
            [
                "data",
                "prepare",
                "celebamaskhq",
                str(src),
                "--out",
                str(tmp_path / "cli"),
                "--allow-missing",
                "--no-progress",
            ]
        )
        == 0
    )
