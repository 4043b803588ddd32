"""Layer choice: encoders run only the layers they need, and a learned weighted sum of layers end to end."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, TINY_SPEECH
from mamer import EmotionRecognizer
from mamer.checkpoint import load_model
from mamer.cli import main
from mamer.config import load_config
from mamer.data.dataset import Targets
from mamer.encoders import registry
from mamer.encoders.base import LAYER_POOLINGS, stacked_layers
from mamer.encoders.choice import EncoderChoice
from mamer.model.tokens import AudioDownProjection, LayerMix, TextProjection
from mamer.workflows.training.loop import train

transformers = pytest.importorskip("transformers")

SPEECH = {**TINY_SPEECH, "num_hidden_layers": 4}


def wave(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.1 * np.sin(2 * np.pi * 180 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def save_wavlm(folder: Path, stable: bool) -> Path:
    """A 4-layer WavLM: `stable` = large-style (LayerNorm after the stack), else base-style (group norm)."""
    torch.manual_seed(0)
    config = transformers.WavLMConfig(
        **SPEECH, do_stable_layer_norm=stable, feat_extract_norm="layer" if stable else "group"
    )
    transformers.WavLMModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def wavlm(tmp_path_factory) -> dict[bool, Path]:
    return {stable: save_wavlm(tmp_path_factory.mktemp(f"wavlm{stable}"), stable) for stable in (False, True)}


def full_states(folder: Path, wave_: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Every hidden state of the whole model, input standardised as the feature extractor does."""
    model = transformers.AutoModel.from_pretrained(folder).eval()
    x = torch.from_numpy(wave_)
    x = (x - x.mean()) / torch.sqrt(x.var(correction=0) + 1e-7)
    with torch.inference_mode():
        return model(x[None], output_hidden_states=True).hidden_states


# ---------------------------------------------------------------- only the layers needed run


@pytest.mark.parametrize("stable", [False, True])
@pytest.mark.parametrize(("layers", "kept"), [([1], 1), ([0, 2], 2), ([0], 1), ([-1], 4)])
def test_speech_encoder_runs_only_the_layers_it_needs(wavlm, stable, layers, kept):
    """States above the deepest chosen one are not computed (one more layer before a final LayerNorm), and
    the kept states are those of the whole model."""
    encoder = registry.load_audio_encoder(str(wavlm[stable]), layers=layers)
    features = encoder.encode([wave(0.6, 0)])[0]
    assert len(encoder.model.encoder.layers) == min(kept + stable, 4)
    states = full_states(wavlm[stable], wave(0.6, 0))
    expected = torch.stack([states[i][0] for i in encoder.layers]).mean(0)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)


def test_text_encoder_runs_only_the_layers_it_needs(tiny_bert):
    encoder = registry.load_text_encoder(str(tiny_bert), layers=[1, 2])
    (features,) = encoder.encode(["I am so happy today!"])
    assert len(encoder.model.encoder.layer) == 2
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    full = transformers.AutoModel.from_pretrained(tiny_bert).eval()
    with torch.inference_mode():
        states = full(**tokenizer(["I am so happy today!"], return_tensors="pt"), output_hidden_states=True)
    expected = ((states.hidden_states[1] + states.hidden_states[2]) / 2)[0, 1:-1]  # without [CLS], [SEP]
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)


def test_whisper_stops_at_the_depth_asked():
    if not registry.installed("whisper-tiny.en"):
        pytest.skip("whisper-tiny.en weights are not installed")
    from mamer.encoders.whisper import whisper_hidden_states

    encoder = registry.load_audio_encoder("whisper-tiny.en", layers=[1, 4])
    mel = encoder.frontend(torch.from_numpy(wave(1.0, 1)))[None]
    with torch.inference_mode():
        full, _ = whisper_hidden_states(encoder.model, mel, torch.tensor([mel.shape[-1]]))
        cut, _ = whisper_hidden_states(encoder.model, mel, torch.tensor([mel.shape[-1]]), depth=2)
    assert len(full) == 5 and len(cut) == 3
    for a, b in zip(cut, full[:3], strict=True):  # no final LayerNorm on a cut stack's last state
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- stacked layers for a learned sum


def test_learned_pooling_keeps_every_state_side_by_side(wavlm, tiny_bert):
    folder = str(wavlm[True])
    stacked = registry.load_audio_encoder(folder, layer_pooling="learned")
    assert stacked.layers == [0, 1, 2, 3, 4] and stacked.dim == 5 * 32
    features = stacked.encode([wave(0.5, 2)])[0]
    singles = [registry.load_audio_encoder(folder, layers=i).encode([wave(0.5, 2)])[0] for i in range(5)]
    torch.testing.assert_close(features, torch.cat(singles, dim=-1), atol=1e-5, rtol=1e-5)
    spec, mean_spec = stacked.spec(), registry.load_audio_encoder(folder, layers=[0, 1, 2, 3, 4]).spec()
    assert spec["pooling"] == LAYER_POOLINGS["learned"] and spec != mean_spec  # another cache key
    assert stacked_layers(spec) == 5 and stacked_layers(mean_spec) == 1

    text = registry.load_text_encoder(str(tiny_bert), layers=[2, 3], layer_pooling="learned")
    assert text.dim == 48 and text.encode(["so calm"])[0].shape == (2, 48)
    with pytest.raises(ValueError, match="layer_pooling must be one of mean, learned"):
        registry.load_audio_encoder(folder, layer_pooling="sum")
    with pytest.raises(ValueError, match="no layers to choose or pool"):
        EncoderChoice("audio", "logmel", layer_pooling="learned").build()


def test_layer_mix_weighs_normalised_states():
    mix = LayerMix(3, 4)
    states = torch.randn(2, 5, 3, 4) * torch.tensor([1.0, 10.0, 100.0])[:, None]  # very different scales
    flat = states.flatten(-2)
    torch.testing.assert_close(mix.weights, torch.full((3,), 1 / 3))
    normalised = torch.nn.functional.layer_norm(states, (4,))
    torch.testing.assert_close(mix(flat), normalised.mean(-2))
    with torch.no_grad():
        mix.logits.copy_(torch.tensor([0.0, 30.0, 0.0]))
    torch.testing.assert_close(mix(flat), normalised[..., 1, :], atol=1e-5, rtol=1e-5)
    mix(flat).pow(2).sum().backward()
    assert mix.logits.grad is not None

    down = AudioDownProjection(12, 8, k=2, layers=3)
    tokens, valid = down(flat, torch.ones(2, 5, dtype=torch.bool))
    assert tokens.shape == (2, 3, 8) and valid.all()
    torch.testing.assert_close(down.target(flat), states.mean(-2))  # the MAE rebuilds the mean of the states
    assert TextProjection(12, 8).target(flat) is flat  # one state: the features themselves
    with pytest.raises(ValueError, match="do not split into 5 stacked layers"):
        TextProjection(12, 8, layers=5)


def test_learned_layer_sum_trains_saves_and_predicts(wavlm, tiny_bert, tiny_corpus, tmp_path, caplog):
    """CLI extraction of stacked layers, training (the mix weights move), a safetensors checkpoint with the
    weights, and a recognizer that rebuilds the same encoders from the recorded specs."""
    audio, text = str(wavlm[False]), str(tiny_bert)
    features = tmp_path / "features"
    args = ["extract", "--manifest", str(tiny_corpus), "--out", str(features), "--audio-encoder", audio,
            "--text-encoder", text, "--audio-layer-pooling", "learned", "--text-layers", "1,3",
            "--text-layer-pooling", "learned"]  # fmt: skip
    assert main(args) == 0
    assert main([*args[:-2], "--audio-layers", "2"]) == 0  # the mean of one layer: another store
    stores = sorted(
        p.name.split("-")[0] for p in features.iterdir() if p.name.startswith(("audio-", "text-"))
    )
    assert stores == ["audio", "audio", "text", "text"]

    config = load_config("quickstart", [f"data.manifest={tiny_corpus}", f"data.features={features}",
                                        f"run_dir={tmp_path / 'run'}", f"data.audio_encoder={audio}",
                                        f"data.text_encoder={text}", "data.audio_layer_pooling=learned",
                                        "data.text_layers=[1, 3]", "data.text_layer_pooling=learned",
                                        "train.epochs=2", "train.warmup_steps=0", *TINY])  # fmt: skip
    run = train(config)
    weights = load_file(str(run / "model.safetensors"))
    assert weights["audio_in.mix.logits"].shape == (5,) and weights["text_in.mix.logits"].shape == (2,)
    assert (
        weights["audio_in.mix.logits"].abs().max() > 0.02
    )  # trained away from equal weights, at their own rate
    meta = json.loads((run / "model.json").read_text())
    assert weights["audio_in.proj.weight"].shape[1] == 32 * meta["config"]["model"]["audio_downsample"]
    assert meta["audio_dim"] == 5 * 32 and meta["encoders"]["audio"]["layers"] == [0, 1, 2, 3, 4]

    model, _ = load_model(run)
    assert model.audio_in.mix.num_layers == 5 and model.text_in.mix.num_layers == 2
    with caplog.at_level(logging.WARNING):
        recognizer = EmotionRecognizer.load(run, preload=True)
        result = recognizer.predict(audio=wave(0.8, 3), sample_rate=16000, text="I am so happy today!")
    assert "differs" not in caplog.text
    assert result.view == "audio+text" and abs(sum(result.probabilities.values()) - 1) < 1e-5
    assert recognizer.encoder("audio").spec() == meta["encoders"]["audio"]

    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript"):  # export mixes too
        import onnxruntime

        from mamer.workflows.export import ViewModel

        assert main(["export", str(run), "--onnx", str(tmp_path / "onnx" / "model.onnx")]) == 0
        session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.audio+text.onnx"))
        features = recognizer.featurize([wave(0.8, 3)], ["I am so happy today!"])[0]
        inputs = [features.audio[None], torch.ones(1, len(features.audio), dtype=torch.bool),
                  features.text[None], torch.ones(1, len(features.text), dtype=torch.bool)]  # fmt: skip
        assert features.audio.shape[-1] == 5 * 32 and features.text.shape[-1] == 2 * 24
        with torch.inference_mode():
            (expected,) = ViewModel(model, "audio+text", Targets(**meta["targets"])).eval()(*inputs)
        (got,) = session.run(
            None, {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs, strict=True)}
        )
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)


def test_config_rejects_unknown_layer_pooling(tiny_corpus):
    with pytest.raises(ValueError, match="data.audio_layer_pooling must be .mean. or .learned., got .sum."):
        load_config("quickstart", [f"data.manifest={tiny_corpus}", "data.audio_layer_pooling=sum"])


def test_layer_weights_learn_at_their_own_rate(tiny_corpus):
    from mamer.checkpoint import build_model
    from mamer.data.dataset import Targets
    from mamer.model.heads import PretrainingHeads
    from mamer.workflows.training.session import make_optimizer

    overrides = [f"data.manifest={tiny_corpus}", "train.lr=0.001", "model.audio_downsample=4", *TINY]
    config = load_config("quickstart", overrides)
    encoders = {"audio": {"layers": [0, 1, 2], "pooling": LAYER_POOLINGS["learned"]}, "text": {"layers": [6]}}
    model = build_model(config, 3 * 16, 24, Targets(["a", "b"]), encoders)
    heads = PretrainingHeads(32, 16, 24, 4, 16, 0.07)
    groups = make_optimizer(config, model, heads).param_groups
    (mix,) = [g for g in groups if g["lr_scale"] != 1.0]
    assert mix["params"] == [model.audio_in.mix.logits] and mix["weight_decay"] == 0.0
    assert mix["lr_scale"] == pytest.approx(0.05 / 0.001)
    rest = [p for g in groups if g["lr_scale"] == 1.0 for p in g["params"]]
    assert len(rest) == len(list(model.parameters())) + len(list(heads.parameters())) - 1
    plain = build_model(config, 16, 24, Targets(["a", "b"]))
    assert {g["lr_scale"] for g in make_optimizer(config, plain, heads).param_groups} == {1.0}
