"""Fit a registered prior over z on a finished run's encoder and compare it with N(0, I) (Table 4's ablation).

The prior is fitted on posterior means of the full set over the training split and saved beside the run
(``prior-<kind>.pt``). The run's record gains rows, per prior ("gaussian" is p(z) = N(0, I)):
``latent_frechet@prior:<kind>`` (Fréchet distance between Gaussian fits of prior samples and the test
split's encoder latents), ``latent_mean_error@prior:<kind>`` (distance between their means) and
``latent_cov_error@prior:<kind>`` (relative Frobenius distance between their covariances) and, when the run evaluated coherence, ``coherence@prior:<kind>`` (unconditional
coherence of ``model.generate(n, z=prior.sample(n))``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from mmbench.config import build_config
from mmbench.device import resolve_device
from mmbench.latents import encoder_latents, gaussian_fit_distance, moment_errors
from mmbench.metrics.base import MetricRow
from mmbench.metrics.classifier import classifiers_for
from mmbench.metrics.coherence import unconditional_coherence
from mmbench.registry import PRIORS
from mmbench.results import RECORD, read_record, write_record
from mmbench.run import load_split, load_trained_run


def fit_prior(run_dir: Path, kind: str = "score", overrides: dict | None = None, *, device: str = "auto",
              progress: bool = True, log=print) -> list[MetricRow]:
    """Fit, save and compare the prior on ``device`` (auto | cpu | cuda | cuda:N); the rows added to the record."""
    run_dir = Path(run_dir)
    cls = PRIORS.get(kind)
    config = build_config(cls.Config, overrides or {})
    where = resolve_device(device)
    model, spec = load_trained_run(run_dir, "fitting a prior on its encoder", where)
    train, test = load_split(spec, "train").to(where), load_split(spec, "test").to(where)
    prior = cls(model.latent_dim, config)
    log(f"fitting the {kind} prior on {len(train)} encoder latents of run {run_dir.name}")
    prior.fit(encoder_latents(model, train), seed=spec.seed, progress=progress)
    prior.save(run_dir / f"prior-{kind}.pt")

    target = encoder_latents(model, test)
    g = torch.Generator().manual_seed(spec.seed)
    n = len(target)
    samples = {kind: prior.sample(n, generator=g), "gaussian": model.prior(n).rsample(generator=g)}
    rows = []
    for name, z in samples.items():
        mean_err, cov_err = moment_errors(z, target)
        rows += [MetricRow(f"latent_frechet@prior:{name}", "*", "", 0, gaussian_fit_distance(z, target)),
                 MetricRow(f"latent_mean_error@prior:{name}", "*", "", 0, mean_err),
                 MetricRow(f"latent_cov_error@prior:{name}", "*", "", 0, cov_err)]
    if "coherence" in spec.metrics:
        epochs = spec.metric_options.get("coherence", {}).get("classifier_epochs", 20)
        classifiers, _ = classifiers_for(train, test, run_dir.parent / ".cache" / "classifiers", epochs=epochs,
                                         progress=progress, log=log, device=where)
        for name, z in samples.items():
            row = unconditional_coherence(model, classifiers, n_samples=n, z=z, generator=g)
            rows.append(dataclasses.replace(row, metric=f"coherence@prior:{name}"))
    record = read_record(run_dir / RECORD)
    names = {r.metric for r in rows}
    record["metrics"] = [m for m in record["metrics"] if m["metric"] not in names] + [r.to_dict() for r in rows]
    write_record(run_dir, record)
    return rows
