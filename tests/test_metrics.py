"""Metrics on fixed tensors and tiny models: the Fréchet distance against pytorch-fid and closed forms, the FID
weights' loading and refusals, FID rows, coherence by hand count, F1 against scikit-learn, the linear probe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import tiny_dataset
from sklearn.metrics import f1_score

from mmbench.config import build_config
from mmbench.errors import MMBenchError
from mmbench.metrics.base import EvalContext, MetricRow
from mmbench.metrics.frechet import frechet_distance, gaussian_statistics
from mmbench.registry import MODELS


def test_frechet_distance_agrees_with_pytorch_fid_and_the_closed_form():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 16)), rng.normal(0.3, 1.5, size=(400, 16)) @ rng.normal(size=(16, 16))
    (m1, s1), (m2, s2) = gaussian_statistics(a), gaussian_statistics(b)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(calculate_frechet_distance(m1, s1, m2, s2), abs=1e-6)
    # two diagonal Gaussians: |mu1 - mu2|^2 + sum(v1 + v2 - 2 sqrt(v1 v2))
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 1.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1 + 4 + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, abs=1e-9)
    assert abs(frechet_distance(m1, s1, m1, s1)) < 1e-6  # a set against itself


@pytest.fixture(scope="module")
def test_weights(tmp_path_factory):
    """A state dict of the FID Inception's architecture written by the test itself: its values are the
    untrained initialisation and mean nothing; it exercises the loading path, not the numbers."""
    from mmbench.metrics.inception import build_fid_inception

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fidw") / "test-inception-random-values.pth"
    torch.save(build_fid_inception().state_dict(), path)
    return path


def test_fid_weights_are_found_or_refused_by_name(test_weights, tmp_path, monkeypatch):
    from mmbench.metrics.inception import STANDARD_NAME, InceptionFeatures, find_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("MMBENCH_FID_WEIGHTS", raising=False)
    with pytest.raises(MMBenchError, match=f"FID needs the Inception weights {STANDARD_NAME}.*download it from"):
        find_weights()
    monkeypatch.setenv("MMBENCH_FID_WEIGHTS", str(test_weights))
    found = find_weights()
    assert found.path == test_weights and not found.standard
    with pytest.raises(MMBenchError, match="FID weights .*nowhere.pth do not exist"):
        find_weights(tmp_path / "nowhere.pth")
    fake_standard = tmp_path / "torch-home" / "hub" / "checkpoints" / STANDARD_NAME
    fake_standard.parent.mkdir(parents=True)
    fake_standard.write_bytes(test_weights.read_bytes())
    monkeypatch.delenv("MMBENCH_FID_WEIGHTS")
    with pytest.raises(MMBenchError, match="have the standard name but not its digest"):
        find_weights()
    other = tmp_path / "classifier.pth"
    torch.save({"net.0.weight": torch.zeros(3)}, other)
    with pytest.raises(MMBenchError, match=r"classifier.pth are not the FID Inception's state dict"):
        InceptionFeatures(find_weights(other), 64)
    features = InceptionFeatures(find_weights(test_weights), 64)
    grey = features(torch.rand(2, 1, 28, 28))
    assert grey.shape == (2, 64) and torch.isfinite(grey).all()


def _trained_tiny(name="mopoe"):
    data = tiny_dataset(96)
    cls = MODELS.get(name)
    torch.manual_seed(0)
    model = cls(data.modalities, build_config(cls.Config, {"latent_dim": 8})).eval()
    return model, data


@pytest.mark.slow
def test_fid_rows_carry_their_sample_counts_and_priors(test_weights, tmp_path):
    from mmbench.metrics.fid import FIDMetric

    model, data = _trained_tiny()
    ctx = EvalContext(
        data,
        data.head(80),
        tmp_path / "cache",
        progress=False,
        priors={"gaussian": None, "shifted": lambda n, g: torch.randn(n, 8, generator=g) + 3},
    )
    metric = FIDMetric(n_samples=64, dims=64, batch_size=32, weights=str(test_weights), max_subsets=1)
    rows = metric(model, ctx)
    uncond = [r for r in rows if r.n_given == 0]
    assert {(r.target, r.prior) for r in uncond} == {
        (m, p) for m in ["m0", "m1", "m2", "*"] for p in ["gaussian", "shifted"]
    }
    assert all(r.n_samples == 64 and r.value > 0 for r in rows)
    cond = [r for r in rows if r.n_given == 1 and r.given not in ("*",)]
    assert len(cond) == 2  # one sampled subset of size 1, generating the two other modalities
    assert {r.n_given for r in rows if r.target == "*" and r.given == "*"} == {1, 2}
    assert list((tmp_path / "cache" / "fid").glob("*.npz"))  # real statistics cached
    assert metric.provenance["standard_weights"] is False
    with pytest.raises(MMBenchError, match="n_samples = 100 is more than the 80 of the test split"):
        FIDMetric(n_samples=100, dims=64, weights=str(test_weights))(model, ctx)
    with pytest.raises(MMBenchError, match="n_samples = 1000 is below the feature size 2048"):
        FIDMetric(n_samples=1000, weights=str(test_weights))


class _EchoModel(torch.nn.Module):
    """Generates, for every target, the given modality's own tensor: coherence is then the classifiers'."""

    modality_names = ["a", "b", "c"]

    def eval(self):
        return self

    def cond_generate(self, x, given, targets, generator=None):
        return {m: x[given[0]] for m in targets}


def test_conditional_coherence_equals_a_hand_count():
    from mmbench.data.base import MultimodalDataset
    from mmbench.metrics.coherence import conditional_coherence
    from mmbench.modality import Modality

    y = torch.tensor([0, 1, 2, 3, 4, 5])
    x = {m: torch.arange(6.0)[:, None] for m in "abc"}
    data = MultimodalDataset([Modality(m, (1,), "attributes", "bernoulli") for m in "abc"], x, y, "fixed")
    # classifier of a: right for every row; of b: right on rows 0-2; of c: right on row 0 only
    right = {"a": 6, "b": 3, "c": 1}
    clfs = {
        m: (
            lambda k: (
                lambda t: torch.nn.functional.one_hot(
                    torch.where(t[:, 0] < k, t[:, 0], torch.full_like(t[:, 0], 9)).long(), 10
                ).float()
            )
        )(right[m])
        for m in "abc"
    }
    rows = {(r.target, r.given): r.value for r in conditional_coherence(_EchoModel(), data, clfs, sizes=[1])}
    assert rows[("b", "a")] == pytest.approx(3 / 6) and rows[("c", "a")] == pytest.approx(1 / 6)
    assert rows[("a", "b")] == pytest.approx(6 / 6)
    subsets = [(3 / 6 + 1 / 6) / 2, (6 / 6 + 1 / 6) / 2, (6 / 6 + 3 / 6) / 2]
    assert rows[("*", "*")] == pytest.approx(sum(subsets) / 3)


def test_conditional_coherence_encodes_each_modality_once_per_batch():
    """P4: the 2^M - 2 subsets of one batch reuse one encoding per modality."""
    from mmbench.metrics.coherence import conditional_coherence

    data = tiny_dataset(n=12)
    cls = MODELS.get("mopoe")
    torch.manual_seed(0)
    model = cls(data.modalities, build_config(cls.Config, {"latent_dim": 4}))
    calls = {m: 0 for m in model.modality_names}
    for m, enc in model.parts.encoders.items():
        enc.register_forward_hook(lambda *_, m=m: calls.__setitem__(m, calls[m] + 1))
    clfs = {m: (lambda t: t.flatten(1)[:, :10]) for m in model.modality_names}
    rows = conditional_coherence(model, data, clfs, batch_size=6, generator=torch.Generator().manual_seed(1))
    assert calls == {m: 2 for m in model.modality_names}  # two batches, once each (not once per subset)
    assert len(rows) == 3 * 2 + 1 + 3 * 1 + 1 and all(0 <= r.value <= 1 for r in rows)
    with torch.no_grad():  # outside the evaluation, every call encodes again
        model.encode(data.batch(torch.arange(6))["x"], ["m0"])
    assert calls["m0"] == 3


def test_f1_equals_scikit_learn():
    from mmbench.metrics.f1 import binary_f1

    rng = np.random.default_rng(1)
    truth = rng.random((50, 18)) > 0.6
    prob = np.clip(truth + rng.normal(0, 0.5, truth.shape), 0, 1)
    assert binary_f1(truth, prob, "attributes") == pytest.approx(f1_score(truth, prob > 0.5, average="macro"))
    masks, mprob = rng.random((10, 1, 8, 8)) > 0.5, rng.random((10, 1, 8, 8))
    assert binary_f1(masks, mprob, "mask") == pytest.approx(f1_score(masks.ravel(), mprob.ravel() > 0.5))


def test_f1_refuses_datasets_without_binary_modalities(tmp_path):
    from mmbench.metrics.f1 import F1Metric

    model, data = _trained_tiny()
    with pytest.raises(MMBenchError, match="f1 needs an attributes or mask modality"):
        F1Metric()(model, EvalContext(data, data, tmp_path))


def test_the_linear_probe_separates_separable_clusters_and_is_at_chance_on_shuffled_labels():
    from mmbench.metrics.probe import probe_accuracy

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    z = rng.normal(size=(400, 5)) + 6 * y[:, None]
    assert probe_accuracy(z[:300], y[:300], z[300:], y[300:]) == 1.0
    shuffled = rng.permutation(y)
    assert abs(probe_accuracy(z[:300], shuffled[:300], z[300:], shuffled[300:]) - 0.5) < 0.15


def test_the_probe_metric_gives_a_row_per_subset_and_size(tmp_path):
    from mmbench.metrics.probe import LinearProbe

    model, data = _trained_tiny()
    rows = LinearProbe()(model, EvalContext(data, data, tmp_path, progress=False))
    assert len([r for r in rows if r.given != "*"]) == 7 and {r.n_given for r in rows} == {1, 2, 3}
    assert all(0.0 <= r.value <= 1.0 for r in rows) and all(isinstance(r, MetricRow) for r in rows)


class _FixedCLIP(torch.nn.Module):
    """Embeddings chosen by the test: image i -> e_i, text i -> a known vector, so the score is known."""

    def __init__(self, img, txt):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.visual = type("V", (), {"image_size": 8})()
        self.img, self.txt = img, txt

    def encode_image(self, x):
        return self.img[: len(x)]

    def encode_text(self, tokens):
        return self.txt[: len(tokens)]


def test_clip_score_is_100_times_the_mean_cosine_clipped_at_zero():
    from mmbench.metrics.clip_score import clip_score

    img = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, -1.0]])
    tokenizer = lambda texts: torch.zeros(len(texts), 3, dtype=torch.long)  # noqa: E731
    expected = 100 * (1.0 + np.sqrt(0.5) - 1.0) / 3
    assert clip_score(_FixedCLIP(img, txt), tokenizer, torch.rand(3, 3, 8, 8), ["a", "b", "c"]) == pytest.approx(
        expected
    )
    assert clip_score(_FixedCLIP(img, -txt), tokenizer, torch.rand(3, 3, 8, 8), ["a", "b", "c"]) == 0.0


def test_clip_checkpoints_load_from_a_local_file_or_are_refused(tmp_path, monkeypatch):
    """A tiny open_clip architecture registered by the test, its random initial weights saved by the test
    (they mean nothing): the loading path, the tokenizer shipped with open_clip, and a finite score."""
    open_clip = pytest.importorskip("open_clip")
    from mmbench.metrics.clip_score import CLIPScoreMetric, clip_score, load_clip

    monkeypatch.delenv("MMBENCH_CLIP_CHECKPOINT", raising=False)
    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / "mmbench-test-tiny.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "mmbench-test-tiny.json")
    torch.manual_seed(0)
    path = tmp_path / "tiny-random.pt"
    torch.save(open_clip.create_model("mmbench-test-tiny").state_dict(), path)
    with pytest.raises(MMBenchError, match="CLIP score needs a local open_clip checkpoint"):
        CLIPScoreMetric(model="mmbench-test-tiny")
    with pytest.raises(MMBenchError, match="CLIP checkpoint .*missing.pt does not exist"):
        load_clip("mmbench-test-tiny", tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"w": torch.zeros(2)}, other)
    with pytest.raises(MMBenchError, match="other.pt is not a mmbench-test-tiny checkpoint"):
        load_clip("mmbench-test-tiny", other)
    model, _, tokenizer = load_clip("mmbench-test-tiny", path)
    score = clip_score(model, tokenizer, torch.rand(4, 3, 64, 64), ["a red bird", "a small bird", "x", "y"])
    assert 0.0 <= score <= 100.0
    model_, data = _trained_tiny()
    with pytest.raises(MMBenchError, match="clip_score needs an image and a text"):
        CLIPScoreMetric(model="mmbench-test-tiny", checkpoint=str(path))(model_, EvalContext(data, data, tmp_path))
