"""Augmentation that matches real input: each degradation does what it says, and `mamer augment` writes seeded,
resumable copies of a manifest's training clips that the feature cache and training take as they are."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import speechlike
from mamer.cli.main import main
from mamer.data import degrade
from mamer.data.audio import load_audio
from mamer.data.augment import AugmentError, augment_manifest, copy_path, source_id
from mamer.data.cache import cache_summary
from mamer.data.extract import prepare_features
from mamer.data.manifest import read_manifest, write_manifest
from mamer.workflows.training.loop import train

SR = degrade.SR


def _tone(hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _peak_hz(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / SR)[spectrum.argmax()])


def _band_share(wave: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(wave)) ** 2
    f = np.fft.rfftfreq(len(wave), 1 / SR)
    return float(power[(f >= low) & (f < high)].sum() / power.sum())


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_speed_moves_length_and_pitch_together():
    tone = _tone(1000)
    faster, slower = degrade.change_speed(tone, 1.1), degrade.change_speed(tone, 0.9)
    assert abs(len(faster) - len(tone) / 1.1) < 200 and abs(len(slower) - len(tone) / 0.9) < 200
    assert abs(_peak_hz(faster) - 1100) < 10 and abs(_peak_hz(slower) - 900) < 10
    with pytest.raises(ValueError, match="speed factor"):
        degrade.change_speed(tone, 3.0)


def test_gain_and_snr_are_what_they_say():
    wave = speechlike(1.0)
    assert _rms(degrade.apply_gain(wave, 6.0)) / _rms(wave) == pytest.approx(10 ** (6 / 20), rel=1e-4)
    noise = degrade.coloured_noise(len(wave), "white", np.random.default_rng(0))
    noisy = degrade.add_at_snr(wave, noise, 10.0)
    assert 20 * np.log10(_rms(wave) / _rms(noisy - wave)) == pytest.approx(10.0, abs=0.01)


def test_noise_colours_tilt_towards_low_frequencies():
    rng = np.random.default_rng(1)
    low = {c: _band_share(degrade.coloured_noise(SR, c, rng), 0, 500) for c in degrade.NOISE_COLOURS}
    assert low["white"] == pytest.approx(500 / 8000, abs=0.01)  # flat: its share of the band's width
    assert low["white"] < low["pink"] < low["brown"]
    with pytest.raises(ValueError, match="noise colour"):
        degrade.coloured_noise(10, "blue", rng)


def test_telephone_keeps_the_telephone_band_only():
    noise = degrade.coloured_noise(2 * SR, "white", np.random.default_rng(2))
    phone = degrade.telephone(0.1 * noise)
    assert len(phone) == len(noise)
    assert _band_share(phone, 0, 150) < 0.01 and _band_share(phone, 3900, 8000) < 0.01
    assert _band_share(phone, 500, 3000) > 0.8


def test_room_decays_and_keeps_loudness():
    response = degrade.room_response(0.5, np.random.default_rng(3))
    tail = np.abs(response[1:])
    assert np.square(tail[-len(tail) // 10 :]).sum() < 1e-3 * np.square(tail[: len(tail) // 10]).sum()
    wave = speechlike(1.0, seed=1)
    wet = degrade.reverberate(wave, response)
    assert len(wet) == len(wave) and _rms(wet) == pytest.approx(_rms(wave), rel=1e-3)
    assert not np.allclose(wet, wave)


@pytest.mark.parametrize("codec, low, high", [("opus", 8_000, 32_000), ("mp3", 32_000, 64_000)])
def test_codec_round_trip_keeps_length_and_loses_more_at_a_low_rate(codec, low, high):
    wave = speechlike(1.5, seed=2)
    coarse, fine = degrade.codec_round_trip(wave, codec, low), degrade.codec_round_trip(wave, codec, high)
    assert len(coarse) == len(fine) == len(wave)
    error = {rate: _rms(out - wave) for rate, out in ((low, coarse), (high, fine))}
    assert error[low] > error[high] > 0
    with pytest.raises(ValueError, match="codec"):
        degrade.codec_round_trip(wave, "aac", 32_000)


def test_chains_are_seeded_never_empty_and_keep_to_their_kinds():
    chains = [degrade.random_chain(np.random.default_rng(7)) for _ in range(2)]
    assert chains[0] == chains[1]
    rng = np.random.default_rng(8)
    drawn = [degrade.random_chain(rng) for _ in range(200)]
    assert all(drawn) and {kind for c in drawn for kind, _ in c} == set(degrade.KINDS)
    json.dumps(drawn)  # a chain is written down as JSON
    assert all(
        kind == "gain" for c in [degrade.random_chain(rng, ["gain"]) for _ in range(20)] for kind, _ in c
    )
    assert all(
        k != "babble" for c in [degrade.random_chain(rng, babble_ok=False) for _ in range(100)] for k, _ in c
    )
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade.random_chain(rng, ["echo"])


def test_every_chain_runs_on_real_speech_and_stays_in_range(emodb_clips):
    wave = load_audio(emodb_clips[0], SR)
    others = [load_audio(p, SR) for p in emodb_clips[1:4]]
    rng = np.random.default_rng(9)
    for _ in range(12):
        chain = degrade.random_chain(rng)
        out = degrade.apply_chain(wave, chain, others)
        assert np.isfinite(out).all() and np.abs(out).max() <= degrade.PEAK + 1e-6
        speed = dict(chain).get("speed", {"factor": 1.0})["factor"]
        assert abs(len(out) - len(wave) / speed) < 200
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade.apply_chain(wave, [("echo", {})])


# --- `mamer augment` ---------------------------------------------------------------------------------------------


def _shared_emodb() -> Path | None:
    for root in (Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data")):
        if (root / "emodb" / "audio").is_dir():
            return root / "emodb" / "audio"
    return None


@pytest.fixture(scope="module")
def emodb_clips(tmp_path_factory) -> list[Path]:
    """Six real EmoDB clips if ../shared/data has them, else six synthesised ones."""
    folder = _shared_emodb()
    if folder is not None:
        return sorted(folder.glob("*.flac"))[:6]
    out = tmp_path_factory.mktemp("clips")
    paths = [out / f"clip{i}.wav" for i in range(6)]
    for i, path in enumerate(paths):
        sf.write(path, speechlike(1.2, seed=i), SR)
    return paths


@pytest.fixture
def clip_manifest(tiny_corpus, tmp_path) -> Path:
    """The tiny corpus, its first train rows speaking real EmoDB clips, and one train clip that is not audio."""
    rows, _ = read_manifest(tiny_corpus, strict=True)
    clips = iter(sorted(_shared_emodb().glob("*.flac"))[:4] if _shared_emodb() else [])
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF but not a wave file at all" * 10)
    out = []
    for u in rows:
        if u.split == "train" and u.id.endswith("00"):
            u = dataclasses.replace(u, audio=broken)
        elif u.split == "train":
            u = dataclasses.replace(u, audio=next(clips, u.audio))
        out.append(u)
    path = tmp_path / "manifest.jsonl"
    write_manifest(out, path)
    return path


def test_augment_writes_seeded_copies_of_train_clips_and_skips_a_bad_one(clip_manifest, tmp_path):
    source, _ = read_manifest(clip_manifest)
    broken = [u.id for u in source if u.audio and u.audio.name == "broken.wav"]
    train_rows = [u for u in source if u.split == "train"]
    result = augment_manifest(clip_manifest, tmp_path / "aug", copies=2, seed=3)
    assert set(result.skipped) == set(broken) and "broken.wav" in next(iter(result.skipped.values()))
    assert result.written == 2 * (len(train_rows) - len(broken)) and result.kept == 0
    rows, problems = read_manifest(result.manifest)
    assert not problems
    by_id = {u.id: u for u in rows}
    assert [u for u in rows if "#aug" not in u.id] == source  # every source row, unchanged, in order
    copies = [u for u in rows if "#aug" in u.id]
    assert len(copies) == result.written and all(u.split == "train" for u in copies)
    for u in copies:
        original = by_id[source_id(u.id)]
        assert dataclasses.replace(u, id=original.id, audio=original.audio) == original
        wave = load_audio(u.audio, SR)
        assert np.isfinite(wave).all() and len(wave) > 0
        assert u.audio.read_bytes() != original.audio.read_bytes()
    assert not any(source_id(u.id) in broken for u in copies)
    chains = [
        json.loads(line) for line in (tmp_path / "aug" / "augmentations.jsonl").read_text().splitlines()
    ]
    assert {c["id"] for c in chains} >= {u.id for u in copies} and all(c["chain"] for c in chains)
    skipped = [json.loads(line) for line in (tmp_path / "aug" / "skipped.jsonl").read_text().splitlines()]
    assert {s["id"] for s in skipped} == set(broken)

    # the same seed elsewhere: the same bytes; another seed: other copies
    again = augment_manifest(clip_manifest, tmp_path / "again", copies=2, seed=3)
    other = augment_manifest(clip_manifest, tmp_path / "other", copies=2, seed=4)
    first = copies[0]
    assert copy_path(tmp_path / "again", source_id(first.id), 1).read_bytes() == first.audio.read_bytes()
    assert copy_path(tmp_path / "other", source_id(first.id), 1).read_bytes() != first.audio.read_bytes()
    assert again.written == other.written == result.written


def test_augment_resumes_and_refuses_another_augmentations_folder(clip_manifest, tmp_path):
    out = tmp_path / "aug"
    first = augment_manifest(clip_manifest, out, copies=1)
    kept = sorted((out / "audio").iterdir())
    victim = kept[0]
    before = victim.read_bytes()
    victim.unlink()  # killed before this copy was written
    (out / "manifest.jsonl").unlink()
    resumed = augment_manifest(clip_manifest, out, copies=1)
    assert resumed.written == 1 and resumed.kept == first.written - 1
    assert victim.read_bytes() == before and (out / "manifest.jsonl").is_file()

    with pytest.raises(AugmentError, match="other settings"):
        augment_manifest(clip_manifest, out, copies=1, seed=5)
    assert victim.read_bytes() == before  # nothing written over
    assert augment_manifest(clip_manifest, out, copies=1, seed=5, force=True).written == first.written
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(AugmentError, match="not an augmentation folder"):
        augment_manifest(clip_manifest, mine)
    with pytest.raises(AugmentError, match="copies"):
        augment_manifest(clip_manifest, tmp_path / "none", copies=0)
    with pytest.raises(AugmentError, match="degradations"):
        augment_manifest(clip_manifest, tmp_path / "none", kinds=["echo"])


def test_cli_augments_and_a_model_trains_on_the_copies(clip_manifest, tmp_path, tiny_config, capsys):
    out = tmp_path / "aug"
    assert main(
        ["augment", "--manifest", str(clip_manifest), "--out", str(out), "--kinds", "noise,telephone"]
    ) in (0, None)
    printed = capsys.readouterr()
    assert "copies written" in printed.out and "skipped" in printed.err and "broken.wav" in printed.err
    chains = [json.loads(line)["chain"] for line in (out / "augmentations.jsonl").read_text().splitlines()]
    assert {kind for chain in chains for kind, _ in chain} <= {"noise", "telephone"}
    config = tiny_config(tmp_path, "quickstart", f"data.manifest={out / 'manifest.jsonl'}", "train.epochs=1")
    run_dir = train(config)
    assert (run_dir / "model.safetensors").is_file()
    features = prepare_features(config, progress=False)  # the run's cache, found again: nothing re-encoded
    rows, _ = read_manifest(out / "manifest.jsonl")
    assert cache_summary(features)["train"]["utterances"] == sum(u.split == "train" for u in rows)


def test_per_speaker_copies_share_a_chain_and_are_a_speaker_of_their_own(clip_manifest, tmp_path):
    result = augment_manifest(clip_manifest, tmp_path / "aug", copies=2, seed=1, per_speaker=True)
    rows, _ = read_manifest(result.manifest)
    sources = {u.id: u for u in rows if "#aug" not in u.id}
    chains = {}
    for line in (tmp_path / "aug" / "augmentations.jsonl").read_text().splitlines():
        entry = json.loads(line)
        chains[entry["id"]] = entry["chain"]
    by_session: dict[str, list] = {}
    for u in (u for u in rows if "#aug" in u.id):
        k = u.id.rpartition("#aug")[2]
        assert u.speaker == f"{sources[source_id(u.id)].speaker}#aug{k}"
        by_session.setdefault(u.speaker, []).append(chains[u.id])
    assert len(by_session) >= 2
    for session in by_session.values():
        without_seeds = [[(kind, {p: v for p, v in params.items() if p != "seed"}) for kind, params in chain]
                         for chain in session]  # fmt: skip
        assert all(c == without_seeds[0] for c in without_seeds)
        noisy = [dict(chain).get("noise", dict(chain).get("babble")) for chain in session]
        if noisy[0] is not None and len(noisy) > 1:
            assert len({n["seed"] for n in noisy}) == len(noisy)  # the noise itself differs per clip
