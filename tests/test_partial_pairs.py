"""The modality-agnostic promise end to end: one manifest mixing audio-only, text-only and paired rows."""

import dataclasses

from mamer.checkpoint import load_model
from mamer.data.features import load_split
from mamer.data.manifest import read_manifest, splits, write_manifest
from mamer.evaluate import evaluate_run
from mamer.train import train


def _partial_manifest(tiny_corpus, folder):
    """Rows cycle paired / audio-only / text-only within each split, so every split keeps paired rows."""
    utts, _ = read_manifest(tiny_corpus, strict=True)
    rows = []
    for group in splits(utts).values():
        for i, u in enumerate(group):
            kind = i % 3
            rows.append(dataclasses.replace(u, text=None) if kind == 1 else
                        dataclasses.replace(u, audio=None) if kind == 2 else u)  # fmt: skip
    path = folder / "partial.jsonl"
    write_manifest(rows, path)
    return path


def test_partially_paired_manifest_trains_caches_and_evaluates(tiny_corpus, tiny_config, tmp_path):
    manifest = _partial_manifest(tiny_corpus, tmp_path)
    utts, _ = read_manifest(manifest, strict=True)
    by_split = splits(utts)
    for group in by_split.values():
        kinds = {(u.audio is not None, u.text is not None) for u in group}
        assert kinds == {(True, True), (True, False), (False, True)}

    run_dir = train(tiny_config(tmp_path, "quickstart", f"data.manifest={manifest}", "train.epochs=1"))

    _, meta = load_model(run_dir)
    for split, group in by_split.items():
        cached = load_split(meta.features, split)
        assert cached.ids == [u.id for u in group]
        for i, u in enumerate(group):
            assert (cached.audio_of(i) is not None) == (u.audio is not None), u.id
            assert (cached.text_of(i) is not None) == (u.text is not None), u.id

    report = evaluate_run(run_dir)
    test = by_split["test"]
    assert report["n"] == {
        "audio": sum(u.audio is not None for u in test),
        "text": sum(u.text is not None for u in test),
        "audio+text": sum(u.audio is not None and u.text is not None for u in test),
    }
    assert all(report["results"][view] for view in ("audio", "text", "audio+text"))


def test_dev_score_leaves_out_views_without_rows(tiny_corpus, tiny_config, tmp_path):
    """On a text-only corpus the unified model's dev score is the text view's macro-F1, not a third of it."""
    utts, _ = read_manifest(tiny_corpus, strict=True)
    manifest = tmp_path / "text_only.jsonl"
    write_manifest([dataclasses.replace(u, audio=None) for u in utts], manifest)
    run_dir = train(tiny_config(tmp_path, "quickstart", f"data.manifest={manifest}", "train.epochs=2"))
    _, meta = load_model(run_dir)
    report = evaluate_run(run_dir, split="dev", report_dir=tmp_path / "dev_report")
    assert report["n"]["audio"] == report["n"]["audio+text"] == 0
    assert meta.dev_score == report["results"]["text"]["macro_f1"] > 0
