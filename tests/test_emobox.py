"""The EmoBox protocol: its fold files as splits, its metrics, the probe baselines and the protocol runner."""

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from mamer.checkpoint import load_model
from mamer.config import load_experiment
from mamer.data.cache import load_split
from mamer.data.corpora import prepare_corpus
from mamer.data.corpora.emobox import emobox_folds
from mamer.data.corpora.emodb import read_emodb
from mamer.data.corpora.train_dev import carve_dev, leave_speakers_out
from mamer.data.extract import prepare_features
from mamer.data.manifest import Utterance, read_manifest, write_manifest
from mamer.metrics import categorical_metrics
from mamer.model.tokens import AudioDownProjection
from mamer.workflows.evaluation.evaluate import evaluate_run
from mamer.workflows.experiments.probe import (
    EmoBoxHead,
    ProbeSplit,
    linear_probe,
    probe_splits,
    run_probe,
)
from mamer.workflows.experiments.protocol import aggregate, protocol_table, run_protocol
from mamer.workflows.training.loop import train
from test_corpora import DATA, needs_data
from test_encoders import save_tiny_speech_model

# --- fold files ----------------------------------------------------------------------------------------


@needs_data
def test_emodb_folds_keys_labels_counts(tmp_path):
    written = prepare_corpus("emodb", DATA / "emodb", tmp_path / "e.jsonl", emobox=DATA / "emobox/emodb")
    assert [p.name for p in written.written] == [f"e_fold{k}.jsonl" for k in range(5)]
    assert written.problems == []
    assert written.notes == ["EmoBox label 'neutral' is not in label_map.json; read as its key 'Neutral' (same but "
                             "for case)"]  # fmt: skip
    ours = {u.id: u.label for u in read_emodb(DATA / "emodb").rows}
    tested = Counter()
    for k, rows in enumerate(written.written.values()):
        fold = DATA / f"emobox/emodb/fold_{k + 1}"
        keys = {
            s: [json.loads(line) for line in (fold / f"emodb_{s}_fold_{k + 1}.jsonl").open()]
            for s in ("train", "test")
        }
        splits = {s: {u.id for u in rows if u.split == s} for s in ("train", "dev", "test")}
        assert (
            splits["test"] == {r["key"].removeprefix("emodb-") for r in keys["test"]}
            and len(splits["test"]) == 107
        )
        assert splits["train"] | splits["dev"] == {r["key"].removeprefix("emodb-") for r in keys["train"]}
        assert len(splits["dev"]) in (85, 86, 87) and len(splits["train"]) + len(splits["dev"]) == 428
        assert {u.speaker for u in rows if u.split == "dev"} == {u.speaker for u in rows if u.split == "test"}
        assert all(u.label == ours[u.id] for u in rows)  # our labels, which EmoBox's agree with
        assert Counter(u.label for u in rows if u.split == "dev")["anger"] == round(0.2 * Counter(
            u.label for u in rows if u.split != "test")["anger"])  # fmt: skip
        tested.update(splits["test"])
    assert len(tested) == 535 and set(tested.values()) == {1}  # every clip tested exactly once


@needs_data
def test_ravdess_folds_missing_clips_named_and_speaker_independent(tmp_path):
    result = prepare_corpus("ravdess", DATA / "ravdess", tmp_path / "r.jsonl", emobox=DATA / "emobox/ravdess")
    assert len(result.written) == 6
    problems = "\n".join(result.problems)
    assert "03-01-02-01-02-02-05" in problems and all("not in our copy" in p for p in result.problems)
    assert "ravdess_test_fold_1.jsonl: 4 clip(s) not in our copy" in problems
    for rows in result.written.values():
        actors = {s: {u.speaker for u in rows if u.split == s} for s in ("train", "dev", "test")}
        assert len(actors["test"]) == 4 and len(actors["dev"]) == 4 and len(actors["train"]) == 16
        assert not actors["test"] & (actors["train"] | actors["dev"]) and not actors["dev"] & actors["train"]
        assert {u.label for u in rows if u.split == "test"} >= {"calm", "surprised", "neutral"}
    assert sum(u.split == "test" for rows in result.written.values() for u in rows) == 1440 - 6


def test_fold_file_problems_name_file_and_line(tmp_path):
    rows = [Utterance(f"0{s}a01{e}a", Path("x.wav"), None, label, None, None, None, f"0{s}", "")
            for s in range(3, 7) for e, label in (("W", "anger"), ("T", "sadness"), ("N", "neutral"))]  # fmt: skip
    folder = tmp_path / "emodb"
    (folder / "fold_1").mkdir(parents=True)
    (folder / "label_map.json").write_text(json.dumps({"anger": "Angry", "sad": "Sad", "Neutral": "Neutral"}))
    train = [{"key": f"emodb-{u.id}", "emo": {"anger": "anger", "sadness": "sad", "neutral": "neutral"}[u.label]}
             for u in rows[3:]]  # fmt: skip
    test = [{"key": f"emodb-{u.id}", "emo": "anger" if u.label == "anger" else "sad"} for u in rows[:3]]
    test += [{"key": "emodb-99a01Wa", "emo": "anger"}, {"key": "emodb-03a01Wa", "emo": "anger"}, {"emo": "sad"},
             {"key": "emodb-04a01Wa", "emo": "joy"}]  # fmt: skip
    for split, lines in (("train", train), ("test", test)):
        text = "\n".join(json.dumps(line) for line in lines) + "\n"
        (folder / "fold_1" / f"emodb_{split}_fold_1.jsonl").write_text(text)
    problems, notes = [], []
    [fold] = emobox_folds(rows, folder, problems, notes)
    test_file = folder / "fold_1/emodb_test_fold_1.jsonl"
    assert {u.id for u in fold if u.split == "test"} == {"03a01Wa", "03a01Ta"}
    assert f"{test_file}:3: EmoBox says Sad for 03a01Na, our copy 'neutral'; row skipped" in problems
    assert f"{test_file}:5: emodb-03a01Wa is listed twice; later row skipped" in problems
    assert f"{test_file}:6: not an EmoBox fold row (a JSON object with key and emo); row skipped" in problems
    assert any(p.startswith(f"{test_file}:7: label 'joy' is not in label_map.json") for p in problems)
    assert f"{test_file}: 1 clip(s) not in our copy of the corpus (99a01Wa); left out of the fold" in problems
    assert len(problems) == 5 and len(notes) == 1  # `neutral` read as `Neutral`, said once
    with pytest.raises(FileNotFoundError, match="no EmoBox folds"):
        emobox_folds(rows, tmp_path, [], [])
    with pytest.raises(ValueError, match="--emobox-folds gives the folds"):
        prepare_corpus("emodb", tmp_path, tmp_path / "m.jsonl", folds=3, emobox=folder)


def test_carve_dev_rows_when_speakers_are_shared():
    rows = [Utterance(f"u{i}", None, "t", "ab"[i % 2], None, None, None, f"s{i % 3}", "train" if i < 40 else "test")
            for i in range(50)]  # fmt: skip
    carved = carve_dev(rows)
    dev = [u for u in carved if u.split == "dev"]
    assert Counter(u.label for u in dev) == {"a": 4, "b": 4}  # stratified
    assert carved == carve_dev(rows)  # and fixed
    assert [u.split for u in carved[40:]] == ["test"] * 10


# --- metrics -------------------------------------------------------------------------------------------


def test_metrics_equal_scikit_learns_on_a_hand_made_case():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 3])
    # class 4 is predicted but never true: EmoBox's F1 counts it, its UA does not
    y_pred = np.array([0, 0, 1, 4, 1, 2, 2, 2, 0, 3])
    ours = categorical_metrics(y_true, y_pred, num_classes=5)
    assert ours["uar"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))  # UA
    assert ours["uar"] == pytest.approx((0.5 + 0.5 + 2 / 3 + 1) / 4)
    assert ours["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred)) == 0.6  # WA
    assert ours["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    records = [{"system": "s", "view": "audio", "seed": seed, "fold": fold, "UA": ua, "WA": 0.5, "macro-F1": 0.5}
               for seed, fold, ua in ((0, 0, 0.8), (1, 0, 0.6), (0, 1, 0.5), (1, 1, 0.5))]  # fmt: skip
    [row] = aggregate(records)
    assert row["UA"]["per_fold"] == pytest.approx([70.0, 50.0]) and row["UA"]["mean"] == pytest.approx(60.0)
    assert row["UA"]["std"] == pytest.approx(np.std([70, 50], ddof=1))
    assert row["UA"]["seed_std"] == pytest.approx(np.std([65, 55], ddof=1))
    table = protocol_table([row], {"EmoBox: WavLM base": (87.03, 87.12, 86.76)})
    assert "| s | audio | 60.00 ± 14.14 | 50.00 ± 0.00 | 50.00 ± 0.00 | 2 | 7.07 |" in table
    assert "| EmoBox: WavLM base (published) | audio | 87.03 | 87.12 | 86.76 | – | – |" in table


# --- the probe and the runner --------------------------------------------------------------------------


def test_emobox_head_ignores_padding():
    torch.manual_seed(0)
    head = EmoBoxHead(dim=6, num_classes=3)
    frames = torch.randn(1, 4, 6)
    padded = torch.cat([frames, torch.randn(1, 3, 6)], 1)
    mask = torch.tensor([[1.0] * 4 + [0.0] * 3])
    assert torch.allclose(head(frames, torch.ones(1, 4)), head(padded, mask), atol=1e-6)


@pytest.fixture(scope="module")
def folds(tiny_corpus, tmp_path_factory) -> list[Path]:
    """The tiny corpus (4 speakers) in 2 leave-speakers-out folds, each with a dev speaker."""
    folder = tmp_path_factory.mktemp("folds")
    rows, _ = read_manifest(tiny_corpus)
    paths = []
    for k, fold in enumerate(leave_speakers_out(rows, 2)):
        paths.append(folder / f"m_fold{k}.jsonl")
        write_manifest(carve_dev(fold), paths[-1])
    return paths


def test_probes_on_a_tiny_corpus(folds, tiny_config, tmp_path):
    config = tiny_config(tmp_path, "quickstart", f"data.manifest={folds[0]}")
    features = prepare_features(config, progress=False)
    classes = sorted({u.label for u in read_manifest(folds[0])[0]})
    data = probe_splits(features, folds[0], classes)
    assert [len(data[s].ids) for s in ("train", "dev", "test")] == [8, 8, 16]
    assert data["train"].pooled().shape == (8, data["train"].frames[0].shape[1])
    linear = linear_probe(data, len(classes))
    assert linear["C"] in (0.01, 0.1, 1.0) and linear == linear_probe(data, len(classes))  # deterministic
    mlp = run_probe("mlp", features, folds[0], classes, seed=3, epochs=4)
    assert 1 <= mlp["epoch"] <= 4 and mlp == run_probe("mlp", features, folds[0], classes, seed=3, epochs=4)
    assert set(mlp["test"]) >= {"uar", "accuracy", "macro_f1"} and 0 <= mlp["test"]["uar"] <= 1
    with pytest.raises(ValueError, match="unknown probe 'svm'"):
        run_probe("svm", features, folds[0], classes)
    assert set(data["test"].speakers) == {u.speaker for u in read_manifest(folds[0])[0] if u.split == "test"}
    for kind in ("linear_speaker", "linear_corpus"):
        grouped = run_probe(kind, features, folds[0], classes)
        assert grouped["C"] in (0.01, 0.1, 1.0) and 0 <= grouped["test"]["uar"] <= 1


def test_per_speaker_standardisation_removes_what_a_speaker_adds_to_every_clip():
    torch.manual_seed(0)
    clips = [torch.randn(5, 3) for _ in range(4)]
    shifted = [c * 3 + 10 for c in clips]  # the same clips, louder and offset: another speaker's voice
    part = ProbeSplit(["a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4", "c1"], clips + shifted + [clips[0]],
                      np.zeros(9, dtype=np.int64), ["a"] * 4 + ["b"] * 4 + ["c"])  # fmt: skip
    pooled = part.pooled("speaker")
    np.testing.assert_allclose(pooled[:4], pooled[4:8], atol=1e-5)
    np.testing.assert_allclose(pooled[:4].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(pooled[:4].std(0), 1, atol=1e-5)
    np.testing.assert_allclose(pooled[8], 0)  # a speaker of one clip: centred
    assert not np.allclose(part.pooled()[:4], part.pooled()[4:8])


def test_per_corpus_standardisation_groups_rows_by_the_corpus_their_id_names():
    torch.manual_seed(0)
    clips = [torch.randn(5, 3) for _ in range(4)]
    shifted = [c * 3 + 10 for c in clips]  # the same clips recorded elsewhere: another corpus
    ids = ["emodb/a1", "emodb/b1", "emodb/a2", "emodb/b2", "nemo/x1", "nemo/y1", "nemo/x2", "nemo/y2"]
    part = ProbeSplit(
        ids, clips + shifted, np.zeros(8, dtype=np.int64), ["a", "b", "a", "b", "x", "y", "x", "y"]
    )
    by_corpus = part.pooled("corpus")  # the corpora's offsets gone, the speakers within each kept
    np.testing.assert_allclose(by_corpus[:4], by_corpus[4:], atol=1e-5)
    np.testing.assert_allclose(by_corpus[:4].mean(0), 0, atol=1e-6)
    assert not np.allclose(by_corpus[:4], part.pooled("speaker")[:4])


def test_protocol_end_to_end_with_a_tiny_random_wavlm(folds, tiny_config, tmp_path):
    """The runner as the recipes use it, through a Hugging Face speech encoder given as a folder (what a hub name
    gives when its weights are present): a tiny WavLM with random weights, 2 folds, 2 systems, the probes."""
    wavlm = save_tiny_speech_model(tmp_path / "wavlm", feat_extract_norm="layer", do_stable_layer_norm=True)
    overrides = [f"data.manifest={folds[0]}", f"data.audio_encoder={wavlm}", "data.audio_layers=[1]",
                 "train.epochs=1", "experiment.systems=[unified,audio_only]", "experiment.seeds=[0]",
                 "experiment.folds=2", f"experiment.fold_manifest={str(folds[0]).replace('fold0', 'fold{fold}')}",
                 f"experiment.out={tmp_path / 'experiment'}", "experiment.robustness=[]"]  # fmt: skip
    config, experiment = tiny_config(tmp_path, "quickstart", *overrides, experiment=True)
    result = run_protocol(
        config, experiment, probe_options={"epochs": 2}, reference={"published": (1.0, 2.0, 3.0)}
    )
    rows = {(r["system"], r["view"]): r for r in result["rows"]}
    assert {("unified", "audio"), ("unified", "audio+text"), ("audio_only", "audio"), ("probe: linear", "audio"),
            ("probe: EmoBox MLP", "audio")} <= set(rows)  # fmt: skip
    assert rows["unified", "audio"]["seeds"] == [0] and rows["probe: EmoBox MLP", "audio"]["seeds"] == [0]
    assert all(len(r["UA"]["per_fold"]) == 2 and 0 <= r["UA"]["mean"] <= 100 for r in rows.values())
    written = (tmp_path / "experiment" / "protocol.md").read_text()
    assert (
        "| published (published) | audio | 1.00 | 2.00 | 3.00 |" in written
        and "| unified | audio | 2 |" in written
    )
    saved = json.loads((tmp_path / "experiment" / "protocol.json").read_text())
    assert len(saved["records"]) == 2 * 3 + 2 + 2 + 2  # 2 folds: unified's 3 views, audio_only, linear, mlp
    spec = json.loads((tmp_path / "experiment" / "unified" / "seed0" / "fold0" / "model.json").read_text())
    assert str(wavlm) in json.dumps(spec)  # the run really read the WavLM's features
    again = run_protocol(config, experiment, probe_options={"epochs": 2})  # resumes: nothing is retrained
    assert again["rows"] == result["rows"]


@needs_data
def test_smoke_recipe_prepares_and_runs(tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "recipes" / "emobox"))
    import run

    table = run.main(["--corpus", "emodb", "--smoke", "--out", str(tmp_path), "--data", str(DATA)])
    assert "| probe: EmoBox MLP | audio |" in table and "EmoBox: WavLM base (published)" in table
    # EmoDB's folds test the speakers they train on: no per-speaker normalisation, so no each-clip-alone rows;
    # the speaker-independent configs have it
    assert (
        load_experiment("emobox_emodb")[0].model.audio_normalise == "none" and "each clip alone" not in table
    )
    assert load_experiment("emobox_ravdess")[0].model.audio_normalise == "speaker"
    assert load_experiment("emobox_emodb")[1].folds == 5


# --- audio standardisation (model.audio_standardise, chosen on the protocol's dev rows) -------------------


def test_standardised_projection_equals_projection_of_standardised_frames():
    torch.manual_seed(0)
    plain = AudioDownProjection(6, 8, k=2)
    scaled = AudioDownProjection(6, 8, k=2, standardise=True)
    scaled.load_state_dict({**plain.state_dict(), "mean": torch.zeros(6), "std": torch.ones(6)})
    frames, mask = 3 + 10 * torch.randn(2, 5, 6), torch.ones(2, 5, dtype=torch.bool)
    mean, std = frames.reshape(-1, 6).mean(0), frames.reshape(-1, 6).std(0)
    scaled.set_statistics(mean, std)
    assert torch.allclose(scaled(frames, mask)[0], plain((frames - mean) / std, mask)[0], atol=1e-5)
    assert not torch.allclose(scaled(frames, mask)[0], plain(frames, mask)[0], atol=1e-3)


def test_standardised_run_keeps_the_train_statistics(folds, tiny_config, tmp_path):
    config = tiny_config(tmp_path, "quickstart", f"data.manifest={folds[0]}", "train.epochs=1",
                         "model.audio_standardise=true")  # fmt: skip
    run = train(config)
    model, meta = load_model(run)
    split = load_split(Path(meta.features), "train")
    frames = torch.cat([split.audio_of(i).double() for i in range(len(split.ids))])
    assert torch.allclose(model.audio_in.mean, frames.mean(0).float(), atol=1e-4)
    assert torch.allclose(
        model.audio_in.std, frames.std(0, unbiased=False).float().clamp(min=1e-5), atol=1e-4
    )
    assert evaluate_run(run, "test")["results"]["audio"]  # evaluation rebuilds the model with its statistics
