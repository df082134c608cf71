"""The HTML report shows every string from records, specs and sweep files as text: hostile run ids, model names,
config fields and values, sweep names, failure reasons and sweep files run no script in headless Chromium and
read as written (a run id holding "/" is no run id: its record is refused, and the refusal reads as written);
and the page's content security policy stops a script that escaping had missed."""

from __future__ import annotations

import html
import json
import re

from chromium import dump_dom
from helpers import record, row

from mmbench.report.build import build_report

PLACES = ("run", "badrun", "model", "key", "config", "sweepname", "failure", "sweep", "folder")


def hostile(where: str) -> list[str]:
    """Markup that, were it not escaped, would run and leave a trace on the page: a changed title, an attribute on
    <body> or a new element."""
    return [
        f"<script>document.title='pwned {where}'</script>",
        f"<img src=x onerror=\"document.body.setAttribute('data-pwned','{where}')\">",
        f"<svg onload=\"document.body.appendChild(document.createElement('mark')).id='pwned-{where}'\">",
    ]


def said(where: str) -> str:
    return " ".join(shown(where))


def shown(where: str) -> list[str]:
    """The payloads placed ``where``: a run id or a folder name holds no "/", so not the <script> one; a run id
    with it ("badrun") is only the <script> one."""
    return (
        hostile(where)[1:]
        if where in ("run", "folder")
        else hostile(where)[:1]
        if where == "badrun"
        else hostile(where)
    )


def hostile_runs(runs):
    """Records whose every free-text field is hostile, a sweep file with hostile content in a folder whose name is
    hostile, written in folders with plain names (a run id holding "/" could not name one)."""
    good = record("good", metrics=[row("coherence", 1, 0.5), row("fid", 0, 120.0)])
    good["spec"]["config"] = {"epochs": 27, "note": said("config"), said("key"): 1}
    other = record("other", seed=1, sweep=said("sweepname"), metrics=[row("coherence", 1, 0.6)])
    foreign = record(
        "foreign-model",
        model=said("model"),
        metrics=[row("coherence", 1, 0.4), row("fid", 0, 140.0, prior="gaussian"), row("fid", 0, 95.0, prior="score")],
    )
    failed = record(said("run"), seed=4, status="failed", failure=said("failure"))
    refused = record(said("badrun"), seed=5, metrics=[row("coherence", 1, 0.3)])
    for i, rec in enumerate([good, other, foreign, failed, refused]):
        (runs / f"r{i}").mkdir(parents=True)
        (runs / f"r{i}" / "record.json").write_text(json.dumps(rec))
    sweep = runs / ".sweeps" / said("folder") / "sweep.toml"
    sweep.parent.mkdir(parents=True)
    sweep.write_text(f'[sweep]\nname = "s"\nmodels = ["mopoe"]\n# {said("sweep")}\n')


def no_script_ran(dom: str) -> None:
    assert "<title>mmbench report</title>" in dom and "pwned" not in dom.split("<body", 1)[0]
    assert "data-pwned" not in re.search(r"<body[^>]*>", dom).group(0)
    assert not re.search(r"<mark|id=\"pwned", dom)


def test_hostile_strings_in_records_and_sweep_files_render_as_text_in_chromium(tmp_path):
    runs = tmp_path / "runs"
    hostile_runs(runs)
    report = build_report(runs, tmp_path / "out", None, samples=[], log=lambda *_: None)
    dom = dump_dom(report.index, tmp_path / "profile")
    assert re.search(r'id="image-check" data-broken="0">', dom)  # the page's own script ran
    no_script_ran(dom)
    assert "<script>document.title" not in dom.split("</head>", 1)[1] and '<img src="x"' not in dom
    text = html.unescape(re.sub(r"<[^>]+>", "", dom.split("</head>", 1)[1]))  # the page as a reader sees it
    for where in PLACES:
        for payload in shown(where):
            assert payload in text, (where, payload)


def test_the_pages_policy_stops_a_script_that_escaping_missed(tmp_path):
    runs = tmp_path / "runs"
    hostile_runs(runs)
    report = build_report(runs, tmp_path / "out", None, samples=[], log=lambda *_: None)
    page = report.index.read_text()
    injected = tmp_path / "out" / "injected.html"
    injected.write_text(page.replace("<h1>", "".join(hostile("injected")) + "<h1>", 1))  # as if one went unescaped
    dom = dump_dom(injected, tmp_path / "profile")
    assert re.search(r'id="image-check" data-broken="\d+">', dom)  # the page's own script still runs
    no_script_ran(dom)
