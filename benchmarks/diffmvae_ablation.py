"""Diff-MVAE conditioning x time-weighting ablation at one CPU budget; prints the table of issue 13.

    python benchmarks/diffmvae_ablation.py [--rows diffmvae_star:scale_shift:high_noise mopoe ...]
                                           [--sweep benchmarks/diffmvae_ablation.toml] [--out benchmarks/out]

Each row is ``model`` (the sweep's config) or ``model:conditioning:weighting[:field=value...]`` (those fields
replaced, e.g. ``diffmvae_star:scale_shift:high_noise:free_bits=0.5``).
Rows run one after another through the sweep machinery (finished runs are reused), and after each the
table is printed and written to OUT/diffmvae_ablation.md: the z-usage ratio (UNet noise error with z
shuffled over the error with the true z, ``latent_usage_probe``) at t = 300/600/900, the spread of the
posterior means (and the posterior std), conditional coherence with 1 and 2 of 3 modalities given, and
training time.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from latent_usage_probe import latent_usage

from mmbench.config import build_config, config_to_dict
from mmbench.data.polymnist_build import build_polymnist
from mmbench.registry import MODELS
from mmbench.report.frames import records_frame, summary_frame
from mmbench.storage.records import RunRecord, load_records
from mmbench.sweeps.files import load_sweep, parse_value
from mmbench.sweeps.submission import submit

HERE = Path(__file__).resolve().parent
DEFAULT_ROWS = [
    "diffmvae_star:embedding:variance",
    "diffmvae_star:scale_shift:variance",
    "diffmvae_star:spatial:variance",
    "diffmvae_star:scale_shift+spatial:high_noise:free_bits=0.5",
    "diffmvae_star:spatial:high_noise",
    "diffmvae_star:spatial:high_noise:free_bits=3.0",
    "diffmvae_star:spatial:high_noise:free_bits=3.0:logvar_offset=-6.0",
    "mopoe",
    "diffmvae:scale_shift+spatial:high_noise:free_bits=0.5",
    "diffmvae:spatial:high_noise:free_bits=3.0",
]


def row_spec(sweep, row: str):
    model, *rest = row.split(":")
    base = next((s for s in sweep.specs if s.model == model), None)
    if base is None:
        raise SystemExit(f"row {row!r}: the sweep has no model {model!r}")
    if not rest:
        return base
    conditioning, weighting, *extra = rest
    fields = {k: parse_value(v) for k, v in (e.split("=", 1) for e in extra)}
    return dataclasses.replace(
        base, config={**base.config, "conditioning": conditioning, "weighting": weighting, **fields}
    )


def finished_record(records: list[RunRecord], spec) -> RunRecord | None:
    """The finished record of this row: same model, config, given dataset options and seed (not the run id, which
    changes when a newer mmbench adds an option to the dataset or model; a field a record lacks counts as that
    field's default)."""
    config = spec.normalized()["config"]
    defaults = config_to_dict(build_config(MODELS.get(spec.model).Config, {}))
    for r in records:
        recorded = {**defaults, **(r.spec.get("config") or {})}
        if (
            r.finished
            and r.model == spec.model
            and all(recorded.get(k) == v for k, v in config.items())
            and r.seed == spec.seed
            and r.dataset_options.get("modalities") == spec.dataset_options.get("modalities")
        ):
            return r
    return None


def table(sweep, rows: list[str]) -> str:
    records = load_records(sweep.runs_dir)
    lines = [
        "| model | conditioning | weighting | other | z-usage t=300 | t=600 | t=900 | mean spread (post. std) | "
        "coherence 1 given | 2 given | train min |",
        "|" + "---|" * 11,
    ]
    for row in rows:
        spec = row_spec(sweep, row)
        base = next(s for s in sweep.specs if s.model == spec.model)
        rec = finished_record(records, spec)
        if rec is None:
            continue
        s = summary_frame(records_frame([rec])).set_index("n_given")["mean"]
        u = latent_usage(sweep.runs_dir / rec.run_id, n=500)
        usage = (
            "".join(f"| {u['ratio'][f]:.3f} " if f in u["ratio"] else "| - " for f in (0.3, 0.6, 0.9))
            + f"| {u['spread']:.3f} ({u['posterior_std']:.3f}) "
        )
        cond = spec.config.get("conditioning", "-") if spec.model != "mopoe" else "-"
        weight = spec.config.get("weighting", "-") if spec.model != "mopoe" else "-"
        other = (
            " ".join(
                f"{k}={v}"
                for k, v in spec.config.items()
                if k not in ("conditioning", "weighting") and base.config.get(k) != v
            )
            or "-"
        )
        lines.append(
            f"| {spec.model} | {cond} | {weight} | {other} {usage}| {100 * s.get(1, float('nan')):.1f} | "
            f"{100 * s.get(2, float('nan')):.1f} | {(rec.timings or {}).get('train_s', 0) / 60:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", default=str(HERE / "diffmvae_ablation.toml"))
    p.add_argument("--rows", nargs="*", default=DEFAULT_ROWS, help="model or model:conditioning:weighting")
    p.add_argument("--out", default=str(HERE / "out"))
    p.add_argument("--table-only", action="store_true", help="print the table of the finished rows, train nothing")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    data = out / "data" / "polymnist3"
    if not (data / "manifest.json").is_file():
        build_polymnist(data, 3, seed=0)
    sweep = load_sweep(Path(args.sweep), [f'dataset.root="{data}"'], None, out / "runs")
    sweep.runs_dir.mkdir(parents=True, exist_ok=True)  # a fresh --out: no run yet, an empty table
    for row in [] if args.table_only else args.rows:
        spec = row_spec(sweep, row)
        if finished_record(load_records(sweep.runs_dir), spec) is not None:
            continue
        submit(dataclasses.replace(sweep, specs=[spec]))
        text = table(sweep, args.rows)
        (out / "diffmvae_ablation.md").write_text(text + "\n")
        print(text, flush=True)
    print(table(sweep, args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
