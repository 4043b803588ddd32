"""Leaving one corpus out: EmoDB, RAVDESS and nEMO in their five shared classes, one fold per tested corpus."""

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from mamer.data.corpora.cross_corpus import SHARED_CLASSES, leave_one_corpus_out, read_speech_corpora
from mamer.data.manifest import corpus_of
from test_corpora import DATA, needs_data
from test_smoke_scripts import tiny_data_root


@needs_data
def test_each_fold_tests_one_whole_corpus_and_develops_on_a_fifth_of_each_other_corpus_speakers():
    prepared = read_speech_corpora(DATA)
    rows = prepared.rows
    assert {u.label for u in rows} == set(SHARED_CLASSES)
    per_corpus = Counter(corpus_of(u.id) for u in rows)
    # EmoDB without boredom and disgust; RAVDESS without calm, disgust, surprised; nEMO without surprised
    assert per_corpus == {"emodb": 408, "ravdess": 862, "nemo": 3812}
    assert any("nemo: 669 rows outside the shared classes" in note for note in prepared.notes)
    speakers = {name: {u.speaker for u in rows if corpus_of(u.id) == name} for name in per_corpus}
    assert {name: len(s) for name, s in speakers.items()} == {"emodb": 10, "ravdess": 24, "nemo": 9}

    folds = leave_one_corpus_out(rows, 3)
    for tested, fold in zip(("emodb", "ravdess", "nemo"), folds, strict=True):
        assert len(fold) == len(rows)
        assert {corpus_of(u.id) for u in fold if u.split == "test"} == {tested}
        assert sum(u.split == "test" for u in fold) == per_corpus[tested]
        for name in set(per_corpus) - {tested}:
            dev = {u.speaker for u in fold if u.split == "dev" and corpus_of(u.id) == name}
            train = {u.speaker for u in fold if u.split == "train" and corpus_of(u.id) == name}
            assert len(dev) == round(len(speakers[name]) / 5) and not dev & train
            assert dev | train == speakers[name]


def test_a_missing_corpus_or_another_fold_count_is_named(tmp_path):
    (tmp_path / "emodb").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no ravdess/, nemo/"):
        read_speech_corpora(tmp_path)
    with pytest.raises(ValueError, match="3 folds"):
        leave_one_corpus_out([], 5)


@needs_data
@pytest.mark.smoke
def test_smoke_recipe_scores_the_release_probes_and_systems_on_each_left_out_corpus(tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "recipes" / "mamer_base"))
    import loco

    root = tiny_data_root(DATA, tmp_path / "data")
    out = tmp_path / "loco"
    table = loco.main(["--smoke", "--data", str(root), "--out", str(out)])
    # the config normalises audio per speaker: each trained system also has its rows with every clip alone and
    # with a corpus's clips as one group
    systems = ("released: mamer-base", "unified", "audio_only", "probe: linear", "probe: EmoBox MLP",
               "probe: linear, per-speaker standardised", "unified, each clip alone", "audio_only, each clip alone",
               "unified, a corpus's clips as one group", "audio_only, a corpus's clips as one group")  # fmt: skip
    for system in systems:
        assert f"| {system} | audio | 3 |" in table  # the per-fold rows: fold 3 tests nEMO
    saved = json.loads((out / "experiment" / "protocol.json").read_text())
    released = [r for r in saved["records"] if r["system"] == "released: mamer-base"]
    assert [r["fold"] for r in released] == [0, 1, 2] and all(0 <= r["UA"] <= 1 for r in released)
    # a rerun scores nothing again: the release's per-fold scores are read back
    (out / "experiment" / "release_mamer-base" / "fold0.json").write_text(json.dumps({**FAKE, "uar": 0.5}))
    again = loco.main(["--smoke", "--no-train", "--data", str(root), "--out", str(out)])
    assert "| released: mamer-base | audio | 1 | 50.00 |" in again and "| unified |" not in again


FAKE = {"uar": 0.0, "accuracy": 0.5, "macro_f1": 0.5}
