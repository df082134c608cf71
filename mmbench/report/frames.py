"""Run records read into pandas frames for the leaderboards and the report: one row per metric value, the
experiment a run belongs to, the papers' published numbers, the prior ablation (Table 4)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pandas as pd

from mmbench.errors import MMBenchError
from mmbench.storage.records import MetricRow, RunRecord

SPEC_COLUMNS = ["run_id", "model", "dataset", "seed", "n_modalities", "beta", "missing_rate", "status"]


def record_release(rec: RunRecord) -> str:
    """The dataset release a record's run read ("published", "offline build, ..."): the record's own "data"
    field, else asked of the adapter when the data folder is still there, else "release unknown"."""
    if rec.release is not None:
        return rec.release or "release unknown"
    try:
        from mmbench.runs.execute import dataset_release
        from mmbench.runs.spec import RunSpec

        return dataset_release(RunSpec.from_dict(rec.spec)) or "release unknown"
    except Exception:  # noqa: BLE001 - an old record whose adapter or folder is gone: say so in the table
        return "release unknown"


ROW_COLUMNS = [f.name for f in fields(MetricRow)]


def records_frame(records: list[RunRecord]) -> pd.DataFrame:
    """One row per metric value, with the spec's columns beside it."""
    rows = []
    for rec in records:
        base = {
            "run_id": rec.run_id,
            "model": rec.model,
            "dataset": rec.dataset,
            "seed": rec.seed,
            "n_modalities": rec.n_modalities,
            "beta": (rec.config or {}).get("beta"),
            "missing_rate": rec.missing_rate,
            "status": rec.status,
            "setting": spec_setting(rec.spec),
            "git": rec.git,
            "release": record_release(rec),
        }
        rows += [{**base, **m.to_dict()} for m in rec.metrics]
    return pd.DataFrame(rows, columns=SPEC_COLUMNS + ["setting", "git", "release"] + ROW_COLUMNS)


def spec_setting(spec: dict) -> str:
    """The experiment a run belongs to: its whole spec except the seed (and where it was submitted from), as
    canonical JSON. Runs are averaged together only when this is equal."""
    return json.dumps(
        {k: v for k, v in spec.items() if k not in ("seed", "sweep", "run_id")}, sort_keys=True, default=str
    )


def flat_setting(setting: str) -> dict:
    """A setting (``spec_setting``) as flat dotted fields: config fields by name, "dataset.<option>", "metric.<...>"."""
    out: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = json.dumps(value, default=str)

    d = json.loads(setting)
    walk(
        "",
        {
            **d.get("config", {}),
            "dataset": d.get("dataset_options", {}),
            "metrics": d.get("metrics", []),
            "metric": d.get("metric_options", {}),
        },
    )
    return out


def read_published(path: Path) -> pd.DataFrame:
    """Paper numbers: model, dataset, metric, n_given, value, source, and (optional, filled when absent)
    release ("published"), n_modalities (empty: any) and prior ("", or the older "metric@prior:NAME" form)."""
    path = Path(path)
    if not path.is_file():
        raise MMBenchError(f"published numbers file {path} does not exist")
    try:
        df = pd.read_csv(path, comment="#", keep_default_na=False, na_values={"n_modalities": [""]})
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise MMBenchError(f"published numbers file {path} is not a readable CSV: {exc}") from None
    need = {"model", "dataset", "metric", "n_given", "value", "source"}
    missing = need - set(df.columns)
    if missing:
        raise MMBenchError(f"{path} lacks the columns {sorted(missing)}; it needs {sorted(need)}")
    df = df.assign(
        **{
            c: df[c] if c in df else default
            for c, default in (("release", "published"), ("n_modalities", float("nan")), ("prior", ""))
        }
    )
    old = df.metric.str.contains("@prior:", regex=False)
    if old.any():
        split = df.loc[old, "metric"].str.split("@prior:", n=1, expand=True)
        df.loc[old, "metric"], df.loc[old, "prior"] = split[0], split[1]
    df["n_modalities"] = pd.to_numeric(df.n_modalities, errors="coerce")
    return df


def summary_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Averaged coherence per (model, dataset, n_modalities, beta, n_given): mean, std and count over seeds."""
    done = df[
        (df.status == "finished") & (df.metric == "coherence") & (df.target == "*") & df.prior.isin(["", "gaussian"])
    ]
    keys = ["model", "dataset", "n_modalities", "beta", "setting", "n_given"]
    if done.empty:
        return pd.DataFrame(columns=keys + ["mean", "std", "seeds", "revisions"])
    g = done.groupby(keys, dropna=False)
    out = g["value"].agg(["mean", "std"]).reset_index()
    out["seeds"] = g["seed"].nunique().values  # distinct seeds, not rows
    out["revisions"] = g["git"].nunique().values
    out["std"] = out["std"].fillna(0.0)
    return out


PRIOR_METRICS = {
    "latent_frechet": "latent Fréchet",
    "latent_mean_error": "mean error",
    "latent_cov_error": "covariance error",
    "coherence": "unconditional coherence (%)",
    "fid": "FID",
}


def _prior_label(name: str) -> str:
    return "N(0, I)" if name == "gaussian" else name


def prior_ablation(df: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 4's ablation: per model and prior over z (N(0, I) or one fitted by ``mmbench prior fit``), the
    unconditional rows of runs that have a fitted prior (rows whose ``prior`` is set), mean over seeds and, for
    FID, over modalities; paper rows beside runs of the same dataset, release and number of modalities only."""
    fitted = set(df.loc[~df.prior.isin(["", "gaussian"]), "run_id"])
    done = df[
        (df.status == "finished") & df.run_id.isin(fitted) & (df.prior != "") & (df.n_given == 0) & (df.target == "*")
    ].copy()
    table: dict[tuple, dict] = {}
    present = set()
    if not done.empty:
        keys = ["model", "dataset", "release", "n_modalities", "prior", "metric"]
        g = done.groupby(keys, dropna=False)["value"].agg(["mean", "count"]).reset_index()
        for r in g.itertuples():
            m = "" if pd.isna(r.n_modalities) else int(r.n_modalities)
            present.add((r.dataset, r.release, m))
            key = (r.model, "mmbench", f"{r.dataset} ({r.release})", m, _prior_label(r.prior), int(r.count))
            scale = 100 if r.metric == "coherence" else 1
            table.setdefault(key, {})[PRIOR_METRICS.get(r.metric, r.metric)] = f"{scale * r.mean:.1f}"
    if published is not None and present:
        for r in published[published.prior != ""].itertuples():
            m = "" if pd.isna(r.n_modalities) else int(r.n_modalities)
            if (r.dataset, r.release, m) not in present:
                continue  # a paper number beside other data would mislead
            key = (r.model, f"paper: {r.source}", f"{r.dataset} ({r.release})", m, _prior_label(r.prior), "")
            table.setdefault(key, {})[PRIOR_METRICS.get(r.metric, r.metric)] = f"{float(r.value):.1f}"
    if not table:
        return pd.DataFrame()
    cols = [c for c in PRIOR_METRICS.values() if any(c in v for v in table.values())]
    cols += sorted({c for v in table.values() for c in v} - set(cols))
    rows = [
        dict(zip(["model", "source", "dataset", "M", "prior", "seeds"], k), **{c: v.get(c, "") for c in cols})
        for k, v in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1] != "mmbench", kv[0][1], kv[0][4]))
    ]
    return pd.DataFrame(rows)
