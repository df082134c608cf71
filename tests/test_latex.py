"""The report's LaTeX is paste-ready: complete booktabs tables with caption and label, display names, no internal
columns, and it compiles with pdflatex (Debian's texlive, installed by .ci/run); the CSV carries the table's
rounding; a one-row table marks its values as best."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from helpers import record, row, write

from mmbench.report.build import build_report
from mmbench.resources import published_csv

PUBLISHED = str(published_csv())


def report_of(tmp_path, *records):
    runs = tmp_path / "runs"
    write(runs, *records)
    return build_report(runs, tmp_path / "out", PUBLISHED, samples=[], log=lambda *_: None)


def test_latex_is_a_complete_table_with_display_names(tmp_path):
    report = report_of(
        tmp_path,
        record("a", metrics=[row("coherence", 1, 0.6481)]),
        record("b", model="mmvaeplus", metrics=[row("coherence", 1, 0.50)]),
    )
    latex = (report.out / "leaderboard.tex").read_text()
    assert latex.startswith(r"\begin{table}[t]") and latex.rstrip().endswith(r"\end{table}")
    assert r"\caption{Coherence (\%) on polymnist (published); higher is better." in latex
    assert r"\label{tab:polymnist-published-coherence}" in latex
    assert "MoPoE & 5" in latex and "MMVAE+ & 5" in latex and "MoPoE (paper)" in latex
    assert "mmbench" not in latex and "source" not in latex.lower().split(r"\caption")[0]
    assert r"Rows marked (paper): MoPoE from MoPoE paper" in latex


def test_csv_numbers_are_rounded_as_the_table_shows_them(tmp_path):
    report = report_of(
        tmp_path,
        record("a", metrics=[row("coherence", 1, 0.6481)]),
        record("b", seed=1, metrics=[row("coherence", 1, 0.6482)]),
    )
    csv = (report.out / "leaderboard.csv").read_text()
    assert "64.81000000000002" not in csv and ",64.8,0.0," in csv


def test_a_one_row_table_marks_its_values_best(tmp_path):
    report = report_of(tmp_path, record("a", release="offline", metrics=[row("coherence", 1, 0.5)]))
    (board,) = [b for b in report.tables if b.release == "offline"]
    assert all(cell.best for r in board.rows for cell in r.cells.values())


def test_the_latex_compiles(tmp_path):
    if shutil.which("pdflatex") is None:
        if os.environ.get("CI"):
            pytest.fail("pdflatex is missing in CI: .ci/run installs texlive-latex-base texlive-latex-recommended")
        pytest.skip("pdflatex is not installed (Debian: texlive-latex-base texlive-latex-recommended)")
    report = report_of(
        tmp_path,
        record("a", metrics=[row("coherence", 1, 0.6481), row("coherence", 0, 0.3)]),
        record("b", model="diffmvae_star", epochs=3, metrics=[row("coherence", 1, 0.5)]),
        record("c", model="mvtcae", metrics=[row("fid", 0, 80.25)]),
    )
    doc = tmp_path / "paper.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        f"\\input{{{report.out / 'leaderboard.tex'}}}\n\\end{{document}}\n"
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "paper.pdf").stat().st_size > 1000
