"""Leaderboards from run records: one table per dataset release and metric family, rows per model and
experiment, columns per number of observed modalities, mean ± std over seeds, the best value per column marked.

Runs are averaged only within one experiment (the whole spec but the seed, ``results.spec_setting``); the
fields in which a table's experiments differ become columns, a cell that mixes code revisions says so, and
seeds count distinct seed values. Paper rows (``results/published.csv``) appear only in a table of the same
dataset release and number of modalities, each under its source as written there. The offline PolyMNIST
build and the published release are different datasets, in different tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmbench.report.frames import flat_setting
from mmbench.storage.records import RunRecord


@dataclass(frozen=True)
class Family:
    """A metric as a leaderboard shows it: values times ``scale``, ``digits`` decimals."""

    metric: str
    title: str
    scale: float
    higher_is_better: bool
    digits: int = 1


FAMILIES = (
    Family("coherence", "Coherence (%)", 100, True),
    Family("fid", "FID", 1, False),
    Family("clip_score", "CLIP score", 1, True, 2),
    Family("f1", "F1 (%)", 100, True),
    Family("probe", "Linear probe accuracy (%)", 100, True),
)


@dataclass
class Cell:
    mean: float
    std: float
    seeds: int
    text: str
    best: bool = False


@dataclass
class Row:
    source: str  # "mmbench" or "paper: <source as written>"
    labels: dict[str, str]  # model, M, the differing fields, seeds, note
    cells: dict[str, Cell]


@dataclass
class Leaderboard:
    dataset: str
    release: str
    family: Family
    label_columns: list[str]
    metric_columns: list[str]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        better = "higher" if self.family.higher_is_better else "lower"
        return f"{self.family.title} on {self.dataset} ({self.release}), {better} is better"

    @property
    def slug(self) -> str:
        text = f"{self.dataset}-{self.release}-{self.family.metric}".lower()
        return "".join(c if c.isalnum() else "-" for c in text).strip("-").replace("--", "-")


def _column(n_given: int) -> str:
    return "unconditional" if n_given == 0 else f"{n_given} given"


def _column_order(name: str) -> tuple:
    head = name.split(" ", 1)[0]
    return (name == "unconditional", int(head) if head.isdigit() else 0, name)


def family_values(df: pd.DataFrame, family: Family) -> pd.DataFrame:
    """One value per finished run and column: the metric's averaged rows (target "*"), by number of observed
    modalities (prior N(0, I) for unconditional rows); CLIP score, which has no averaged row, per direction."""
    rows = df[(df.status == "finished") & (df.metric == family.metric) & df.prior.isin(["", "gaussian"])].copy()
    if rows.empty:
        return rows.assign(column=pd.Series(dtype=str))
    averaged = rows[(rows.target == "*") & rows.given.isin(["*", ""])]
    if not averaged.empty:
        rows = averaged.assign(column=[_column(int(n)) for n in averaged.n_given])
    else:
        rows = rows.assign(column=[f"{t} from {g}" for t, g in zip(rows.target, rows.given)])
    keys = ["run_id", "model", "dataset", "release", "n_modalities", "setting", "seed", "git", "column"]
    return rows.groupby(keys, dropna=False)["value"].mean().reset_index()


# fields shown whenever a setting names them, even when every setting has the same value: a run on incomplete data
# says so (a setting without it was trained on complete data: "0")
ALWAYS_SHOWN = ("dataset.missing_rate",)


def differing_fields(settings: list[str], resolved: dict[str, dict]) -> dict[str, dict[str, str]]:
    """{setting: {field: value}} for the spec fields in which the given settings differ (the number of
    modalities is the M column). A field a spec does not name takes its resolved value (``resolved``: setting ->
    {field: value}, config fields by name and dataset options as "dataset.<option>"), so a record written
    before an option existed does not differ from one at the option's default."""
    flats = {s: flat_setting(s) for s in set(settings)}
    keys = sorted({k for f in flats.values() for k in f} - {"dataset.modalities"})

    def value(s: str, k: str) -> str:
        raw = flats[s].get(k)
        if raw is not None:  # JSON: a string shows as written (its quotes and escapes undone), others as JSON
            decoded = json.loads(raw)
            return decoded if isinstance(decoded, str) else raw
        if k in resolved.get(s, {}):
            v = resolved[s][k]
            return v if isinstance(v, str) else json.dumps(v)
        return "0" if k in ALWAYS_SHOWN else "default"

    out = {s: {} for s in flats}
    for k in keys:
        values = {s: value(s, k) for s in flats}
        if len(set(values.values())) > 1 or k in ALWAYS_SHOWN:
            for s, v in values.items():
                out[s][k] = v
    return out


def _shown_fields(grp: pd.DataFrame, resolved: dict[str, dict]) -> dict[str, dict[str, str]]:
    """``differing_fields`` less the presets of one model's own: a field is a column when some model's settings
    differ in it (what a sweep varied) or when every row's spec has it (the shared budget and hyperparameters:
    epochs, batch size, beta, the dataset's options), while fields only some models have (MLD's sampler, SBM-AE's
    variant) that differ only from model to model are not."""
    differing = differing_fields(list(grp.setting), resolved)
    settings = list(differing)
    common = (
        set.intersection(*(set(flat_setting(s)) | set(resolved.get(s, {})) for s in settings)) if settings else set()
    )
    shown = set(ALWAYS_SHOWN) | common
    for _, own in grp.groupby("model", sort=True).setting:
        shown |= {k for f in differing_fields(list(own), resolved).values() for k in f}
    return {s: {k: v for k, v in f.items() if k in shown} for s, f in differing.items()}


def _sort_key(value: str) -> tuple:
    """Numbers in numeric order (a missing rate of 0 before 0.25 and 0.5), before other values in text order."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _format(mean: float, std: float, seeds: int, row_seeds: int, family: Family) -> str:
    d = family.digits
    text = f"{mean:.{d}f}" + (f" ± {std:.{d}f}" if seeds > 1 else "")
    return text + (f" (n={seeds})" if seeds != row_seeds else "")


def _mark_best(rows: list[Row], columns: list[str], family: Family) -> None:
    for c in columns:
        values = [round(r.cells[c].mean, family.digits) for r in rows if r.source == "mmbench" and c in r.cells]
        if not values:
            continue
        best = max(values) if family.higher_is_better else min(values)
        for r in rows:
            if r.source == "mmbench" and c in r.cells and round(r.cells[c].mean, family.digits) == best:
                r.cells[c].best = True


def leaderboards(
    df: pd.DataFrame,
    published: pd.DataFrame | None = None,
    resolved: dict[str, dict] | None = None,
    caveats: dict[tuple[str, str], str] | None = None,
) -> list[Leaderboard]:
    """Every (dataset release, metric family) table that has finished runs. ``resolved``: setting -> the
    record's resolved config, to show defaults by value; ``caveats``: (run_id, metric) -> a note the row
    must carry (e.g. FID from non-standard Inception weights, ``metric_caveats``)."""
    out = []
    for family in FAMILIES:
        values = family_values(df, family)
        for (dataset, release), grp in values.groupby(["dataset", "release"], dropna=False):
            out.append(_table(grp, family, dataset, release, published, resolved or {}, caveats or {}))
    return out


def metric_caveats(records: list[RunRecord]) -> dict[tuple[str, str], str]:
    """What makes a run's metric incomparable with published numbers, from its metric provenance: FID with
    weights other than pytorch-fid's standard Inception, or from features other than the 2048-d pool."""
    out = {}
    for rec in records:
        fid = (rec.metric_provenance or {}).get("fid")
        if not isinstance(fid, dict):
            continue
        notes = []
        if fid.get("standard_weights") is False:
            notes.append("FID with non-standard Inception weights: not comparable")
        if fid.get("dims", 2048) != 2048:
            notes.append(f"FID on {fid['dims']}-d features")
        if notes:
            out[(rec.run_id, "fid")] = "; ".join(notes)
    return out


_OWN_LABELS = frozenset({"model", "source", "M", "seeds", "note"})


def _table(
    grp: pd.DataFrame,
    family: Family,
    dataset: str,
    release: str,
    published: pd.DataFrame | None,
    resolved: dict[str, dict],
    caveats: dict[tuple[str, str], str],
) -> Leaderboard:
    fields = {  # a config field named like a column of the table's own ("note") keeps its own column
        s: {f"config.{k}" if k in _OWN_LABELS else k: v for k, v in f.items()}
        for s, f in _shown_fields(grp, resolved).items()
    }
    field_names = sorted({k for f in fields.values() for k in f})
    columns = sorted(set(grp.column), key=_column_order)
    rows = []
    for (model, setting), runs in grp.groupby(["model", "setting"], sort=True):
        row_seeds = runs.seed.nunique()
        n_mod = runs.n_modalities.dropna()
        labels = {
            "model": model,
            "M": str(int(n_mod.iloc[0])) if len(n_mod) else "",
            **{k: fields[setting].get(k, "") for k in field_names},
            "seeds": str(row_seeds),
            "note": "; ".join(
                sorted(
                    {caveats[k] for rid in runs.run_id.unique() if (k := (rid, family.metric)) in caveats}
                    | ({"mixed code revisions"} if runs.git.nunique() > 1 else set())
                )
            ),
        }
        cells = {}
        for c, v in runs.groupby("column"):
            vals = family.scale * v.value.to_numpy(dtype=float)
            seeds = v.seed.nunique()
            std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            cells[c] = Cell(float(vals.mean()), std, seeds, _format(vals.mean(), std, seeds, row_seeds, family))
        rows.append(Row("mmbench", labels, cells))
    rows.sort(key=lambda r: (r.labels["model"], *(_sort_key(r.labels.get(k, "")) for k in field_names)))
    _mark_best(rows, columns, family)
    notes = []
    missing = {c: sorted(r.labels["model"] for r in rows if c not in r.cells) for c in columns}
    for c, models in missing.items():
        if models:
            notes.append(f"{c}: no value for {', '.join(models)} (metric not evaluated for those runs)")
    rows += _paper_rows(
        published, family, dataset, release, {(r.labels["model"], r.labels["M"]) for r in rows}, columns, field_names
    )
    label_columns = ["model", "source", "M", *field_names, "seeds", "note"]
    if not any(r.labels.get("note") for r in rows):
        label_columns.remove("note")
    return Leaderboard(dataset, release, family, label_columns, columns, rows, notes)


def _paper_rows(
    published: pd.DataFrame | None,
    family: Family,
    dataset: str,
    release: str,
    present: set[tuple[str, str]],
    columns: list[str],
    field_names: list[str],
) -> list[Row]:
    """Paper numbers beside the table's (model, number of modalities) runs of this dataset release only, one row
    per model and source."""
    if published is None or published.empty:
        return []
    p = published[
        (published.metric == family.metric)
        & (published.dataset == dataset)
        & (published.release == release)
        & published.prior.isin(["", "gaussian"])
    ]
    models = {model for model, _ in present}
    keep = np.array(
        [
            model in models and (pd.isna(m) or (model, str(int(m))) in present)
            for model, m in zip(p.model, p.n_modalities)
        ],
        dtype=bool,
    )
    p = p.loc[keep]
    rows = []
    for (model, source, n_mod), g in p.groupby(["model", "source", "n_modalities"], dropna=False):
        cells = {}
        for r in g.itertuples():
            text = f"{float(r.value):.{family.digits}f}"
            cells[_column(int(r.n_given))] = Cell(float(r.value), 0.0, 0, text)
        labels = {
            "model": model,
            "M": "" if pd.isna(n_mod) else str(int(n_mod)),
            **{k: "" for k in field_names},
            "seeds": "",
            "note": "",
        }
        rows.append(Row(f"paper: {source}", labels, cells))
    for c in sorted({c for r in rows for c in r.cells} - set(columns), key=_column_order):
        columns.append(c)
    return rows


# -- rendering ------------------------------------------------------------------------------------------


def _labels(board: Leaderboard, row: Row) -> list[str]:
    return [row.source if c == "source" else row.labels.get(c, "") for c in board.label_columns]


def to_markdown(board: Leaderboard) -> str:
    """A Markdown table, the best value per column in bold."""
    head = board.label_columns + board.metric_columns
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in board.rows:
        cells = [
            (f"**{r.cells[c].text}**" if r.cells[c].best else r.cells[c].text) if c in r.cells else ""
            for c in board.metric_columns
        ]
        lines.append("| " + " | ".join(_labels(board, r) + cells) + " |")
    return "\n".join(lines)


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
}


def _tex(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def display_model(name: str) -> str:
    """A model as papers print it (its plugin's ``display_name``), else its registry name."""
    from mmbench.errors import MMBenchError
    from mmbench.registry import MODELS

    try:
        return getattr(MODELS.get(name), "display_name", "") or name
    except MMBenchError:  # a model this installation lacks
        return name


_LATEX_HEADS = {"model": "Model", "M": "$M$", "seeds": "Seeds", "note": "Note"}


def to_latex(board: Leaderboard) -> str:
    """A complete booktabs ``table`` (caption, label) to paste into a paper: display names, the best value per
    column in bold, paper rows after a rule with their sources in the caption."""
    labels = [c for c in board.label_columns if c != "source"]
    head = [_LATEX_HEADS.get(c, rf"\texttt{{{_tex(c)}}}") for c in labels] + [_tex(c) for c in board.metric_columns]
    better = "higher" if board.family.higher_is_better else "lower"
    caption = (
        f"{_tex(board.family.title)} on {_tex(board.dataset)} ({_tex(board.release)}); {better} is better. "
        r"Mean $\pm$ standard deviation over seeds; best of our runs in bold."
    )
    sources = sorted(
        {(display_model(r.labels["model"]), r.source.split(": ", 1)[-1]) for r in board.rows if r.source != "mmbench"}
    )
    if sources:
        caption += " Rows marked (paper): " + "; ".join(f"{_tex(m)} from {_tex(src)}" for m, src in sources) + "."
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{caption}}}",
        rf"\label{{tab:{board.slug}}}",
        r"\begin{tabular}{" + "l" * len(labels) + "r" * len(board.metric_columns) + "}",
        r"\toprule",
        " & ".join(head) + r" \\",
        r"\midrule",
    ]
    paper_started = False
    for r in board.rows:
        if r.source != "mmbench" and not paper_started:
            lines.append(r"\midrule")
            paper_started = True
        cells = [
            (rf"\textbf{{{_tex(r.cells[c].text)}}}" if r.cells[c].best else _tex(r.cells[c].text))
            if c in r.cells
            else ""
            for c in board.metric_columns
        ]
        names = [
            display_model(r.labels["model"]) + (" (paper)" if r.source != "mmbench" else "")
            if c == "model"
            else r.labels.get(c, "")
            for c in labels
        ]
        lines.append(" & ".join([_tex(v) for v in names] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_frame(boards: list[Leaderboard]) -> pd.DataFrame:
    """Every cell of every table in long form (for CSV): labels, column, mean, std (rounded as the table shows
    them), seeds, best."""
    out = []
    for b in boards:
        for r in b.rows:
            for c, cell in r.cells.items():
                out.append(
                    {
                        "dataset": b.dataset,
                        "release": b.release,
                        "metric": b.family.metric,
                        "source": r.source,
                        **{k: v for k, v in r.labels.items()},
                        "column": c,
                        "mean": round(cell.mean, b.family.digits),
                        "std": round(cell.std, b.family.digits) if cell.seeds > 1 else np.nan,
                        "seeds": cell.seeds or np.nan,
                        "best": cell.best,
                    }
                )
    return pd.DataFrame(out)


def to_html(board: Leaderboard) -> str:
    """An HTML table (escaped), the best value per column in <strong>."""
    from html import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in board.label_columns + board.metric_columns)
    body = []
    for r in board.rows:
        cells = "".join(f"<td>{escape(v)}</td>" for v in _labels(board, r))
        for c in board.metric_columns:
            cell = r.cells.get(c)
            text = "" if cell is None else (f"<strong>{escape(cell.text)}</strong>" if cell.best else escape(cell.text))
            cells += f'<td class="num">{text}</td>'
        body.append(f'<tr class="{"paper" if r.source != "mmbench" else "run"}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
