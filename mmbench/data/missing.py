"""Masks of missing modalities from a run's dataset options, for every adapter (applied after its ``load``).

Dataset options (in ``[dataset]``, a ``[grid]`` axis ``"dataset.missing_rate"``, or ``--set dataset.X=...``):

    missing_rate  a float in [0, 1), or a table {modality: rate}: each tuple of the training split drops each
                  modality with that probability (0: complete, the default). Rule for a tuple that would drop
                  every modality it has: it keeps one of them, chosen uniformly, so a modality's realised missing
                  fraction is r - r^M / M at one rate r over M modalities (a little under r).
    missing_seed  the draw's seed (int, default 0). The masks are drawn once per split from (seed, split name)
                  with numpy's PCG64, independent of the run's seed, so runs of different models share them.
    missing       a mask file "FILE" for the training split, or a table {split: "FILE"}: masks of real
                  incomplete data (format below). Give it or missing_rate, not both.
    missing_eval  true: missing_rate draws masks for the test and validation splits too (each its own draw);
                  false (default): they stay complete, so metrics compare across missing rates.

A mask file is CSV or JSON (by its suffix), one row per tuple of the split in the adapter's order, one column per
modality named as the dataset names it (``mmbench show dataset NAME``; an absent column is observed everywhere),
values 1/0 or true/false (1 = observed):

    image,caption           {"image": [1, 1, 0], "caption": [1, 0, 1]}
    1,1                     or  [{"image": 1, "caption": 1}, {"image": 1, "caption": 0}, ...]
    1,0

A file with another number of rows, a column naming no modality, a value other than those, or a row missing
every modality is refused in one line naming the file. An adapter's own masks (``allow_missing``: tuples whose
files lack a modality) are combined with these: a tuple observes a modality when both say so.
"""

from __future__ import annotations

import csv
import io
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from mmbench.data.base import MultimodalDataset
from mmbench.errors import MMBenchError
from mmbench.storage.atomic import atomic_write_bytes
from mmbench.storage.validate import is_number

OPTIONS = ("missing_rate", "missing_seed", "missing", "missing_eval")
MASK_FILE = "missing_mask.npz"  # beside a run: the masks it trained (and evaluated) on, {"split.modality": bool}
TRUE, FALSE = ("1", "true", "True", "TRUE"), ("0", "false", "False", "FALSE")


@dataclass(frozen=True)
class MissingOptions:
    """The validated missing-data options of a run (see the module's docstring)."""

    rate: float | dict[str, float] = 0.0
    seed: int = 0
    files: dict[str, str] = field(default_factory=dict)
    eval: bool = False

    @property
    def active(self) -> bool:
        """Whether the options ask for masks at all."""
        rates = self.rate.values() if isinstance(self.rate, dict) else [self.rate]
        return bool(self.files) or any(r > 0 for r in rates)

    def splits(self, split: str) -> bool:
        """Whether ``split`` gets masks from these options."""
        if self.files:
            return split in self.files
        return self.active and (split == "train" or self.eval)

    def normalized(self) -> dict:
        """The options as the run's identity holds them: none when inactive, else only those not at default."""
        if not self.active:
            return {}
        out: dict[str, Any] = {}
        if self.files:
            out["missing"] = self.files["train"] if list(self.files) == ["train"] else dict(self.files)
        else:
            out["missing_rate"] = self.rate
            if self.eval:
                out["missing_eval"] = True
        if self.seed and not self.files:
            out["missing_seed"] = self.seed
        return out


def split_options(options: Mapping[str, Any]) -> tuple[dict, dict]:
    """(the adapter's options, the missing-data options) of a run's dataset options."""
    adapter = {k: v for k, v in options.items() if k not in OPTIONS}
    return adapter, {k: v for k, v in options.items() if k in OPTIONS}


def parse_options(options: Mapping[str, Any], where: str = "dataset") -> MissingOptions:
    """The missing-data options among ``options`` (others ignored), checked; one-line MMBenchError otherwise."""
    _, given = split_options(options)
    rate = given.get("missing_rate", 0.0)
    if isinstance(rate, Mapping):
        rate = {str(k): _rate(v, f"{where} option missing_rate.{k}") for k, v in rate.items()}
    else:
        rate = _rate(rate, f"{where} option missing_rate")
    seed = given.get("missing_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise MMBenchError(f"{where} option missing_seed must be an integer, got {seed!r}")
    files = given.get("missing", "")
    if isinstance(files, (str, Path)):
        files = {"train": str(files)} if str(files) else {}
    elif isinstance(files, Mapping):
        for k, v in files.items():
            if not isinstance(v, (str, Path)) or not str(v):
                raise MMBenchError(f"{where} option missing.{k} must be a mask file's path, got {v!r}")
        files = {str(k): str(v) for k, v in files.items()}
    else:
        raise MMBenchError(
            f'{where} option missing must be a mask file ("FILE") or a table {{split: FILE}}, got {files!r}'
        )
    files = {k: str(Path(v).expanduser().resolve()) for k, v in sorted(files.items())}
    evaluate = given.get("missing_eval", False)
    if not isinstance(evaluate, bool):
        raise MMBenchError(f"{where} option missing_eval must be true or false, got {evaluate!r}")
    opts = MissingOptions(rate, seed, files, evaluate)
    if files and MissingOptions(rate).active:
        raise MMBenchError(f"{where}: give missing_rate or a mask file (missing), not both")
    return opts


def _rate(value: Any, what: str) -> float:
    if not is_number(value) or not 0 <= float(value) < 1:
        raise MMBenchError(f"{what} must be a number in [0, 1) (the probability a modality is dropped), got {value!r}")
    return float(value)


def resolve_paths(options: Mapping[str, Any]) -> dict:
    """``options`` with the mask files of ``missing`` as absolute paths (taken from the current folder); one line
    when one names no possible path (an unknown ``~user``, a NUL character)."""

    def absolute(value: str) -> str:
        try:
            return str(Path(value).expanduser().resolve())
        except (RuntimeError, ValueError, OSError) as exc:
            raise MMBenchError(f"dataset option missing = {value!r} is not a usable path ({exc})") from None

    out = dict(options)
    files = out.get("missing")
    if isinstance(files, (str, Path)) and str(files):
        out["missing"] = absolute(str(files))
    elif isinstance(files, Mapping):
        out["missing"] = {k: absolute(v) if isinstance(v, str) else v for k, v in files.items()}
    return out


def normalized_options(options: Mapping[str, Any]) -> dict:
    """A run's dataset options with the missing-data ones in their normalised form (``MissingOptions.normalized``;
    unchecked values are kept as given, for ``validate``'s refusal)."""
    adapter, _ = split_options(options)
    try:
        return {**adapter, **parse_options(options).normalized()}
    except MMBenchError:
        return dict(options)


def apply_missing(data: MultimodalDataset, split: str, opts: MissingOptions, where: str) -> MultimodalDataset:
    """``data`` (one split, as its adapter loaded it) with the masks ``opts`` give for ``split``."""
    if not opts.splits(split):
        return data
    if split in opts.files:
        mask = read_mask_file(opts.files[split], data.modality_names, len(data))
    else:
        mask = draw_masks(data, opts, split, where)
    return data.with_mask(mask)


def draw_masks(data: MultimodalDataset, opts: MissingOptions, split: str, where: str) -> dict[str, torch.Tensor]:
    """Masks drawn from ``opts.rate`` for ``data``'s rows: each (row, modality) dropped with the modality's rate
    among what the row observes already, then a row left with nothing keeps one of its modalities, uniformly."""
    names = data.modality_names
    if isinstance(opts.rate, dict):
        unknown = sorted(set(opts.rate) - set(names))
        if unknown:
            raise MMBenchError(
                f"{where} option missing_rate names modality {unknown[0]!r}, which the dataset does not hold ({names})"
            )
        rates = np.array([opts.rate.get(m, 0.0) for m in names])
    else:
        rates = np.full(len(names), opts.rate)
    n = len(data)
    have = np.ones((n, len(names)), dtype=bool)
    if data.mask is not None:
        for j, m in enumerate(names):
            if m in data.mask:
                have[:, j] = data.mask[m].cpu().numpy()
    rng = np.random.default_rng([opts.seed, zlib.crc32(split.encode())])
    observed = have & ~(rng.random((n, len(names))) < rates)
    pick = rng.random(n)
    for i in np.flatnonzero(~observed.any(1)):
        choices = np.flatnonzero(have[i])
        observed[i, choices[int(pick[i] * len(choices))]] = True
    return {m: torch.from_numpy(observed[:, j].copy()) for j, m in enumerate(names)}


def read_mask_file(path: str | Path, names: list[str], n: int) -> dict[str, torch.Tensor]:
    """The masks a user's CSV or JSON file gives (module docstring); one-line MMBenchError naming it otherwise."""
    path = Path(path)
    where = f"mask file {path}"
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise MMBenchError(f"{where} is not a readable text file ({type(exc).__name__})") from None
    if path.suffix.lower() == ".json":
        columns = _json_columns(text, where)
    elif path.suffix.lower() == ".csv":
        columns = _csv_columns(text, where)
    else:
        raise MMBenchError(f"{where}: a mask file must be .csv or .json, got {path.suffix or 'no suffix'!r}")
    unknown = [k for k in columns if k not in names]
    if unknown:
        raise MMBenchError(f"{where} names modality {unknown[0]!r}, which the dataset does not hold ({names})")
    for k, values in columns.items():
        if len(values) != n:
            raise MMBenchError(f"{where} has {len(values)} rows for modality {k!r}, but the split has {n} tuples")
    mask = {k: torch.tensor(v, dtype=torch.bool) for k, v in columns.items()}
    if len(mask) == len(names) and n:
        none = ~torch.stack(list(mask.values())).any(0)
        if bool(none.any()):
            raise MMBenchError(
                f"{where}: row {int(none.nonzero()[0]) + 1} (and {int(none.sum()) - 1} more) has every modality "
                "missing; every tuple must observe at least one"
            )
    return mask


def _value(v: Any, where: str, row: int, column: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip() in TRUE + FALSE:
        return v.strip() in TRUE
    raise MMBenchError(f"{where}: row {row}, column {column!r} is {v!r}; a mask value is 1/0 or true/false")


def _csv_columns(text: str, where: str) -> dict[str, list[bool]]:
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if not rows:
        raise MMBenchError(f"{where} is empty; its first line names the modalities (e.g. image,caption)")
    header = [h.strip() for h in rows[0]]
    columns: dict[str, list[bool]] = {h: [] for h in header}
    for i, row in enumerate(rows[1:], start=1):
        if len(row) != len(header):
            raise MMBenchError(f"{where}: row {i} has {len(row)} values for the {len(header)} columns {header}")
        for h, v in zip(header, row):
            columns[h].append(_value(v, where, i, h))
    return columns


def _json_columns(text: str, where: str) -> dict[str, list[bool]]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise MMBenchError(f"{where} is not valid JSON ({exc})") from None
    if isinstance(doc, dict) and all(isinstance(v, list) for v in doc.values()):
        return {str(k): [_value(v, where, i + 1, k) for i, v in enumerate(vs)] for k, vs in doc.items()}
    if isinstance(doc, list) and all(isinstance(r, dict) for r in doc):
        keys = list(dict.fromkeys(k for r in doc for k in r))
        columns: dict[str, list[bool]] = {k: [] for k in keys}
        for i, r in enumerate(doc, start=1):
            for k in keys:
                if k not in r:
                    raise MMBenchError(f"{where}: row {i} has no value for modality {k!r}")
                columns[k].append(_value(r[k], where, i, k))
        return columns
    raise MMBenchError(f"{where} must hold {{modality: [1/0, ...]}} or a list of {{modality: 1/0}} rows")


def mask_arrays(masks: Mapping[str, dict[str, torch.Tensor] | None]) -> dict[str, np.ndarray]:
    """{"split.modality": bool array} of every split's masks (splits without one left out)."""
    return {f"{s}.{m}": v.cpu().numpy() for s, mask in masks.items() if mask for m, v in sorted(mask.items())}


def save_or_check_masks(run_dir: Path, masks: Mapping[str, dict[str, torch.Tensor] | None]) -> None:
    """Write the run's masks to RUN/missing_mask.npz (atomically) or, when a resumed run has it, check that they
    are what it holds: a run trains on one set of masks. Nothing is written for complete data."""
    path = Path(run_dir) / MASK_FILE
    arrays = mask_arrays(masks)
    if path.exists():
        try:
            with np.load(path) as f:
                saved = {k: f[k] for k in f.files}
        except (OSError, ValueError) as exc:
            raise MMBenchError(f"{path} is not a readable mask file ({type(exc).__name__}); move it away") from None
        same = saved.keys() == arrays.keys() and all(np.array_equal(saved[k], arrays[k]) for k in arrays)
        if not same:
            raise MMBenchError(
                f"{path} holds other masks than the run's options and data give now (the mask file or the data "
                "changed since the run started); restore them, or move the run folder away to start over"
            )
        return
    if arrays:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())


def load_masks(run_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """{split: {modality: bool array}} a run saved ({} for a run on complete data)."""
    path = Path(run_dir) / MASK_FILE
    if not path.exists():
        return {}
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as f:
        for k in f.files:
            split, m = k.split(".", 1)
            out.setdefault(split, {})[m] = f[k]
    return out
