"""Figures: conditional coherence against the number of observed modalities (PolyMNIST curves)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def plot_conditional(summary: pd.DataFrame, published: pd.DataFrame | None, out: Path) -> Path:
    """Coherence (%) vs observed modalities: one line per model (± std over seeds), paper numbers dashed."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    cond = summary[summary.n_given > 0]
    keys = ["model", "n_modalities", "beta"] + (["setting"] if "setting" in cond else [])
    for i, ((model, n_mod, beta, *_), g) in enumerate(cond.groupby(keys, dropna=False)):  # one line per experiment
        g = g.sort_values("n_given")
        color = f"C{i % 10}"
        label = f"{model} (M={n_mod:g}, β={beta:g})" if not pd.isna(beta) else model
        ax.errorbar(g.n_given, 100 * g["mean"], yerr=100 * g["std"], marker="o", capsize=3, color=color, label=label)
        if published is not None:
            p = published[(published.model == model) & (published.metric == "coherence") & (published.n_given > 0)]
            if not p.empty:
                p = p.sort_values("n_given")
                ax.plot(p.n_given, p.value, ls="--", marker="x", color=color, label=f"{model} (paper)")
    ax.axhline(10, color="grey", lw=0.8, ls=":", label="chance (10%)")
    ax.set_xlabel("observed modalities")
    ax.set_ylabel("conditional coherence (%)")
    ax.set_ylim(0, 100)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7)
    ax.set_title("PolyMNIST conditional coherence")
    return save_figure(fig, out, dpi=120)


def save_figure(fig, out: Path, *, dpi: int) -> Path:
    """Write a figure atomically (temporary file, then rename) and close it."""
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(out)
    return out
