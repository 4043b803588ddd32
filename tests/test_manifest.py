import json
from pathlib import Path

import pytest

from mamer.data.manifest import ManifestError, Utterance, read_manifest, splits, write_manifest


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "a.wav").write_bytes(b"RIFF")
    return tmp_path


GOOD = [
    {"id": "a", "audio": "audio/a.wav", "text": "hello", "label": "happy", "arousal": 4, "valence": "4.5",
     "dominance": None, "speaker": "s1", "split": "train"},
    {"id": "b", "text": "only text", "split": "test"},
]  # fmt: skip
# (raw JSONL line, expected fragment of its message); each line is a bad row, skipped.
BAD = [
    ('{"id": "c", "text": "x"}', "missing required field 'split'"),
    ('{"text": "x", "split": "train"}', "missing required field 'id'"),
    ('{"id": "a", "text": "x", "split": "train"}', "duplicate id 'a' (first on line 1)"),
    ('{"id": "d", "audio": "audio/missing.wav", "split": "train"}', "audio file not found"),
    ('{"id": "e", "split": "train", "label": "sad"}', "neither audio nor text"),
    ('{"id": "f", "text": "x", "split": "train", "arousal": "high"}', "arousal must be a number"),
    ('{"id": "g", "text": "x", "split": "train", "valence": Infinity}', "valence must be finite"),
    ('{"id": "h", "text": "x", "split": "train", "dominance": true}', "dominance must be a number"),
    ('{"id": "i", "text": "x", "split": ', "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_good_jsonl_rows(folder):
    path = write_jsonl(folder / "m.jsonl", [json.dumps(r) for r in GOOD])
    utts, problems = read_manifest(path)
    assert problems == []
    a, b = utts
    assert a.audio == (folder / "audio" / "a.wav").resolve() and a.arousal == 4.0 and a.valence == 4.5
    assert a.dominance is None and a.speaker == "s1" and a.label == "happy"
    assert b.audio is None and b.text == "only text" and b.split == "test" and b.label is None


def test_each_bad_jsonl_row_is_skipped_with_file_and_line(folder):
    lines = [json.dumps(GOOD[0]), "", *[line for line, _ in BAD]]
    path = write_jsonl(folder / "m.jsonl", lines)
    utts, problems = read_manifest(path)
    assert [u.id for u in utts] == ["a"]
    assert len(problems) == len(BAD)
    for line_no, ((_, expected), message) in enumerate(zip(BAD, problems, strict=True), start=3):
        assert message.startswith(f"{path}:{line_no}: ") and expected in message


def test_empty_text_is_no_text_with_a_message(folder):
    rows = [
        {"id": "a", "audio": "audio/a.wav", "text": "  ", "split": "dev"},
        {"id": "b", "text": "", "split": "dev"},
    ]
    path = write_jsonl(folder / "m.jsonl", [json.dumps(r) for r in rows])
    utts, problems = read_manifest(path)
    assert [(u.id, u.text) for u in utts] == [("a", None)]
    assert f"{path}:1: empty text" in problems[0] and f"{path}:2: empty text" in problems[1]
    assert f"{path}:2: row has neither audio nor text" in problems[2]


def test_strict_raises_listing_every_problem(folder):
    path = write_jsonl(folder / "m.jsonl", [json.dumps(GOOD[0]), *[line for line, _ in BAD]])
    with pytest.raises(ManifestError) as info:
        read_manifest(path, strict=True)
    assert len(info.value.problems) == len(BAD) and "invalid JSON" in str(info.value)


def test_csv_rows_empty_cells_missing_and_line_numbers(folder):
    path = folder / "m.csv"
    path.write_text(
        "id,audio,text,label,arousal,valence,dominance,speaker,split\n"
        "a,audio/a.wav,hello,happy,4,4.5,,s1,train\n"
        'b,,"two, words",,,,,,test\n'
        "c,audio/nope.wav,x,,,,,,train\n"
        "d,,x,,abc,,,,train\n"
        "e,,x,,,inf,,,train\n"
        ",,x,,,,,,train\n"
        "f,,,,,,,,dev\n"
    )
    utts, problems = read_manifest(path)
    assert [u.id for u in utts] == ["a", "b"] and utts[1].text == "two, words" and utts[1].arousal is None
    assert utts[0].dominance is None and utts[0].valence == 4.5
    expected = [(4, "audio file not found"), (5, "arousal must be a number"), (6, "valence must be finite"),
                (7, "missing required field 'id'"), (8, "neither audio nor text")]  # fmt: skip
    assert len(problems) == len(expected)
    for (line_no, fragment), message in zip(expected, problems, strict=True):
        assert message.startswith(f"{path}:{line_no}: ") and fragment in message


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_write_then_read_round_trip(folder, suffix):
    utts, _ = read_manifest(write_jsonl(folder / "m.jsonl", [json.dumps(r) for r in GOOD]))
    out = folder / "sub" / f"copy{suffix}"
    write_manifest(utts, out)
    again, problems = read_manifest(out)
    assert problems == [] and again == utts
    if suffix == ".jsonl":
        assert json.loads(out.read_text().splitlines()[0])["audio"] == "../audio/a.wav"


def test_splits_groups_in_order():
    def utt(i: str, split: str) -> Utterance:
        return Utterance(i, None, "t", None, None, None, None, None, split)

    groups = splits([utt("a", "train"), utt("b", "test"), utt("c", "train")])
    assert {k: [u.id for u in v] for k, v in groups.items()} == {"train": ["a", "c"], "test": ["b"]}


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ManifestError, match="use .jsonl or .csv"):
        read_manifest(tmp_path / "m.txt")
