"""Run records (one JSON file per run, written atomically) and the leaderboard built from them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mmbench.checkpoint import atomic_write_json
from mmbench.errors import MMBenchError

RECORD = "record.json"
# The layout of record.json. 2: device_info, options, job, train throughput, generation; records without
# "schema" are 1 and still read. A record of a later schema is refused (written by a newer mmbench).
SCHEMA = 2
SPEC_COLUMNS = ["run_id", "model", "dataset", "seed", "n_modalities", "beta", "status"]


def write_record(run_dir: Path, record: dict) -> Path:
    path = Path(run_dir) / RECORD
    atomic_write_json(path, record)
    return path


def read_record(path: Path) -> dict:
    try:
        rec = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise MMBenchError(f"run record {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(rec, dict):
        raise MMBenchError(f"run record {path} is not a JSON object")
    schema = rec.get("schema", 1)
    if not isinstance(schema, int) or not 1 <= schema <= SCHEMA:
        raise MMBenchError(f"run record {path} has schema {schema!r}; this mmbench reads schemas 1 to {SCHEMA} "
                           "(was it written by another version?)")
    for key in ("run_id", "status", "spec", "metrics"):
        if key not in rec:
            raise MMBenchError(f"run record {path} has no field {key!r}")
    return rec


def read_records(runs_dir: Path) -> list[dict]:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise MMBenchError(f"runs folder {runs_dir} does not exist; run a sweep first (mmbench sweep submit FILE)")
    return [read_record(p) for p in sorted(runs_dir.glob(f"*/{RECORD}"))]


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per metric value, with the spec's columns beside it."""
    rows = []
    for rec in records:
        spec = rec["spec"]
        base = {
            "run_id": rec["run_id"], "model": spec["model"], "dataset": spec["dataset"], "seed": spec["seed"],
            "n_modalities": rec.get("n_modalities"), "beta": rec.get("config", {}).get("beta"),
            "status": rec["status"], "setting": spec_setting(spec),
            "git": rec.get("provenance", {}).get("git", "unknown"),
        }
        for m in rec["metrics"]:
            row = {**base, **m}
            if "@prior:" in str(row["metric"]):  # records of schema 1 named the prior inside the metric
                row["metric"], row["prior"] = row["metric"].split("@prior:", 1)
            row["prior"] = row.get("prior") or ""
            rows.append(row)
    cols = SPEC_COLUMNS + ["setting", "git", "metric", "target", "given", "n_given", "value", "n_samples", "prior"]
    return pd.DataFrame(rows, columns=cols)


def spec_setting(spec: dict) -> str:
    """The experiment a run belongs to: its whole spec except the seed (and where it was submitted from), as
    canonical JSON. Runs are averaged together only when this is equal."""
    return json.dumps({k: v for k, v in spec.items() if k not in ("seed", "sweep", "run_id")}, sort_keys=True,
                      default=str)


def _flat(setting: str) -> dict:
    out: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = json.dumps(value, default=str)

    d = json.loads(setting)
    walk("", {**d.get("config", {}), "dataset": d.get("dataset_options", {}), "metrics": d.get("metrics", []),
              "metric": d.get("metric_options", {})})
    return out


def setting_labels(settings: list[str]) -> dict[str, str]:
    """For the settings of one model on one dataset, a label naming the fields where they differ ("" when
    there is one setting), e.g. "epochs=27 latent_dim=64"."""
    unique = sorted(set(settings))
    if len(unique) < 2:
        return {u: "" for u in unique}
    flats = {u: _flat(u) for u in unique}
    keys = sorted({k for f in flats.values() for k in f})
    differing = [k for k in keys if len({f.get(k) for f in flats.values()}) > 1]
    return {u: " ".join(f"{k}={flats[u].get(k, '-')}" for k in differing) for u in unique}


def read_published(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise MMBenchError(f"published numbers file {path} does not exist")
    df = pd.read_csv(path, comment="#")
    need = {"model", "dataset", "metric", "n_given", "value", "source"}
    missing = need - set(df.columns)
    if missing:
        raise MMBenchError(f"{path} lacks the columns {sorted(missing)}; it needs {sorted(need)}")
    return df


def summary_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Averaged coherence per (model, dataset, n_modalities, beta, n_given): mean, std and count over seeds."""
    done = df[(df.status == "finished") & (df.metric == "coherence") & (df.target == "*")
              & df.prior.isin(["", "gaussian"])]
    keys = ["model", "dataset", "n_modalities", "beta", "setting", "n_given"]
    if done.empty:
        return pd.DataFrame(columns=keys + ["mean", "std", "seeds", "revisions"])
    g = done.groupby(keys, dropna=False)
    out = g["value"].agg(["mean", "std"]).reset_index()
    out["seeds"] = g["seed"].nunique().values  # distinct seeds, not rows
    out["revisions"] = g["git"].nunique().values
    out["std"] = out["std"].fillna(0.0)
    return out


def _column(n_given: int) -> str:
    return "unconditional" if n_given == 0 else f"{n_given} given"


def leaderboard(df: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Coherence (%) per model and number of observed modalities, mean ± std over seeds (the mean alone for
    one seed), paper rows beside. Runs are averaged only within one experiment (the whole spec but the seed);
    where one model has several, a "setting" column names the fields in which they differ, and a cell that
    mixes code revisions says so. Seeds count distinct seed values."""
    s = summary_frame(df)
    labels: dict[str, str] = {}
    for _, grp in s.groupby(["model", "dataset"]):
        labels.update(setting_labels(list(grp.setting)))
    table: dict[tuple, dict] = {}
    for r in s.itertuples():
        beta = "" if pd.isna(r.beta) else f"{r.beta:g}"
        note = labels.get(r.setting, "") + (" (mixed code revisions)" if r.revisions > 1 else "")
        key = (r.model, "mmbench", r.dataset, int(r.n_modalities) if not pd.isna(r.n_modalities) else "", beta,
               note.strip(), int(r.seeds))
        cell = f"{100 * r.mean:.1f}" + (f" ± {100 * r.std:.1f}" if r.seeds > 1 else "")
        table.setdefault(key, {})[_column(int(r.n_given))] = cell
    if published is not None:
        for (model, dataset, source), grp in published[published.metric == "coherence"].groupby(
                ["model", "dataset", "source"]):
            key = (model, f"paper: {source}", dataset, "", "", "", "")
            for r in grp.itertuples():
                table.setdefault(key, {})[_column(int(r.n_given))] = f"{float(r.value):.1f}"
    cols = sorted({c for v in table.values() for c in v}, key=lambda c: (c == "unconditional", c))
    rows = [dict(zip(["model", "source", "dataset", "M", "beta", "setting", "seeds"], k), **{c: v.get(c, "") for c in cols})
            for k, v in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1] != "mmbench", kv[0][1], kv[0][5]))]
    board = pd.DataFrame(rows)
    if not board.empty and (board["setting"] == "").all():
        board = board.drop(columns="setting")  # one experiment per model: nothing to tell apart
    return board


PRIOR_METRICS = {"latent_frechet": "latent Fréchet", "latent_mean_error": "mean error",
                 "latent_cov_error": "covariance error", "coherence": "unconditional coherence (%)", "fid": "FID"}


def _prior_label(name: str) -> str:
    return "N(0, I)" if name == "gaussian" else name


def prior_ablation(df: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 4's ablation: per model and prior over z (N(0, I) or one fitted by ``mmbench prior fit``), the
    unconditional rows of runs that have a fitted prior (rows whose ``prior`` is set), mean over seeds and, for
    FID, over modalities; paper rows beside."""
    fitted = set(df.loc[~df.prior.isin(["", "gaussian"]), "run_id"])
    done = df[(df.status == "finished") & df.run_id.isin(fitted) & (df.prior != "") & (df.n_given == 0)
              & (df.target == "*")].copy()
    table: dict[tuple, dict] = {}
    if not done.empty:
        done["base"] = done.metric
        keys = ["model", "dataset", "n_modalities", "prior", "base"]
        g = done.groupby(keys, dropna=False)["value"].agg(["mean", "count"]).reset_index()
        for r in g.itertuples():
            key = (r.model, "mmbench", r.dataset, "" if pd.isna(r.n_modalities) else int(r.n_modalities),
                   _prior_label(r.prior), int(r.count))
            scale = 100 if r.base == "coherence" else 1
            table.setdefault(key, {})[PRIOR_METRICS.get(r.base, r.base)] = f"{scale * r.mean:.1f}"
    if published is not None:
        paper = published[published.metric.str.contains("@prior:", regex=False)]
        for r in paper.itertuples():
            base, prior = r.metric.split("@prior:", 1)
            key = (r.model, f"paper: {r.source}", r.dataset, "", _prior_label(prior), "")
            table.setdefault(key, {})[PRIOR_METRICS.get(base, base)] = f"{float(r.value):.1f}"
    if not table:
        return pd.DataFrame()
    cols = [c for c in PRIOR_METRICS.values() if any(c in v for v in table.values())]
    cols += sorted({c for v in table.values() for c in v} - set(cols))
    rows = [dict(zip(["model", "source", "dataset", "M", "prior", "seeds"], k), **{c: v.get(c, "") for c in cols})
            for k, v in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1] != "mmbench", kv[0][1], kv[0][4]))]
    return pd.DataFrame(rows)


def write_report(runs_dir: Path, out_dir: Path, published_path: Path | None = None) -> dict[str, Path]:
    """leaderboard.md / .csv / .tex and the conditional coherence plot under out_dir."""
    from mmbench.plots import plot_conditional

    records = read_records(runs_dir)
    if not records:
        raise MMBenchError(f"no run records under {runs_dir}; run a sweep first")
    df = records_frame(records)
    published = read_published(published_path) if published_path else None
    board = leaderboard(df, published)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = [r for r in records if r["status"] != "finished"]
    md = ["# mmbench leaderboard", "",
          "Conditional coherence (%) by number of observed modalities (mean ± std over seeds); "
          "unconditional: share of prior samples whose digits all agree.", "",
          board.to_markdown(index=False) if not board.empty else "(no finished runs)", ""]
    ablation = prior_ablation(df, published)
    if not ablation.empty:
        md += ["## Prior ablation (Diff-MVAE Table 4)", "",
               "Unconditional generation with z from N(0, I) or from a prior fitted on the run's encoder latents "
               "(`mmbench prior fit RUN`). Latent Fréchet: distance between Gaussian fits of the prior's samples "
               "and the test set's encoder latents; mean error ||m_prior - m_enc||; covariance error "
               "||C_prior - C_enc||_F / ||C_enc||_F (all lower is better).", "", ablation.to_markdown(index=False), ""]
    if failed:
        md += ["## Failed runs", ""] + [f"- {r['run_id']}: {r.get('failure')}" for r in failed] + [""]
    paths = {"markdown": out_dir / "leaderboard.md", "csv": out_dir / "leaderboard.csv",
             "latex": out_dir / "leaderboard.tex", "metrics": out_dir / "metrics.csv",
             "plot": out_dir / "conditional_coherence.png"}
    from mmbench.checkpoint import atomic_write_bytes

    atomic_write_bytes(paths["markdown"], "\n".join(md).encode())
    atomic_write_bytes(paths["csv"], board.to_csv(index=False).encode())
    atomic_write_bytes(paths["latex"], board.to_latex(index=False).encode())
    atomic_write_bytes(paths["metrics"], df.to_csv(index=False).encode())
    if not ablation.empty:
        paths["prior_ablation"] = out_dir / "prior_ablation.csv"
        atomic_write_bytes(paths["prior_ablation"], ablation.to_csv(index=False).encode())
    plot_conditional(summary_frame(df), published, paths["plot"])
    return paths
