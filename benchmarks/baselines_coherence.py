"""Train every model of a benchmark sweep for one fixed CPU budget on the offline PolyMNIST; print a coherence table.

    python benchmarks/baselines_coherence.py [--sweep FILE] [--models mopoe mvtcae] [--out benchmarks/out]

Runs the sweep (default benchmarks/baselines_polymnist.toml; benchmarks/diffmvae_polymnist.toml puts
Diff-MVAE and Diff-MVAE* beside MoPoE; finished runs are reused), then prints, per model,
conditional coherence by number of observed modalities, unconditional coherence and training wall time,
with the papers' numbers (results/published.csv) on the line below each model.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pandas as pd

from mmbench.data.polymnist_build import build_polymnist
from mmbench.report.frames import read_published, records_frame, summary_frame
from mmbench.resources import published_csv
from mmbench.storage.records import load_records
from mmbench.sweeps.files import load_sweep
from mmbench.sweeps.submission import submit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", default=str(HERE / "baselines_polymnist.toml"), help="benchmark sweep file")
    p.add_argument("--models", nargs="*", help="subset of the sweep's models (default all)")
    p.add_argument("--out", default=str(HERE / "out"), help="data and runs folder (default benchmarks/out)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    data = out / "data" / "polymnist"
    if not (data / "manifest.json").is_file():
        build_polymnist(data, 5, seed=0)
    sweep = load_sweep(Path(args.sweep), [f'dataset.root="{data}"'], None, out / "runs")
    sweep.runs_dir.mkdir(parents=True, exist_ok=True)  # a fresh --out whose runs all fail early still has a table
    if args.models:
        sweep = dataclasses.replace(sweep, specs=[s for s in sweep.specs if s.model in args.models])
    submit(sweep)
    wanted = {s.run_id for s in sweep.specs}
    records = [r for r in load_records(sweep.runs_dir) if r.run_id in wanted]
    df = records_frame(records)
    s = summary_frame(df)
    published = read_published(published_csv())
    rows = []
    for rec in records:
        model = rec.model
        mine = s[s.model == model].set_index("n_given")["mean"]
        train_s = (rec.timings or {}).get("train_s", 0)
        row = {
            "model": model,
            "source": "mmbench (CPU budget)",
            "M": rec.n_modalities,
            "train_s": round(train_s),
            "s/step": f"{train_s / max((rec.train or {}).get('steps', 0), 1):.3f}",
            "eval_s": round((rec.timings or {}).get("eval_s", 0)),
        }
        row.update({f"{n} given": f"{100 * mine.get(n, float('nan')):.1f}" for n in range(1, rec.n_modalities or 0)})
        row["uncond."] = f"{100 * mine.get(0, float('nan')):.1f}"
        rows.append(row)
        paper = published[(published.model == model) & (published.metric == "coherence")]
        if not paper.empty and rec.n_modalities == 5:  # the papers' PolyMNIST has five modalities
            prow = {"model": model, "source": "paper: " + paper.source.iloc[0]}
            prow.update({f"{int(r.n_given)} given": f"{r.value:.1f}" for r in paper.itertuples()})
            rows.append(prow)
    print(pd.DataFrame(rows).astype(object).fillna("").to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
