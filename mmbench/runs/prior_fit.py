"""Fit a registered prior over z on a finished run's encoder and compare it with the model's own prior
(Table 4's ablation of the Diff-MVAE paper).

The prior is fitted on posterior means of the full set over the training split and saved beside the run
(``prior-<kind>.pt``). It is then compared with the aggregate posterior of the test split, latents *sampled*
from q(z | x) for every test tuple (posterior means alone would favour a prior fitted on means). Rows, per
prior (``prior`` = "gaussian" for the model's own p(z), N(0, I) or MMVAE+'s Laplace, or the fitted kind): ``latent_frechet`` (Fréchet distance between
Gaussian fits), ``latent_mean_error`` (distance between means) and ``latent_cov_error`` (relative Frobenius
distance between covariances); then, for the run's coherence and FID metrics, their unconditional rows with
z from each prior (``mmbench eval RUN --prior KIND --unconditional-only``), which is Table 4.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch

from mmbench.config import build_config
from mmbench.device import resolve_device
from mmbench.metrics.base import MetricRow
from mmbench.registry import PRIORS
from mmbench.runs.evaluate import evaluate_loaded, metrics_for
from mmbench.runs.execute import load_eval_train, load_run_split, load_trained_run, read_run_record
from mmbench.runs.latents import encoder_latents, gaussian_fit_distance, moment_errors
from mmbench.runs.spec import SPEC
from mmbench.storage.records import RECORD, load_record, write_record

TABLE4_METRICS = ("coherence", "fid")


logger = logging.getLogger(__name__)


def fit_prior(
    run_dir: Path,
    kind: str = "score",
    overrides: dict | None = None,
    *,
    device: str = "auto",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[MetricRow]:
    """Fit, save and compare the prior on ``device`` (auto | cpu | cuda | cuda:N); the rows added to the record."""
    log = log or logger.info
    run_dir = Path(run_dir)
    cls = PRIORS.get(kind)
    config = build_config(cls.Config, overrides or {})
    where = resolve_device(device)
    model, spec = load_trained_run(run_dir, "fitting a prior on its encoder", where)
    read_run_record(run_dir, spec)  # a finished run of this spec: refused before the fit when it has no record
    table4 = (
        metrics_for(spec, [m for m in spec.metrics if m in TABLE4_METRICS])
        if any(m in TABLE4_METRICS for m in spec.metrics)
        else []
    )
    train = load_eval_train(spec, model, run_dir / SPEC).to(where)
    test = load_run_split(spec, model, "test", run_dir / SPEC).to(where)
    prior = cls(model.latent_dim, config)
    log(f"fitting the {kind} prior on {len(train)} encoder latents of run {run_dir.name}")
    prior.fit(encoder_latents(model, train), seed=spec.seed, progress=progress)
    prior.save(run_dir / f"prior-{kind}.pt")

    g = torch.Generator().manual_seed(spec.seed)
    target = encoder_latents(model, test, sample=True, generator=g)  # the aggregate posterior
    n = len(target)
    samples = {kind: prior.sample(n, generator=g), "gaussian": model.sample_prior(n, generator=g)}
    rows = []
    for name, z in samples.items():
        mean_err, cov_err = moment_errors(z, target)
        rows += [
            MetricRow("latent_frechet", "*", "", 0, gaussian_fit_distance(z, target), n, name),
            MetricRow("latent_mean_error", "*", "", 0, mean_err, n, name),
            MetricRow("latent_cov_error", "*", "", 0, cov_err, n, name),
        ]
    write_record(run_dir, load_record(run_dir / RECORD).with_rows(rows))
    if table4:  # the same model and splits, no second load
        rows += evaluate_loaded(
            run_dir,
            model,
            spec,
            train,
            test,
            table4,
            priors=[kind],
            device=where,
            unconditional_only=True,
            progress=progress,
            log=log,
        )
    return rows
