"""``mmbench report``: every table and figure of the paper that the records allow, in one folder.

    OUT/README.md            every table and figure, the sweeps, commits and dates they came from, what
                             failed, is missing or was skipped
    OUT/index.html           the same page, self-contained (tables inline, images embedded; no network);
                             every string from records and sweep files escaped, and a content security
                             policy that lets only the page's own script run
    OUT/leaderboard.{md,tex,csv}   all leaderboards (Markdown, LaTeX booktabs, CSV in long form);
                             OUT/leaderboards/<dataset>-<release>-<metric>.{md,tex} one per table
    OUT/figures/             Figures 7a, 7b, 7c, Table 4's chart and coherence/FID against the missing rate
                             (PNG and PDF)
    OUT/samples/             sample grids (Figures 8-11's kind) of selected runs
    OUT/sweeps/              the sweep files as they were submitted
    OUT/metrics.csv          every metric row of every record

Bad input never stops the report: unreadable or foreign records, failed runs, missing metrics and figures
without data are named on the page and on the terminal.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Callable

import pandas as pd

from mmbench.errors import MMBenchError, did_you_mean
from mmbench.report.figures import Figure, Missing, figure_7a, figure_7bc, figure_missing, table4_chart
from mmbench.report.frames import prior_ablation, read_published, records_frame, spec_setting
from mmbench.report.leaderboards import leaderboards, metric_caveats, to_frame, to_html, to_latex, to_markdown
from mmbench.storage.atomic import atomic_write_bytes
from mmbench.storage.checkpoint import checkpoint_exists
from mmbench.storage.names import check_name, name_problem
from mmbench.storage.provenance import git_revision
from mmbench.storage.records import RunRecord, collect_records

logger = logging.getLogger(__name__)

SWEEP_COPY = "sweep.toml"


@dataclass
class Report:
    out: Path
    records: int = 0
    tables: list = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    samples: list[tuple[str, Path]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # records, sample grids: what was left out and why
    failed: list[str] = field(default_factory=list)  # runs that did not finish
    absent: list[str] = field(default_factory=list)  # seeds a sweep asked for with no record
    sweeps: list[Path] = field(default_factory=list)

    @property
    def index(self) -> Path:
        return self.out / "index.html"

    @property
    def readme(self) -> Path:
        return self.out / "README.md"


def build_report(
    runs_dir: Path,
    out: Path,
    published_path: Path | None = None,
    *,
    samples: list[str] | None = None,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
) -> Report:
    """Read every record under runs_dir and write the report under out. ``samples``: run ids whose sample grid
    to draw; None picks one run per model (the best at one given modality), [] draws none."""
    log = log or logger.info
    runs_dir, out = Path(runs_dir), Path(out)
    if out.exists() and not out.is_dir():
        raise MMBenchError(f"report folder {out} is a file; give --out a folder (new or a previous report's)")
    report = Report(out)
    records, skipped = collect_records(runs_dir)
    _check_sample_ids(samples, records, runs_dir)
    report.records = len(records)
    report.skipped += [f"record {p}: {why}" for p, why in skipped]
    out.mkdir(parents=True, exist_ok=True)
    published = read_published(published_path) if published_path else None
    df = records_frame(records)
    resolved = {spec_setting(r.spec): resolved_fields(r) for r in records}
    report.tables = leaderboards(df, published, resolved, metric_caveats(records))
    ablation = prior_ablation(df, published) if not df.empty else pd.DataFrame()
    report.failed = [
        f"{r.run_id} ({r.model}): {r.status}: {r.failure or 'no reason recorded'}" for r in records if not r.finished
    ]
    report.absent = _absent_seeds(runs_dir, records)
    report.sweeps = _copy_sweeps(runs_dir, out / "sweeps")

    figures_dir = out / "figures"
    figures = [figure_7a, figure_7bc, table4_chart, figure_missing]
    for result in [r for draw in figures for r in draw(df, figures_dir)]:
        (report.figures if isinstance(result, Figure) else report.missing).append(result)
    _sample_grids(report, runs_dir, records, df, samples, device)

    _write_tables(report, df, ablation)
    atomic_write_bytes(report.readme, _readme(report, runs_dir, records, ablation).encode())
    atomic_write_bytes(report.index, _html(report, runs_dir, records, ablation).encode())
    _log_summary(report, log)
    return report


# -- parts ----------------------------------------------------------------------------------------------


def resolved_fields(record: RunRecord) -> dict:
    """A record's config as resolved, and its dataset options with the adapter's defaults (``dataset.<name>``)."""
    from mmbench.registry import DATASETS
    from mmbench.runs.spec import with_defaults

    out = dict(record.config or {})
    given = record.dataset_options
    try:
        options = with_defaults(DATASETS.get(record.dataset).load, given, skip=("split", "root"))
    except Exception:  # noqa: BLE001 - an adapter this installation lacks: its options show as written
        options = given
    out.update({f"dataset.{k}": v for k, v in options.items() if k != "root"})
    return out


def _absent_seeds(runs_dir: Path, records: list[RunRecord]) -> list[str]:
    """Per sweep and experiment, the seeds the sweep file asked for (or its other experiments have) without a
    record."""
    from mmbench.sweeps.files import tomllib

    out = []
    by_sweep: dict[str, list[RunRecord]] = {}
    for r in records:
        by_sweep.setdefault(r.sweep, []).append(r)
    for name, recs in sorted(by_sweep.items()):
        declared: set[int] = set()
        copy = None if name_problem(name) else runs_dir / ".sweeps" / name / SWEEP_COPY  # never outside RUNS
        if copy is not None and copy.is_file():
            try:
                declared = set(tomllib.loads(copy.read_text()).get("sweep", {}).get("seeds", [0]))
            except (tomllib.TOMLDecodeError, TypeError, OSError):
                declared = set()
        seen: dict[str, set[int]] = {}
        model: dict[str, str] = {}
        for r in recs:
            s = spec_setting(r.spec)
            seen.setdefault(s, set()).add(r.seed)
            model[s] = r.model
        expected = declared or set().union(*seen.values())
        for s, seeds in seen.items():
            lacking = sorted(expected - seeds)
            if lacking:
                out.append(
                    f"sweep {name or '(none)'}: {model[s]} has no record for seed(s) "
                    f"{', '.join(map(str, lacking))} of {sorted(expected)} "
                    f"(`mmbench sweep status` tells whether they are queued, running or lost)"
                )
    return out


def _copy_sweeps(runs_dir: Path, dest: Path) -> list[Path]:
    out = []
    for src in sorted((runs_dir / ".sweeps").glob(f"*/{SWEEP_COPY}")):
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / f"{src.parent.name}.toml"
        shutil.copyfile(src, target)
        out.append(target)
    return out


def _check_sample_ids(wanted: list[str] | None, records: list[RunRecord], runs_dir: Path) -> None:
    """A ``--samples`` run id that names no run under ``runs_dir`` is refused before anything is written."""
    known = {r.run_id for r in records} | {p.name for p in runs_dir.iterdir() if p.is_dir() and p.name[0] != "."}
    for run_id in wanted or []:
        check_name(run_id, "--samples")
        if run_id not in known and not (runs_dir / run_id).is_dir():
            raise MMBenchError(f"--samples {run_id}: no run of that id under {runs_dir}{did_you_mean(run_id, known)}")


def _sample_grids(
    report: Report, runs_dir: Path, records: list[RunRecord], df: pd.DataFrame, wanted: list[str] | None, device: str
) -> None:
    from mmbench.runs.execute import CHECKPOINT
    from mmbench.runs.samples import save_sample_grid

    finished = {r.run_id: r for r in records if r.finished}
    if wanted is None:
        wanted = _best_run_per_model(df, [rid for rid in finished if checkpoint_exists(runs_dir / rid / CHECKPOINT)])
    for run_id in wanted:
        run_dir = runs_dir / run_id
        if run_id not in finished:
            report.skipped.append(f"sample grid of {run_id}: no finished run of that id under {runs_dir}")
            continue
        try:
            path = save_sample_grid(run_dir, report.out / "samples" / f"{run_id}.png", device=device)
            report.samples.append((run_id, path))
        except MMBenchError as exc:
            report.skipped.append(f"sample grid of {run_id}: {exc}")


def _best_run_per_model(df: pd.DataFrame, candidates: list[str]) -> list[str]:
    """One run per model and dataset: the best conditional coherence from one modality (else the first)."""
    if not candidates:
        return []
    d = df[df.run_id.isin(candidates)]
    coh = d[(d.metric == "coherence") & (d.target == "*") & (d.n_given == 1)].set_index("run_id")["value"]
    out = []
    for _, grp in d.groupby(["model", "dataset", "release"]):
        ids = sorted(grp.run_id.unique())
        out.append(max(ids, key=lambda rid: coh.get(rid, -1.0)))
    return out


def _write_tables(report: Report, df: pd.DataFrame, ablation: pd.DataFrame) -> None:
    out = report.out
    boards = out / "leaderboards"
    for b in report.tables:
        atomic_write_bytes(boards / f"{b.slug}.md", (f"## {b.title}\n\n" + to_markdown(b) + "\n").encode())
        atomic_write_bytes(boards / f"{b.slug}.tex", to_latex(b).encode())
    md = "\n\n".join(f"## {b.title}\n\n{to_markdown(b)}" for b in report.tables) or "(no finished runs)"
    if not ablation.empty:
        md += "\n\n## Prior ablation (Diff-MVAE Table 4)\n\n" + ablation.to_markdown(index=False)
    atomic_write_bytes(out / "leaderboard.md", ("# mmbench leaderboard\n\n" + md + "\n").encode())
    atomic_write_bytes(out / "leaderboard.tex", "\n".join(to_latex(b) for b in report.tables).encode())
    atomic_write_bytes(out / "leaderboard.csv", to_frame(report.tables).to_csv(index=False).encode())
    atomic_write_bytes(out / "metrics.csv", df.to_csv(index=False).encode())
    if not ablation.empty:
        atomic_write_bytes(out / "prior_ablation.csv", ablation.to_csv(index=False).encode())


def _provenance_lines(runs_dir: Path, records: list[RunRecord]) -> list[str]:
    commits = sorted({r.git for r in records})
    dates = sorted(r.finished_at for r in records if r.finished_at)
    sweeps = sorted({r.sweep or "(none)" for r in records})
    when = f"{dates[0][:10]} to {dates[-1][:10]}" if dates else "unknown"
    return [
        f"Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by mmbench at commit {git_revision()} "
        f"from {len(records)} record(s) under `{runs_dir}`.",
        f"Runs finished {when}; sweeps: {', '.join(sweeps) or 'none'}; code revisions of the runs: "
        f"{', '.join(c[:12] for c in commits) or 'none'}.",
    ]


MISSING_FIGURES = "Figures that need other sweeps"


def _problems(report: Report) -> list[tuple[str, list[str]]]:
    """What went wrong (failed runs, missing seeds, skipped records), then, under one heading, the notes about
    figures this report's runs cannot draw: not problems, only other sweeps to run."""
    return [
        ("Runs that failed or did not finish", report.failed),
        ("Seeds with no record", report.absent),
        ("Skipped", report.skipped),
        (MISSING_FIGURES, [f"{m.title}: needs {m.needs}" for m in report.missing]),
    ]


def _readme(report: Report, runs_dir: Path, records: list[RunRecord], ablation: pd.DataFrame) -> str:
    lines = ["# mmbench report", "", *_provenance_lines(runs_dir, records), ""]
    if not report.tables:
        lines += ["No finished runs with metrics: no leaderboard.", ""]
    for b in report.tables:
        lines += (
            [
                f"## {b.title}",
                "",
                "Mean ± std over seeds (n = seeds where a cell has fewer); best mmbench "
                "value per column in bold; paper rows only for this dataset release and number of modalities.",
                "",
                to_markdown(b),
                "",
            ]
            + [f"- {n}" for n in b.notes]
            + ([""] if b.notes else [])
        )
    if not ablation.empty:
        lines += ["## Prior ablation (Diff-MVAE Table 4)", "", ablation.to_markdown(index=False), ""]
    for f in report.figures:
        lines += [
            f"## {f.title}",
            "",
            f"![{f.name}]({f.files[0].relative_to(report.out).as_posix()})",
            "",
            f.caption + f" PDF: `{f.files[1].relative_to(report.out).as_posix()}`.",
            "",
        ]
    if report.samples:
        lines += ["## Sample grids", ""]
        for run_id, path in report.samples:
            lines += [f"### {run_id}", "", f"![samples of {run_id}]({path.relative_to(report.out).as_posix()})", ""]
    for title, items in _problems(report):
        if items:
            lines += [f"## {title}", ""] + [f"- {i}" for i in items] + [""]
    if report.sweeps:
        lines += (
            ["## Sweep files", ""]
            + [f"- [{p.name}]({p.relative_to(report.out).as_posix()})" for p in report.sweeps]
            + [""]
        )
    return "\n".join(lines)


_STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #ddd}
th{border-bottom:2px solid #444;text-align:left}td.num{text-align:right}tr.paper{color:#666;font-style:italic}
img{max-width:100%;border:1px solid #eee}img.samples{max-width:640px}.problem{color:#a00}#image-check{color:#666;font-size:12px}"""

# Tells, on the page, whether every image loaded (the headless-browser test reads it, so can a reader).
_IMAGE_CHECK_JS = """window.addEventListener('load',function(){var i=document.images,b=0;
for(var k=0;k<i.length;k++){if(!(i[k].complete&&i[k].naturalWidth>0))b++;}
var e=document.getElementById('image-check');e.textContent=(i.length-b)+' of '+i.length+' images loaded';
e.setAttribute('data-broken',b);});"""

# Every string from records, specs and sweep files is escaped where it is written into the page; the policy is the
# second fence: the one script above runs (by its hash), no other script, no inline handler, nothing fetched.
_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{base64.b64encode(hashlib.sha256(_IMAGE_CHECK_JS.encode()).digest()).decode()}'"
)


def _img(path: Path, alt: str, css: str = "") -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img class="{css}" alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _html(report: Report, runs_dir: Path, records: list[RunRecord], ablation: pd.DataFrame) -> str:
    body = ["<h1>mmbench report</h1>"] + [
        f"<p>{escape(line).replace('`', '')}</p>" for line in _provenance_lines(runs_dir, records)
    ]
    body.append('<p id="image-check" data-broken="unknown">images not checked yet</p>')
    if not report.tables:
        body.append("<p>No finished runs with metrics: no leaderboard.</p>")
    for b in report.tables:
        body += [f"<h2>{escape(b.title)}</h2>", to_html(b)] + [f"<p class='problem'>{escape(n)}</p>" for n in b.notes]
    if not ablation.empty:
        body += ["<h2>Prior ablation (Diff-MVAE Table 4)</h2>", ablation.to_html(index=False, border=0)]
    for f in report.figures:
        body += [f"<h2>{escape(f.title)}</h2>", _img(f.files[0], f.name), f"<p>{escape(f.caption)}</p>"]
    if report.samples:
        body.append("<h2>Sample grids</h2>")
        for run_id, path in report.samples:
            body += [f"<h3>{escape(run_id)}</h3>", _img(path, f"samples of {run_id}", "samples")]
    for title, items in _problems(report):
        if items:
            css = "note" if title == MISSING_FIGURES else "problem"
            body += (
                [f"<h2>{escape(title)}</h2>", "<ul>"]
                + [f"<li class='{css}'>{escape(i)}</li>" for i in items]
                + ["</ul>"]
            )
    if report.sweeps:
        body += ["<h2>Sweep files</h2>"] + [
            f"<h3>{escape(p.name)}</h3><pre>{escape(p.read_text())}</pre>" for p in report.sweeps
        ]
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}"><title>mmbench report</title>'
        f"<style>{_STYLE}</style><script>{_IMAGE_CHECK_JS}</script></head><body>{''.join(body)}</body></html>\n"
    )


def _log_summary(report: Report, log) -> None:
    log(
        f"report: {report.records} record(s), {len(report.tables)} table(s), {len(report.figures)} figure(s), "
        f"{len(report.samples)} sample grid(s) -> {report.index}"
    )
    for title, items in _problems(report):
        if title == MISSING_FIGURES and items:
            log(f"  {title.lower()}: " + "; ".join(items))
            continue
        for item in items:
            log(f"  {title.lower()}: {item}")
