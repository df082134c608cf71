"""The pretrained text VAE (a BERT encoder and a GPT-2 decoder from a local folder): paired tokenisation, the
teacher-forced likelihood, greedy generation, Optimus's heads, CUB's text_vae option and the refusals."""

import shutil

import pytest
import torch
from test_cub import make_cub
from text_vae_fixture import make_text_vae

from mmbench.data.cub import CUB
from mmbench.errors import MMBenchError
from mmbench.modality import Modality
from mmbench.nets import networks_for
from mmbench.nets.pretrained_text import PretrainedTextDecoder, PretrainedTextEncoder
from mmbench.textvae import decoder_ids_to_text, encode_pairs, text_to_encoder_ids, tokenizers

pytest.importorskip("transformers")

CAPTIONS = [
    "a red bird with a short beak.",
    "this blue bird has long wings.",
    "a small green bird sits.",
    " ".join(["bird"] * 40),
]
LATENT = 16


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    return str(make_text_vae(tmp_path_factory.mktemp("textvae") / "vae", CAPTIONS * 3, optimus_latent=LATENT))


def test_pairs_hold_both_tokenisations_and_decode_back(vae):
    tok = tokenizers(vae)
    pairs = encode_pairs(CAPTIONS, vae, 32)
    assert pairs.shape == (4, 2, 32) and pairs.dtype == torch.long
    assert (
        pairs[:, 0].tolist() == tok.encoder(CAPTIONS, max_length=32, truncation=True, padding="max_length")["input_ids"]
    )
    for row, caption in zip(pairs[:3, 1].tolist(), CAPTIONS):
        ids = tok.decoder(caption, add_special_tokens=False)["input_ids"]
        assert row[: len(ids) + 1] == [*ids, tok.decoder_eos] and set(row[len(ids) + 1 :]) == {tok.decoder_pad}
    assert pairs[3, 1, -1].item() == tok.decoder_eos  # truncated to 31 tokens, then end-of-sequence
    assert decoder_ids_to_text(pairs[:3], vae) == CAPTIONS[:3]
    assert decoder_ids_to_text(pairs[:3, 1], vae) == CAPTIONS[:3]


def test_log_prob_is_the_autoregressive_chain(vae):
    """Teacher forcing in one pass equals scoring token by token from the prefix, stopping after the first eos."""
    torch.manual_seed(0)
    dec = PretrainedTextDecoder(vae, LATENT, 32).eval()
    pairs = encode_pairs(CAPTIONS[:3], vae, 32)
    z = torch.randn(3, LATENT)
    with torch.no_grad():
        fast = dec.log_prob(pairs, z)
        for row in range(3):
            target = pairs[row : row + 1, 1]
            total, i = 0.0, 0
            while True:
                logits = dec.logits(z[row : row + 1], target[:, :i])[:, -1]
                total += torch.log_softmax(logits, -1)[0, target[0, i]].item()
                if target[0, i].item() == dec.eos:
                    break
                i += 1
            assert fast[row].item() == pytest.approx(total, abs=1e-4)
        assert not torch.allclose(dec.log_prob(pairs, z), dec.log_prob(pairs, z.flip(0)))  # z is read


def test_gradients_reach_both_networks_and_z(vae):
    enc, dec = PretrainedTextEncoder(vae, LATENT), PretrainedTextDecoder(vae, LATENT, 32)
    pairs = encode_pairs(CAPTIONS, vae, 32)
    q = enc(pairs)
    assert q.mu.shape == (4, LATENT) and q.logvar.shape == (4, LATENT)
    dec.log_prob(pairs, q.mu).sum().backward()
    assert enc.body.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert dec.body.get_input_embeddings().weight.grad.abs().sum() > 0
    assert dec.prefix.weight.grad.abs().sum() > 0 and dec.inject.weight.grad.abs().sum() > 0


def test_generation_gives_pairs_like_the_data(vae):
    torch.manual_seed(0)
    dec = PretrainedTextDecoder(vae, LATENT, 32).eval()
    out = dec.generate(torch.randn(3, LATENT))
    assert out.shape == (3, 2, 32) and out.dtype == torch.long
    texts = decoder_ids_to_text(out, vae)
    assert out[:, 0].tolist() == text_to_encoder_ids(texts, vae, 32).tolist()


def test_optimus_heads_are_loaded_when_sized_to_the_latent(vae, tmp_path):
    from safetensors.torch import load_file

    enc, dec = PretrainedTextEncoder(vae, LATENT), PretrainedTextDecoder(vae, LATENT, 32)
    saved_enc, saved_dec = load_file(f"{vae}/encoder/model.safetensors"), load_file(f"{vae}/decoder/model.safetensors")
    assert enc.loaded_head and torch.equal(enc.head.weight.detach(), saved_enc["linear.weight"])
    assert torch.equal(enc.head.bias.detach(), saved_enc["linear.bias"])
    assert dec.loaded_injection and torch.equal(dec.inject.weight.detach(), saved_dec["transformer.linear_emb.weight"])
    other = PretrainedTextEncoder(vae, 2 * LATENT)  # another latent size: a fresh head
    assert not other.loaded_head and other.head.weight.shape == (4 * LATENT, 32)


def test_cub_with_a_text_vae(vae, tmp_path):
    root = make_cub(tmp_path / "cub")
    d = CUB.load(root, "train", text_vae=vae)
    caption = d.modalities[1]
    assert d.x["caption"].shape == (3, 2, 32) and caption.shape == (2, 32)
    assert caption.pretrained and caption.classes == tokenizers(vae).decoder_vocabulary
    lines = (root / "text_trainvalclasses.txt").read_text().splitlines()[::10]
    short = [i for i, line in enumerate(lines) if len(tokenizers(vae).decoder(line)["input_ids"]) < 31]
    assert short and [d.decode_text(d.x["caption"])[i] for i in short] == [lines[i] for i in short]
    assert networks_for(caption).name == "pretrained text VAE"
    assert Modality.from_dict(caption.to_dict()) == caption
    assert d.caption_lengths().tolist() == [
        min(31, len(tokenizers(vae).decoder(line)["input_ids"])) + 1 for line in lines
    ]


def test_refusals_name_the_missing_file(vae, tmp_path):
    root = make_cub(tmp_path / "cub")
    with pytest.raises(MMBenchError, match="text VAE folder .*nowhere does not exist; save a BERT"):
        CUB.check_options(root, text_vae=str(tmp_path / "nowhere"))
    broken = tmp_path / "broken"
    shutil.copytree(vae, broken)
    (broken / "decoder" / "model.safetensors").unlink()
    with pytest.raises(MMBenchError, match=r"text VAE decoder .*broken/decoder has no weights"):
        CUB.load(root, "train", text_vae=str(broken))
    (broken / "encoder" / "config.json").unlink()
    with pytest.raises(MMBenchError, match=r"text VAE encoder .*broken/encoder/config.json is missing"):
        CUB.check_options(root, text_vae=str(broken))
    with pytest.raises(MMBenchError, match="pretrained networks are for text modalities"):
        Modality("image", (3, 8, 8), "image", pretrained=vae)
