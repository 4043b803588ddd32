"""Tests for mamer.encoders.opensmile: eGeMAPS / ComParE LLDs as audio encoders, registry, extraction."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

opensmile = pytest.importorskip("opensmile")

from conftest import speechlike  # noqa: E402
from mamer.data.audio import load_audio  # noqa: E402
from mamer.data.cache import load_spec, load_split, store_name  # noqa: E402
from mamer.data.manifest import read_manifest  # noqa: E402
from mamer.encoders import registry  # noqa: E402
from mamer.encoders.choice import EncoderChoice  # noqa: E402
from mamer.encoders.opensmile import OpenSmileEncoder  # noqa: E402

SR = 16000
DIMS = {"egemaps": 25, "compare": 65}
SETS = {"egemaps": opensmile.FeatureSet.eGeMAPSv02, "compare": opensmile.FeatureSet.ComParE_2016}


def _emodb() -> Path | None:
    """EmoDB: ../shared/data beside the repository (CI), else /work/shared/data."""
    for path in (Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data")):
        if (path / "emodb" / "audio").is_dir():
            return path / "emodb" / "audio"
    return None


EMODB = _emodb()
needs_emodb = pytest.mark.skipif(
    EMODB is None, reason="EmoDB not found in ../shared/data or /work/shared/data"
)


@pytest.fixture(scope="module")
def emodb_waves() -> list[np.ndarray]:
    """Three real utterances (anger, neutral, boredom) of two speakers, 16 kHz."""
    return [load_audio(EMODB / f"{name}.flac", SR) for name in ("03a01Wa", "03a01Nc", "08a01Lc")]


@pytest.fixture(scope="module")
def encoders() -> dict[tuple[str, bool], OpenSmileEncoder]:
    return {(name, norm): OpenSmileEncoder(name, normalize=norm) for name in DIMS for norm in (True, False)}


@needs_emodb
@pytest.mark.parametrize("name", DIMS)
def test_shapes_and_dims_on_real_speech(name, encoders, emodb_waves):
    encoder = encoders[name, True]
    assert (encoder.dim, encoder.frame_rate, encoder.sample_rate) == (DIMS[name], 100.0, SR)
    features = encoder.encode(emodb_waves)
    assert len(features) == 3 and all(len(w) == 2 * SR for w in emodb_waves)  # EmoDB here: 2.0 s clips
    for f in features:
        assert (
            f.shape == ((2 * SR - 800) // 160 + 1, DIMS[name])
            and f.dtype == torch.float32
            and f.device.type == "cpu"
        )
        assert f.is_contiguous() and torch.isfinite(f).all()
    assert not torch.equal(features[0], features[1])  # different utterances, different features


@pytest.mark.parametrize("name", DIMS)
def test_frame_count_follows_duration(name, encoders):
    encoder = encoders[name, False]
    for seconds in (0.5, 1.3, 2.71):
        (features,) = encoder.encode([speechlike(seconds)])
        num_samples = int(seconds * SR)
        assert abs(features.shape[0] - seconds * encoder.frame_rate) <= 5  # the first frame spans 60 ms
        assert features.shape[0] == (num_samples - 800) // 160 + 1


@needs_emodb
@pytest.mark.parametrize("name", DIMS)
def test_equals_opensmile_called_directly(name, encoders, emodb_waves):
    smile = opensmile.Smile(feature_set=SETS[name], feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    assert encoders[name, False].feature_names == list(smile.feature_names)
    waves = [emodb_waves[0], speechlike(1.7)]
    raw, normalised = encoders[name, False].encode(waves), encoders[name, True].encode(waves)
    for wave, r, n in zip(waves, raw, normalised, strict=True):
        reference = smile.process_signal(wave, SR).to_numpy()
        assert np.isfinite(reference).all()
        assert torch.equal(r, torch.tensor(reference))  # bit for bit before normalisation
        reference = reference.astype(np.float64)
        standardised = (reference - reference.mean(0)) / reference.std(0)  # no constant LLD in these two
        torch.testing.assert_close(n, torch.from_numpy(standardised).float(), rtol=1e-5, atol=1e-5)


@needs_emodb
@pytest.mark.parametrize("name", DIMS)
def test_each_lld_standardised_per_utterance(name, encoders, emodb_waves):
    waves = [*emodb_waves, speechlike(2.0, seed=1)]
    for raw, features in zip(
        encoders[name, False].encode(waves), encoders[name, True].encode(waves), strict=True
    ):
        varies = raw.double().std(0, correction=0) > 1e-3  # the LLDs that are not constant in this utterance
        assert varies.sum() >= DIMS[name] - 3
        torch.testing.assert_close(features.mean(0), torch.zeros(DIMS[name]), rtol=0, atol=1e-4)
        std = features.std(0, correction=0)
        torch.testing.assert_close(std[varies], torch.ones(int(varies.sum())), rtol=0, atol=1e-4)
        assert raw.abs().max() > 100 and features.abs().max() < 20  # Hz / dB scales are gone


@pytest.mark.parametrize("name", DIMS)
def test_constant_llds_become_zero(name, encoders):
    """On digital silence every LLD is constant (e.g. -201 dB formant amplitudes): all zeros, not noise."""
    (raw,) = encoders[name, False].encode([np.zeros(SR, np.float32)])
    (features,) = encoders[name, True].encode([np.zeros(SR, np.float32)])
    assert (raw == raw[0]).all() and raw.abs().max() > 1  # constant, not all zero before normalisation
    assert torch.equal(features, torch.zeros_like(features))


@pytest.mark.parametrize("name", DIMS)
def test_short_clips_give_frames(name, encoders):
    """openSMILE alone gives a NaN row (and a warning) under 60 ms: the encoder pads and gives real frames."""
    waves = [speechlike(0.3)[1000 : 1000 + n] for n in (1, 100, 959)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw = encoders[name, False].encode(waves)
        normalised = encoders[name, True].encode(waves)
    for r, n in zip(raw, normalised, strict=True):
        assert r.shape == n.shape == (2, DIMS[name])
        assert torch.isfinite(r).all() and torch.isfinite(n).all()
    assert raw[2].abs().sum() > 0 and not torch.equal(raw[1], raw[2])  # features of the clip, not NaN -> 0
    with pytest.raises(ValueError, match="waveform 1 is empty"):
        encoders[name, True].encode([waves[0], np.zeros(0, np.float32)])


def test_nan_and_inf_become_zero(encoders):
    encoder = OpenSmileEncoder("egemaps", normalize=False)

    class NaNSmile:
        def process_signal(self, signal, sampling_rate):
            values = np.ones((4, 25), np.float32)
            values[1, 0], values[2, 3], values[3, 4] = np.nan, np.inf, -np.inf
            return pd.DataFrame(values)

    encoder.smile = NaNSmile()
    (features,) = encoder.encode([speechlike(0.1)])
    expected = torch.ones(4, 25)
    expected[1, 0] = expected[2, 3] = expected[3, 4] = 0
    assert torch.equal(features, expected)


def test_spec_keys_the_cache(encoders):
    specs = {key: encoder.spec() for key, encoder in encoders.items()}
    assert json.loads(json.dumps(specs[("egemaps", True)])) == specs[("egemaps", True)]
    assert len({store_name("audio", spec) for spec in specs.values()}) == 4  # set x normalize: all differ
    assert specs["egemaps", True] == OpenSmileEncoder("egemaps").spec()  # stable: the cache is reused
    spec = specs["compare", False]
    assert (spec["feature_set"], spec["feature_level"]) == ("ComParE_2016", "lld")
    assert spec["opensmile"] == opensmile.__version__  # a new openSMILE may change the features
    assert (spec["dim"], spec["frame_rate"], spec["normalize"]) == (65, 100.0, False)
    with pytest.raises(ValueError, match="unknown openSMILE encoder 'gemaps'"):
        OpenSmileEncoder("gemaps")


def test_registry_and_encoders_command(capsys):
    assert registry.available_audio_encoders()["egemaps"] is True
    assert registry.available_audio_encoders()["compare"] is True
    for name, dim in DIMS.items():
        encoder = registry.load_audio_encoder(name)
        assert isinstance(encoder, OpenSmileEncoder) and (encoder.name, encoder.dim) == (name, dim)
    assert registry.load_audio_encoder("egemaps", normalize=False).spec()["normalize"] is False
    audio = EncoderChoice("audio", "compare").build("cuda")  # no device option reaches it
    assert audio.name == "compare"
    with pytest.raises(ValueError, match="egemaps encoder has no layers"):
        EncoderChoice("audio", "egemaps", (2,)).build()

    from mamer.cli import main

    assert main(["encoders"]) in (0, None)
    lines = {
        line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("audio")
    }
    for name in DIMS:
        assert lines[name].split()[2] == "installed" and "pip install 'mamer[opensmile]'" in lines[name]


def test_missing_package_names_the_extra_and_licence(monkeypatch):
    monkeypatch.setitem(sys.modules, "opensmile", None)  # `import opensmile` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'mamer\[opensmile\]'.*non-commercial"):
        registry.load_audio_encoder("egemaps")
    available = registry.available_audio_encoders()
    assert available["egemaps"] is False and available["compare"] is False


def test_opensmile_is_imported_only_when_an_encoder_is_built():
    code = (
        "import sys\n"
        "import mamer.cli, mamer.encoders.opensmile\n"
        "from mamer.encoders import registry\n"
        "assert registry.available_audio_encoders()['egemaps']\n"
        "assert 'opensmile' not in sys.modules, 'imported at module import'\n"
        "registry.load_audio_encoder('egemaps')\n"
        "assert 'opensmile' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_extract_command_with_egemaps(tiny_corpus, tmp_path, capsys):
    from mamer.cli import main

    args = ["extract", "--manifest", str(tiny_corpus), "--audio-encoder", "egemaps", "--text-encoder", "hashed",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    first = capsys.readouterr().out
    folder = Path(first.split("features in ")[1].split()[0])
    spec = load_spec(folder)
    assert spec["audio_encoder"] == OpenSmileEncoder("egemaps").spec()
    assert (spec["audio_dim"], spec["frame_rate"]) == (25, 100.0)

    train = load_split(folder, "train")
    assert train.audio_dim == 25 and len(train.ids) == 16
    utterances = {u.id: u for u in read_manifest(tiny_corpus)[0]}
    wave = load_audio(utterances[train.ids[0]].audio, SR)
    (expected,) = OpenSmileEncoder("egemaps").encode([wave])
    torch.testing.assert_close(train.audio_of(0).float(), expected, rtol=1e-3, atol=1e-3)  # float16 cache
    assert abs(train.audio_of(0).shape[0] - len(wave) / SR * 100) <= 5

    assert main(args) == 0 and capsys.readouterr().out == first  # the second run reuses the cache


@pytest.mark.parametrize("normalize", [True, False])
def test_checkpoint_spec_rebuilds_the_same_encoder(normalize):
    """`predict` rebuilds the encoder a checkpoint recorded, normalisation included."""
    spec = json.loads(json.dumps(OpenSmileEncoder("compare", normalize=normalize).spec()))
    assert EncoderChoice.from_spec(spec, "audio").build().spec() == spec


def test_features_beyond_float16_are_skipped_and_reported(tiny_corpus, tmp_path):
    """ComParE without normalisation reaches ~1e6 (spectral variance), beyond the float16 cache: each utterance's
    audio is left out with the reason, named in skipped.jsonl, instead of being cached as inf; its text stays."""
    from mamer.data.extract import extract_features
    from mamer.data.manifest import splits

    rows = splits(read_manifest(tiny_corpus)[0])
    folder = extract_features(
        rows, OpenSmileEncoder("compare", normalize=False), registry.load_text_encoder("hashed"), tmp_path,
        progress=False,
    )  # fmt: skip
    train = load_split(folder, "train")
    assert train.ids == [u.id for u in rows["train"]] and train.skipped == []
    assert all(train.audio_of(i) is None and train.text_of(i) is not None for i in range(len(train.ids)))
    for item in train.partial:  # the file, and why; the text is kept
        assert (
            item["reason"].startswith(item["audio"]) and "beyond the float16 cache's range" in item["reason"]
        )
        assert item["kept"] == "text"
    assert {item["audio"] for item in train.partial} == {str(u.audio) for u in rows["train"]}
    report = [json.loads(line) for line in (folder / "skipped.jsonl").read_text().splitlines()]
    assert len(report) == sum(len(r) for r in rows.values())
