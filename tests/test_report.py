"""Reports: JSON/markdown/PNG outputs of one run and the side-by-side comparison table."""

import json

import numpy as np
import pytest

from mamer.workflows.evaluation.report import (
    build_report,
    compare_table,
    format_params,
    format_table,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = ["neutral", "happy", "sad", "angry"]


def _categorical_report(extra: dict | None = None) -> dict:
    # Given out of VIEWS order on purpose: build_report must reorder.
    results = {
        "audio+text": {"macro_f1": 0.712, "weighted_f1": 0.735, "accuracy": 0.741, "uar": 0.705},
        "audio": {"macro_f1": 0.631, "weighted_f1": 0.652, "accuracy": 0.660, "uar": 0.622},
        "text": {"macro_f1": 0.584, "weighted_f1": 0.601, "accuracy": 0.613, "uar": 0.579},
    }
    return build_report("categorical", results, LABELS, extra)


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 2_000, path


def test_build_report_structure():
    report = _categorical_report(extra={"corpus": "iemocap", "checkpoint": "best.pt"})
    assert report["task"] == "categorical"
    assert report["labels"] == LABELS
    assert list(report["results"]) == ["audio", "text", "audio+text"]
    assert report["corpus"] == "iemocap" and report["checkpoint"] == "best.pt"
    with pytest.raises(ValueError, match="unknown view"):
        build_report("categorical", {"video": {"macro_f1": 0.5}}, None)
    with pytest.raises(ValueError, match="unknown task"):
        build_report("regression", {}, None)


def test_write_report_categorical(tmp_path):
    report = _categorical_report(extra={"corpus": "iemocap", "num_test": 120})
    rng = np.random.default_rng(0)
    confusions = {v: rng.integers(0, 30, size=(4, 4)) + np.eye(4, dtype=int) * 40 for v in report["results"]}
    confusions["text"][3] = 0  # an empty true-class row must not break the row normalisation
    chance = {"macro_f1": 0.25, "uar": 0.25}
    paths = write_report(tmp_path / "run", report, confusions, chance)

    run = tmp_path / "run"
    names = {p.name for p in paths}
    assert names == {
        "report.json",
        "report.md",
        "views.png",
        "confusion_audio.png",
        "confusion_text.png",
        "confusion_audio+text.png",
    }
    assert all(p.exists() and p.parent == run for p in paths)

    loaded = json.loads((run / "report.json").read_text())
    assert loaded == {**report, "chance": chance}
    assert list(loaded["results"]) == ["audio", "text", "audio+text"]
    assert loaded["results"]["audio"]["macro_f1"] == 0.631

    md = (run / "report.md").read_text()
    for view in ("audio", "text", "audio+text"):
        assert f"| {view} |" in md
    assert "| 0.712 |" in md and "Chance level: macro_f1 0.250, uar 0.250" in md

    for name in names - {"report.json", "report.md"}:
        _assert_png(run / name)


def test_write_report_dimensional_roundtrip(tmp_path):
    results = {
        "audio": {"ccc_arousal": 0.61, "ccc_valence": 0.32, "ccc_dominance": 0.52, "ccc_mean": 0.483},
        "audio+text": {"ccc_arousal": 0.66, "ccc_valence": 0.58, "ccc_dominance": 0.55, "ccc_mean": 0.597},
    }
    report = build_report("dimensional", results, None, extra={"seed": np.int64(3)})
    paths = write_report(tmp_path, report)
    assert {p.name for p in paths} == {"report.json", "report.md", "views.png"}
    loaded = json.loads((tmp_path / "report.json").read_text())
    assert loaded == {**report, "seed": 3}
    assert loaded["labels"] is None
    _assert_png(tmp_path / "views.png")


def test_format_table():
    table = format_table(_categorical_report())
    lines = table.splitlines()
    assert lines[0] == "| view | macro_f1 | uar | weighted_f1 | accuracy |"
    assert lines[1] == "|---|---|---|---|---|"
    assert lines[2] == "| audio | 0.631 | 0.622 | 0.652 | 0.660 |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| audio", "| text", "| audio+text"]


def test_compare_table_marks_missing_views():
    reports = {
        "mamer_base": _categorical_report(),
        "mamer_small": build_report(
            "categorical",
            {"audio": {"macro_f1": 0.60, "uar": 0.59}, "audio+text": {"macro_f1": 0.69, "uar": 0.68}},
            LABELS,
        ),
        "wavlm_audio_only": build_report("categorical", {"audio": {"macro_f1": 0.642, "uar": 0.631}}, LABELS),
    }
    params = {"mamer_base": 1_234_567, "mamer_small": 98_400, "wavlm_audio_only": None}
    lines = compare_table(reports, params).splitlines()
    assert lines[0] == (
        "| system | audio macro_f1 | audio uar | text macro_f1 | text uar"
        " | audio+text macro_f1 | audio+text uar | params |"
    )
    assert lines[2] == "| mamer_base | 0.631 | 0.622 | 0.584 | 0.579 | 0.712 | 0.705 | 1.23M |"
    assert lines[3] == "| mamer_small | 0.600 | 0.590 | - | - | 0.690 | 0.680 | 98.4K |"
    assert lines[4] == "| wavlm_audio_only | 0.642 | 0.631 | - | - | - | - | - |"


def test_compare_table_both_tasks():
    dim = build_report("dimensional", {"audio": {"ccc_mean": 0.5}}, None)
    table = compare_table({"cat": _categorical_report(), "dim": dim}, {"cat": 10, "dim": 2_500_000_000})
    header, _, cat, dim_row = table.splitlines()
    assert "audio ccc_mean" in header and "audio uar" in header
    assert cat.endswith("| 10 |") and dim_row.endswith("| 2.5B |")
    assert "| dim | - | - | 0.500 |" in dim_row


def test_format_params():
    assert format_params(None) == "-"
    assert format_params(950) == "950"
    assert format_params(12_300) == "12.3K"
    assert format_params(1_234_567) == "1.23M"
