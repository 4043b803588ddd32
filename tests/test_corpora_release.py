"""The corpora of the released model (RAVDESS, GoEmotions, and mamer-base joining all five; v2 with nEMO), on the
real files."""

from collections import Counter

import pytest

from mamer.data.corpora import prepare_corpus
from mamer.data.corpora.goemotions import read_goemotions
from mamer.data.corpora.mamer_base import LABELS, MAPPINGS, read_mamer_base, read_mamer_base_v2
from mamer.data.corpora.nemo import nemo_folds, read_nemo
from mamer.data.corpora.ravdess import parse_name, read_ravdess
from mamer.data.manifest import corpus_of, read_manifest
from test_corpora import DATA, needs_data  # the real corpora in ../shared/data


def _splits_of(rows, unit) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for u in rows:
        found.setdefault(unit(u), set()).add(u.split)
    return found


@needs_data
def test_ravdess_real_counts_and_actor_split():
    prepared = read_ravdess(DATA / "ravdess")
    assert not prepared.problems
    rows = prepared.rows
    assert len(rows) == 1434
    assert Counter(u.label for u in rows)["neutral"] == 96
    assert {u.text for u in rows} == {"Kids are talking by the door.", "Dogs are sitting by the door."}
    actors = _splits_of(rows, lambda u: u.speaker)
    assert len(actors) == 24 and all(len(s) == 1 for s in actors.values())
    assert {a for a, s in actors.items() if s == {"test"}} == {"21", "22", "23", "24"}
    assert {a for a, s in actors.items() if s == {"dev"}} == {"17", "18", "19", "20"}
    assert all(u.audio.is_file() for u in rows[:5])


def test_ravdess_file_names(tmp_path):
    assert parse_name("03-01-05-02-01-01-12") == ("12", "angry", "Kids are talking by the door.")
    with pytest.raises(ValueError, match="not audio-only speech"):
        parse_name("02-01-05-02-01-01-12")  # video
    folder = tmp_path / "Actor_12"
    folder.mkdir()
    (folder / "03-01-02-01-02-02-12.wav").write_bytes(b"")
    (folder / "03-01-09-01-02-02-12.wav").write_bytes(b"")
    prepared = read_ravdess(tmp_path)
    assert [(u.label, u.split, u.text) for u in prepared.rows] == [
        ("calm", "train", "Dogs are sitting by the door.")
    ]
    assert len(prepared.problems) == 1 and "03-01-09" in prepared.problems[0]


@needs_data
def test_goemotions_single_label_rows_and_multi_label_note():
    prepared = read_goemotions(DATA / "goemotions")
    assert not prepared.problems
    by_split = Counter(u.split for u in prepared.rows)
    assert by_split == {"train": 43410 - 3855, "dev": 5426 - 480, "test": 5427 - 459}
    assert {u.label for u in prepared.rows} == {
        "anger",
        "disgust",
        "fear",
        "joy",
        "neutral",
        "sadness",
        "surprise",
    }
    assert any("4794 multi-label" in n and "train 3855" in n for n in prepared.notes)
    assert len({u.id for u in prepared.rows}) == len(prepared.rows)


def test_goemotions_malformed_lines(tmp_path):
    (tmp_path / "labels.txt").write_text("anger\njoy\n")
    (tmp_path / "train.tsv").write_text("fine\t1\tc1\nboth\t0,1\tc2\nbad index\t7\tc3\nno id\t1\n")
    prepared = read_goemotions(tmp_path)
    assert [(u.id, u.label, u.text) for u in prepared.rows] == [("c1", "joy", "fine")]
    assert len(prepared.problems) == 4  # bad index, short line, missing dev and test files
    assert any("1 multi-label" in n for n in prepared.notes)


def test_mamer_base_mapping_covers_every_corpus_label():
    from mamer.data.corpora.emodb import EMOTIONS as EMODB
    from mamer.data.corpora.meld import EMOTIONS as MELD
    from mamer.data.corpora.ravdess import EMOTIONS as RAVDESS

    for corpus, names in (("emodb", EMODB.values()), ("ravdess", RAVDESS.values()), ("meld", MELD)):
        assert set(MAPPINGS[corpus]) == set(names)
    mapped = {v for m in MAPPINGS.values() for v in m.values() if v is not None}
    assert mapped == set(LABELS)
    assert MAPPINGS["meld"]["joy"] == MAPPINGS["goemotions"]["joy"] == "happiness"


@needs_data
def test_mamer_base_joins_all_five_speaker_independently():
    prepared = read_mamer_base(DATA)
    assert not prepared.problems
    rows = prepared.rows
    per_corpus = Counter(corpus_of(u.id) for u in rows)
    assert per_corpus == {"emodb": 535 - 81, "ravdess": 1434 - 189, "meld": 13708,
                          "goemotions": 4945 + 4946 + 4968, "emobank": 10062}  # fmt: skip
    assert {u.label for u in rows} == set(LABELS) | {None}
    assert all(u.label is None and u.valence is not None for u in rows if corpus_of(u.id) == "emobank")
    assert all(u.valence is None for u in rows if corpus_of(u.id) != "emobank")
    assert all(u.audio is not None for u in rows if corpus_of(u.id) in ("emodb", "ravdess"))
    speakers = _splits_of([u for u in rows if corpus_of(u.id) in ("emodb", "ravdess")], lambda u: u.speaker)
    assert all(len(s) == 1 for s in speakers.values())  # each EmoDB speaker and RAVDESS actor in one split
    assert {s for s, found in speakers.items() if found == {"test_emodb"}} == {"emodb/03", "emodb/08"}
    splits = Counter(u.split for u in rows)
    assert splits["test_emodb"] == 92 and splits["test_ravdess"] == 208 and splits["test_meld"] == 2610
    assert {corpus_of(u.id) for u in rows if u.split == "dev"} == {"meld", "goemotions", "emobank"}
    assert any("boredom 81" in n for n in prepared.notes) and any("calm 189" in n for n in prepared.notes)
    assert any("every 8th train row kept (4945 of 39555)" in n for n in prepared.notes)


@needs_data
def test_mamer_base_root_with_some_corpora(tmp_path):
    (tmp_path / "emodb").symlink_to(DATA / "emodb")
    result = prepare_corpus("mamer-base", tmp_path, tmp_path / "m.jsonl")
    rows, problems = read_manifest(tmp_path / "m.jsonl")
    assert not problems and len(rows) == 454
    assert {u.split for u in rows} == {"train", "dev_emodb", "test_emodb"}
    assert any("no ravdess/" in n for n in result.notes)
    assert not result.warnings  # no speaker in two splits


@needs_data
def test_mamer_base_folds_resplit_emodb_speakers_only(tmp_path):
    for name in ("emodb", "ravdess"):
        (tmp_path / name).symlink_to(DATA / name)
    plain = prepare_corpus("mamer-base", tmp_path, tmp_path / "m.jsonl").written[tmp_path / "m.jsonl"]
    folds = list(prepare_corpus("mamer-base", tmp_path, tmp_path / "m.jsonl", folds=5).written.values())
    assert len(folds) == 5 and folds[0] == plain  # the released split is fold 0
    pairs = [{"emodb/03", "emodb/08"}, {"emodb/09", "emodb/10"}, {"emodb/11", "emodb/12"},
             {"emodb/13", "emodb/14"}, {"emodb/15", "emodb/16"}]  # fmt: skip
    for k, rows in enumerate(folds):
        assert [u.id for u in rows] == [u.id for u in plain]
        emodb = _splits_of([u for u in rows if corpus_of(u.id) == "emodb"], lambda u: u.speaker)
        assert {s for s, found in emodb.items() if found == {"test_emodb"}} == pairs[k]
        assert {s for s, found in emodb.items() if found == {"dev_emodb"}} == pairs[(k + 1) % 5]
        assert all(len(found) == 1 for found in emodb.values())
        ravdess = [u for u in rows if corpus_of(u.id) == "ravdess"]
        assert ravdess == [u for u in plain if corpus_of(u.id) == "ravdess"]
    (tmp_path / "emodb").unlink()
    with pytest.raises(ValueError, match="no emodb/"):
        prepare_corpus("mamer-base", tmp_path, tmp_path / "m.jsonl", folds=5)


@needs_data
def test_mamer_base_v2_adds_nemo_in_its_first_speaker_fold_with_surprise_mapped():
    v1, v2 = read_mamer_base(DATA).rows, read_mamer_base_v2(DATA)
    assert not v2.problems
    nemo = [u for u in v2.rows if corpus_of(u.id) == "nemo"]
    assert [u for u in v2.rows if corpus_of(u.id) != "nemo"] == v1  # the other corpora as in v1
    assert len(nemo) == 4481 and all(u.audio is not None and u.text for u in nemo)
    assert Counter(u.label for u in nemo) == {"neutral": 809, "sadness": 769, "happiness": 749, "anger": 749,
                                              "fear": 736, "surprise": 669}  # fmt: skip
    speakers = _splits_of(nemo, lambda u: u.speaker)
    assert all(len(found) == 1 for found in speakers.values())  # speaker-independent
    tested = {s for s, found in speakers.items() if found == {"test_nemo"}}
    first_fold = nemo_folds(read_nemo(DATA / "nemo").rows, 3)[0]
    assert (
        tested
        == {f"nemo/{u.speaker}" for u in first_fold if u.split == "test"}
        == {"nemo/EB0", "nemo/KS0", "nemo/SM0"}
    )
    assert {s for s, found in speakers.items() if found == {"dev_nemo"}} == {"nemo/IC0"}


@needs_data
def test_mamer_base_v2_folds_leave_each_speech_corpus_out_whole(tmp_path):
    for name in ("emodb", "ravdess", "nemo"):
        (tmp_path / name).symlink_to(DATA / name)
    plain = prepare_corpus("mamer-base-v2", tmp_path, tmp_path / "m.jsonl").written[tmp_path / "m.jsonl"]
    folds = list(prepare_corpus("mamer-base-v2", tmp_path, tmp_path / "m.jsonl", folds=3).written.values())
    for held, rows in zip(("emodb", "ravdess", "nemo"), folds, strict=True):
        assert [u.id for u in rows] == [u.id for u in plain]
        for u, before in zip(rows, plain, strict=True):
            assert u.split == (f"test_{held}" if corpus_of(u.id) == held else before.split)
    with pytest.raises(ValueError, match="3 folds"):
        prepare_corpus("mamer-base-v2", tmp_path, tmp_path / "m.jsonl", folds=5)
    (tmp_path / "nemo").unlink()
    with pytest.raises(ValueError, match="no nemo"):
        prepare_corpus("mamer-base-v2", tmp_path, tmp_path / "m.jsonl", folds=3)
