"""`mmbench report` from hand-made records: honest leaderboards, the paper's figures, bad input, the HTML page."""

import itertools
import re

import pytest
from chromium import dump_dom
from helpers import record, row, write

from mmbench.cli import main
from mmbench.report.build import build_report
from mmbench.resources import published_csv

PUBLISHED = str(published_csv())


def table(text, title):
    """The Markdown table under the heading that starts with ``title``, as a list of row dicts."""
    block = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[2:]]


def test_leaderboards_never_merge_experiments_and_mark_the_best(tmp_path):
    runs = tmp_path / "runs"
    write(
        runs,
        record("a", seed=0, metrics=[row("coherence", 1, 0.40), row("fid", 0, 60.0)]),
        record("b", seed=1, metrics=[row("coherence", 1, 0.50)]),
        record("c", seed=0, epochs=300, metrics=[row("coherence", 1, 0.80)]),
        record("d", seed=1, epochs=300, git="def", metrics=[row("coherence", 1, 0.70)]),
        record("e", model="mvtcae", metrics=[row("coherence", 1, 0.60), row("fid", 0, 50.0)]),
    )
    report = build_report(runs, tmp_path / "out", PUBLISHED, samples=[], log=lambda *_: None)
    text = report.readme.read_text()

    coherence = table(text, "Coherence (%) on polymnist (published)")
    mine = {(r["model"], r["epochs"]): r for r in coherence if r["source"] == "mmbench"}
    assert mine[("mopoe", "27")]["1 given"] == "45.0 ± 7.1" and mine[("mopoe", "27")]["seeds"] == "2"
    assert mine[("mopoe", "300")]["1 given"] == "**75.0 ± 7.1**"  # the best, in bold
    assert mine[("mopoe", "300")]["note"] == "mixed code revisions" and mine[("mopoe", "27")]["note"] == ""
    assert mine[("mvtcae", "27")]["1 given"] == "60.0"  # one seed: the mean alone
    papers = {(r["model"], r["source"]): r["1 given"] for r in coherence if r["source"] != "mmbench"}
    assert papers == {
        ("mopoe", "paper: MoPoE paper (Sutter et al. 2021) as listed by MultiVae"): "66.0",
        ("mopoe", "paper: MultiVae reproduction"): "67.0",
        ("mvtcae", "paper: MVTCAE paper Fig. 2 (read by eye)"): "59.0",
        ("mvtcae", "paper: MultiVae reproduction"): "64.0",
    }

    fid = table(text, "FID on polymnist (published)")
    cells = {r["model"]: r["unconditional"] for r in fid}  # only epochs=27 runs have FID: no epochs column
    assert cells == {"mopoe": "60.0", "mvtcae": "**50.0**"} and "epochs" not in fid[0]  # lower is better
    assert "FID on polymnist (published)" in text and "1 given: no value" not in text

    latex = (report.out / "leaderboard.tex").read_text()
    assert r"\toprule" in latex and r"\bottomrule" in latex and r"\textbf{75.0 $\pm$ 7.1}" in latex
    long = (report.out / "leaderboard.csv").read_text().splitlines()
    assert long[0].startswith("dataset,release,metric,source,model,M,epochs,seeds")
    assert "seeds,note,column,mean,std,best" in long[0]
    assert sum(",True" in ln for ln in long) == 2  # the two best cells


def test_paper_rows_only_beside_the_same_release_and_number_of_modalities(tmp_path):
    runs = tmp_path / "runs"
    write(
        runs,
        record("a", release="offline build, 4,000/1,000 tuples", metrics=[row("coherence", 1, 0.5)]),
        record("b", m=3, metrics=[row("coherence", 1, 0.5)]),
    )
    text = build_report(runs, tmp_path / "out", PUBLISHED, samples=[], log=lambda *_: None).readme.read_text()
    offline = table(text, "Coherence (%) on polymnist (offline build, 4,000/1,000 tuples)")
    published = table(text, "Coherence (%) on polymnist (published)")
    assert [r["source"] for r in offline] == ["mmbench"] and [r["M"] for r in offline] == ["5"]
    assert [r["source"] for r in published] == ["mmbench"] and [r["M"] for r in published] == ["3"]


def test_bad_records_failed_runs_and_missing_seeds_are_named_not_fatal(tmp_path, capsys):
    runs = tmp_path / "runs"
    write(
        runs,
        record("good0", seed=0, metrics=[row("coherence", 1, 0.5)]),
        record("good2", seed=2, metrics=[row("coherence", 1, 0.7)]),
        record("broken", seed=3, status="failed", failure="CUDA out of memory"),
        record("future", schema=99),
    )
    (runs / "corrupt").mkdir()
    (runs / "corrupt" / "record.json").write_text('{"run_id": "corr')
    (runs / "foreign").mkdir()
    (runs / "foreign" / "record.json").write_text('{"run_id": "x", "status": "finished", "spec": [], "metrics": {}}')
    (runs / ".sweeps" / "s").mkdir(parents=True)
    (runs / ".sweeps" / "s" / "sweep.toml").write_text(
        '[sweep]\nname = "s"\nmodels = ["mopoe"]\nseeds = [0, 1, 2, 3]\n'
    )
    assert main(["report", "--runs", str(runs), "--out", str(tmp_path / "out"), "--no-published"]) == 0
    said = capsys.readouterr().out
    for page in (said, (tmp_path / "out" / "README.md").read_text(), (tmp_path / "out" / "index.html").read_text()):
        assert "broken (mopoe): failed: CUDA out of memory" in page
        assert "has schema 99" in page and "corrupt/record.json is not valid JSON" in page
        assert "foreign/record.json: field" in page and "must be a list of rows, got dict" in page
        assert "mopoe has no record for seed(s) 1 of [0, 1, 2, 3]" in page
        assert "Figure 7a" in page  # listed as missing, with the sweep that makes it
    assert "sweeps/polymnist_scaling.toml" in said
    readme = (tmp_path / "out" / "README.md").read_text()
    # the figures other sweeps would draw are notes under one heading, after the real problems
    assert readme.index("## Runs that failed") < readme.index("## Skipped") < readme.index("## Figures that need other")
    assert sum(line.startswith("  figures that need other sweeps:") for line in said.splitlines()) == 1
    cells = table((tmp_path / "out" / "README.md").read_text(), "Coherence (%)")
    assert [(r["seeds"], r["1 given"]) for r in cells] == [("2", "**60.0 ± 14.1**")]  # seeds 0 and 2; alone: best
    assert (tmp_path / "out" / "sweeps" / "s.toml").is_file()


def test_no_records_still_renders_a_page(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    assert main(["report", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert "No finished runs" in (tmp_path / "out" / "README.md").read_text()
    assert "0 record(s)" in capsys.readouterr().out
    assert main(["report", "--runs", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs folder" in err[0] and "does not exist" in err[0]


def figure_records():
    """Two models, two seeds, M = 2..5: unconditional coherence and FID; at M = 5 per-target rows of the last
    modality; a fitted prior's FID beside N(0, I)."""
    recs = []
    for model, seed, m in itertools.product(["mopoe", "diffmvae_star"], [0, 1], [2, 3, 4, 5]):
        base = 0.3 if model == "mopoe" else 0.5
        metrics = [row("coherence", 0, base - 0.02 * m + 0.01 * seed), row("fid", 0, 100 + 10 * m + seed)]
        if m == 5:
            for n in range(1, 5):
                for given in itertools.combinations(["m0", "m1", "m2", "m3"], n):
                    metrics.append(row("coherence", n, base + 0.05 * n, target="m4", given="+".join(given)))
                metrics.append(row("fid", n, 90 - 5 * n + seed, target="m4", given="*"))
            metrics += [row("fid", 0, 140.0 + seed, prior="gaussian"), row("fid", 0, 95.0 + seed, prior="score")]
        recs.append(record(f"{model}-{seed}-{m}", model=model, seed=seed, m=m, metrics=metrics))
    return recs


def test_every_figure_is_written_when_its_data_exists(tmp_path):
    runs = tmp_path / "runs"
    write(runs, *figure_records())
    report = build_report(runs, tmp_path / "out", PUBLISHED, samples=[], log=lambda *_: None)
    assert [f.name for f in report.figures] == ["figure7a", "figure7b", "figure7c", "table4"]
    assert [m.name for m in report.missing] == ["figure-missing"]  # one missing rate only
    for f in report.figures:
        assert [p.suffix for p in f.files] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in f.files)
    text = report.readme.read_text()
    assert "![figure7b](figures/figure7b.png)" in text and "Prior ablation" in text


@pytest.mark.slow
def test_the_html_page_shows_every_image_and_table_in_chromium(tmp_path):
    runs = tmp_path / "runs"
    write(runs, *figure_records())
    report = build_report(runs, tmp_path / "out", PUBLISHED, samples=[], log=lambda *_: None)
    dom = dump_dom(report.index, tmp_path / "profile")
    check = re.search(r'id="image-check" data-broken="(\d+)">(\d+) of (\d+) images loaded', dom)
    assert check and check.groups() == ("0", "4", "4")
    assert dom.count("<table") == len(report.tables) + 1  # the leaderboards and the prior ablation
    # the check can fail: a page whose image does not load says so
    broken = tmp_path / "out" / "broken.html"
    broken.write_text(
        re.sub(r'src="data:image/png;base64,[^"]*"', 'src="missing.png"', report.index.read_text(), count=1)
    )
    assert 'data-broken="1">3 of 4 images loaded' in dump_dom(broken, tmp_path / "profile")


def test_an_option_added_later_does_not_show_as_a_difference(tmp_path):
    runs = tmp_path / "runs"
    old = record("old", metrics=[row("coherence", 1, 0.5)])
    new = record("new", model="mvtcae", metrics=[row("coherence", 1, 0.6)])
    new["spec"]["dataset_options"].update(pad_to=0, subset=None)  # written after the options existed
    new["spec"]["config"]["epochs"] = 30
    write(runs, old, new)
    text = build_report(runs, tmp_path / "out", None, samples=[], log=lambda *_: None).readme.read_text()
    head = table(text, "Coherence (%)")[0]
    assert "epochs" in head and not any(k.startswith("dataset.") for k in head)
