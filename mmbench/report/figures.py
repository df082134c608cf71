"""The paper's figures from run records (matplotlib, PNG and PDF): Figure 7a (unconditional FID and coherence
against the number of modalities trained on), Figures 7b and 7c (conditional FID and coherence of the last
modality against the number observed, M = 5) and Table 4's bar chart (unconditional FID with N(0, I) and
with a fitted prior), and coherence and FID against the missing rate of the training data (``figure_missing``).
A figure whose data is absent comes back as ``Missing``, naming the sweep that makes it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmbench.report.leaderboards import differing_fields
from mmbench.storage.figures import plt, save_figure

SCALING_SWEEP = "sweeps/polymnist_scaling.toml"
CONDITIONAL_SWEEP = "sweeps/polymnist_conditional.toml"
PRIOR_SWEEP = "sweeps/prior_ablation.toml"
MISSING_HINT = 'a [grid] axis "dataset.missing_rate" = [0, 0.25, 0.5] (docs/guide.md, "Incomplete data")'
MISSING_OPTIONS = ("missing_rate", "missing_seed", "missing", "missing_eval")
FID_HINT = "mmbench eval RUN --metrics fid --fid-weights pt_inception-2015-12-05-6726825d.pth"


@dataclass
class Figure:
    name: str
    title: str
    caption: str
    files: list[Path]


@dataclass
class Missing:
    name: str
    title: str
    needs: str


def save_png_pdf(fig, stem: Path) -> list[Path]:
    """The figure as STEM.png (150 dpi) and STEM.pdf, each written atomically."""
    fig.tight_layout()
    pdf = stem.with_suffix(".pdf")
    pdf.parent.mkdir(parents=True, exist_ok=True)
    tmp = pdf.with_name(f".{pdf.name}.tmp.pdf")
    fig.savefig(tmp)
    tmp.replace(pdf)
    return [save_figure(fig, stem.with_suffix(".png"), dpi=150), pdf]


def _without_modalities(setting: str) -> str:
    d = json.loads(setting)
    d.get("dataset_options", {}).pop("modalities", None)
    return json.dumps(d, sort_keys=True)


def _line_labels(frame: pd.DataFrame) -> dict[tuple, str]:
    """A legend label per (model, dataset, release, line setting): the model, plus the fields that tell its
    lines apart (``leaderboards.differing_fields``) and the data when its lines read several releases."""
    keys = frame[["model", "dataset", "release", "line"]].drop_duplicates()
    labels = {}
    for model, grp in keys.groupby("model"):
        fields = differing_fields(list(grp.line), {})
        several = len(grp[["dataset", "release"]].drop_duplicates()) > 1
        for _, dataset, release, line in grp.itertuples(index=False):
            extra = [f"{k}={v}" for k, v in fields[line].items()] + ([f"{dataset} ({release})"] if several else [])
            labels[(model, dataset, release, line)] = " ".join([model, *extra])
    return labels


def _band_lines(ax, frame: pd.DataFrame, x: str, scale: float) -> None:
    """One line per experiment (mean over seeds) with a band of ± std."""
    labels = _line_labels(frame)
    for i, (key, g) in enumerate(frame.groupby(["model", "dataset", "release", "line"], sort=True)):
        stats = g.groupby(x)["value"].agg(["mean", "std", "count"]).reset_index().sort_values(x)
        if len(stats) < 2:
            continue
        mean, std = scale * stats["mean"].to_numpy(), scale * stats["std"].fillna(0).to_numpy()
        color = f"C{i % 10}"
        seeds = int(g.seed.nunique())
        ax.plot(stats[x], mean, marker="o", color=color, label=f"{labels[key]} ({seeds} seed{'s' * (seeds > 1)})")
        ax.fill_between(stats[x], mean - std, mean + std, color=color, alpha=0.2, lw=0)
    ax.xaxis.get_major_locator().set_params(integer=True)


def _finished(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df.status == "finished"].copy()
    d["line"] = [_without_modalities(s) for s in d.setting]
    return d


def figure_7a(df: pd.DataFrame, out_dir: Path) -> list[Figure | Missing]:
    """Unconditional FID and coherence (N(0, I) prior) against the number of modalities trained on."""
    d = _finished(df)
    d = d[(d.n_given == 0) & (d.target == "*") & d.prior.isin(["", "gaussian"])]
    panels = [("fid", "unconditional FID", 1.0), ("coherence", "unconditional coherence (%)", 100.0)]
    per_run = {
        m: d[d.metric == m]
        .groupby(["run_id", "model", "dataset", "release", "line", "seed", "n_modalities"], dropna=False)["value"]
        .mean()
        .reset_index()
        for m, _, _ in panels
    }
    have = [p for p in panels if per_run[p[0]].groupby(["model", "line"]).n_modalities.nunique().ge(2).any()]
    title = "Figure 7a: unconditional generation against the number of modalities trained on"
    out: list[Figure | Missing] = []
    for m, label, _ in (p for p in panels if p not in have):
        hint = f"; then {FID_HINT}" if m == "fid" else ""
        out.append(
            Missing(
                f"figure7a-{m}",
                f"{title}: {label}",
                f"runs of one experiment at 2 or more numbers of modalities with {m} rows: {SCALING_SWEEP}{hint}",
            )
        )
    if not have:
        return out
    fig, axes = plt.subplots(1, len(have), figsize=(5.2 * len(have), 4), squeeze=False)
    for ax, (m, label, scale) in zip(axes[0], have):
        _band_lines(ax, per_run[m].rename(columns={"n_modalities": "M"}), "M", scale)
        ax.set_xlabel("modalities trained on (M)")
        ax.set_ylabel(label)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    files = save_png_pdf(fig, out_dir / "figure7a")
    caption = (
        "Unconditional generation with z ~ N(0, I): "
        + " and ".join(label for _, label, _ in have)
        + " against M; lines are means over seeds, bands ± one standard deviation."
    )
    return [Figure("figure7a", title, caption, files)] + out


def _natural(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def figure_7bc(df: pd.DataFrame, out_dir: Path, m: int = 5) -> list[Figure | Missing]:
    """Conditional FID (7b) and coherence (7c) of the last modality against the number observed, models trained
    on M = m modalities; each point averages the subsets of that size that leave the last modality out."""
    d = _finished(df)
    d = d[(d.n_modalities == m) & (d.n_given > 0) & (d.target != "*")]
    out: list[Figure | Missing] = []
    for name, metric, label, scale, given in (
        ("figure7b", "fid", "conditional FID", 1.0, "*"),
        ("figure7c", "coherence", "conditional coherence (%)", 100.0, None),
    ):
        title = f"Figure {name[-2:]}: {label} of the last modality against observed modalities (M = {m})"
        rows = d[d.metric == metric]
        rows = rows[rows.given == "*"] if given else rows[rows.given != "*"]
        if not rows.empty:
            last = {rid: max(g.target, key=_natural) for rid, g in rows.groupby("run_id")}
            rows = rows[[t == last[r] for r, t in zip(rows.run_id, rows.target)]]
        per_run = (
            rows.groupby(["run_id", "model", "dataset", "release", "line", "seed", "n_given"], dropna=False)["value"]
            .mean()
            .reset_index()
        )
        if per_run.empty or per_run.n_given.nunique() < 2:
            hint = f"; then {FID_HINT}" if metric == "fid" else ""
            out.append(
                Missing(name, title, f"runs on {m} modalities with per-target {metric} rows: {CONDITIONAL_SWEEP}{hint}")
            )
            continue
        fig, ax = plt.subplots(figsize=(5.5, 4))
        _band_lines(ax, per_run, "n_given", scale)
        ax.set_xlabel("observed modalities")
        ax.set_ylabel(f"{label}, last modality")
        ax.legend(fontsize=6)
        ax.set_title(f"Figure {name[-2:]}: {label}, last modality (M = {m})", fontsize=8)
        caption = (
            f"{label.capitalize()} of the last modality generated from 1 to {m - 1} observed ones (each point "
            "averages the subsets of that size without the last modality), models trained on all "
            f"{m}; means over seeds, bands ± one standard deviation."
        )
        out.append(Figure(name, title, caption, save_png_pdf(fig, out_dir / name)))
    return out


def _without_missing(setting: str) -> str:
    d = json.loads(setting)
    for k in MISSING_OPTIONS:
        d.get("dataset_options", {}).pop(k, None)
    return json.dumps(d, sort_keys=True)


def figure_missing(df: pd.DataFrame, out_dir: Path) -> list[Figure | Missing]:
    """Conditional coherence (given one modality, and given all but one) and FID against the training data's
    missing rate, a line per model and experiment (its setting but the missing-data options); drawn only when the
    records hold 2 or more missing rates."""
    name, title = "figure-missing", "Coherence and FID against the missing rate of the training data"
    d = df[(df.status == "finished") & (df.target == "*") & df.prior.isin(["", "gaussian"])].copy()
    d["line"] = [_without_missing(s) for s in d.setting]
    keys = ["run_id", "model", "dataset", "release", "line", "seed", "missing_rate"]
    panels = []
    coherence = d[(d.metric == "coherence") & (d.given == "*") & (d.n_given > 0)]
    if not coherence.empty:
        last = coherence.groupby("run_id").n_given.transform("max")
        panels.append(("coherence given 1 modality (%)", coherence[coherence.n_given == 1], 100.0))
        most = coherence[(coherence.n_given == last) & (last > 1)]
        if not most.empty:
            panels.append(("coherence given all but one (%)", most, 100.0))
    fid = d[d.metric == "fid"]
    if not fid.empty:
        conditional = fid[fid.n_given > 0]
        panels.append(
            (
                "conditional FID" if not conditional.empty else "unconditional FID",
                conditional if not conditional.empty else fid,
                1.0,
            )
        )
    per_run = [
        (label, rows.groupby(keys, dropna=False)["value"].mean().reset_index(), scale) for label, rows, scale in panels
    ]
    per_run = [p for p in per_run if p[1].groupby(["model", "line"]).missing_rate.nunique().ge(2).any()]
    if not per_run:
        return [
            Missing(
                name, title, f"runs of one experiment at 2 or more missing rates with coherence rows: {MISSING_HINT}"
            )
        ]
    fig, axes = plt.subplots(1, len(per_run), figsize=(5.2 * len(per_run), 4), squeeze=False)
    for ax, (label, rows, scale) in zip(axes[0], per_run):
        _band_lines(ax, rows, "missing_rate", scale)
        ax.xaxis.get_major_locator().set_params(integer=False)
        ax.set_xlabel("missing rate of the training data")
        ax.set_ylabel(label)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    caption = (
        " and ".join(label for label, _, _ in per_run)
        + " against the probability that a training tuple misses each modality (test data complete); lines are "
        "means over seeds, bands ± one standard deviation."
    )
    return [Figure(name, title, caption, save_png_pdf(fig, out_dir / name))]


def table4_chart(df: pd.DataFrame, out_dir: Path) -> list[Figure | Missing]:
    """Unconditional FID per model with z from N(0, I) and from each fitted prior (Table 4), as grouped bars."""
    title = "Table 4: unconditional FID with the Gaussian prior and with a fitted prior"
    d = df[(df.status == "finished") & (df.metric == "fid") & (df.target == "*") & (df.n_given == 0)]
    fitted = set(d.loc[~d.prior.isin(["", "gaussian"]), "run_id"])
    d = d[d.run_id.isin(fitted) & (d.prior != "")]
    if d.empty:
        return [
            Missing(
                "table4",
                title,
                f"runs with a fitted prior and FID rows for it: {PRIOR_SWEEP}, then "
                "mmbench prior fit RUN and " + FID_HINT + " --prior score",
            )
        ]
    per_run = d.groupby(["run_id", "model", "prior", "seed"])["value"].mean().reset_index()
    stats = per_run.groupby(["model", "prior"])["value"].agg(["mean", "std", "count"]).reset_index()
    models, priors = sorted(stats.model.unique()), sorted(stats.prior.unique(), key=lambda p: (p != "gaussian", p))
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(models), 3.6))
    width = 0.8 / len(priors)
    for i, prior in enumerate(priors):
        s = stats[stats.prior == prior].set_index("model").reindex(models)
        xs = np.arange(len(models)) + (i - (len(priors) - 1) / 2) * width
        ax.bar(
            xs,
            s["mean"],
            width,
            yerr=s["std"].fillna(0),
            capsize=3,
            label="N(0, I)" if prior == "gaussian" else f"{prior} prior",
        )
    ax.set_xticks(np.arange(len(models)), models)
    ax.set_ylabel("unconditional FID (lower is better)")
    ax.legend(fontsize=7)
    ax.set_title("Table 4: unconditional FID by prior", fontsize=8)
    caption = "Unconditional FID with z from N(0, I) and from each fitted prior; bars are means over seeds (± std)."
    return [Figure("table4", title, caption, save_png_pdf(fig, out_dir / "table4"))]
