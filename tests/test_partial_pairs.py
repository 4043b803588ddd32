"""The modality-agnostic promise end to end: one manifest mixing audio-only, text-only and paired rows."""

import dataclasses
import json
from collections import Counter

import numpy as np
import pytest

from mamer.checkpoint import load_model
from mamer.cli import main
from mamer.data.cache import load_split
from mamer.data.extract import prepare_features
from mamer.data.manifest import read_manifest, splits, write_manifest
from mamer.scoring import main_score
from mamer.workflows.evaluation.evaluate import evaluate_run
from mamer.workflows.training.loop import train
from mamer.workflows.training.session import make_loaders, row_weights, start_session


def test_partially_paired_manifest_trains_caches_and_evaluates(partial_manifest, tiny_config, tmp_path):
    manifest = partial_manifest
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


def test_audio_oversample_repeats_audio_rows_in_the_train_loader(partial_manifest, tiny_config, tmp_path):
    """`train.audio_oversample=3`: each train row with audio is drawn 3 times an epoch, text-only rows once; the
    class weights count the repeats; dev is left as it is."""
    manifest = partial_manifest
    by_split = splits(read_manifest(manifest, strict=True)[0])
    config = tiny_config(tmp_path, "quickstart", f"data.manifest={manifest}", "train.audio_oversample=3")
    features = prepare_features(config, progress=False)
    loaders = make_loaders(config, features)

    drawn = [i for batch in loaders.train for i in batch.ids]
    expected = {u.id: 3 if u.audio is not None else 1 for u in by_split["train"]}
    assert {i: drawn.count(i) for i in set(drawn)} == expected
    assert [i for batch in loaders.dev for i in batch.ids] == [u.id for u in by_split["dev"]]
    for batch in loaders.train:  # a repeated row carries its own features, not a neighbour's
        for i, has_audio in zip(batch.ids, batch.has_audio.tolist(), strict=True):
            assert has_audio == (expected[i] == 3)

    dataset = loaders.train.dataset  # each class weighs as much in all, repeats counted
    weight_of = Counter()
    for u, w in zip(dataset.utterances, row_weights(dataset), strict=True):
        weight_of[u.label] += w
    assert len(weight_of) > 1 and all(
        w == pytest.approx(len(dataset) / len(weight_of)) for w in weight_of.values()
    )

    with pytest.raises(ValueError, match="train.audio_oversample must be an integer >= 1"):
        tiny_config(tmp_path, "quickstart", "train.audio_oversample=0")


def test_corpus_oversample_and_class_balance_count_each_corpus_apart(partial_manifest, tiny_config, tmp_path):
    """`train.corpus_oversample.talk=4` with `audio_oversample=2`: rows of corpus `talk` (id prefix) are drawn 4
    times whether or not they have audio, the other corpus's audio rows twice and its text-only rows once; a count
    below 1 is an error naming the corpus."""
    utts, _ = read_manifest(partial_manifest, strict=True)
    joined = [dataclasses.replace(u, id=f"{('talk', 'read')[i % 2]}/{u.id}") for i, u in enumerate(utts)]
    manifest = tmp_path / "joined.jsonl"
    write_manifest(joined, manifest)
    overrides = [f"data.manifest={manifest}", "train.audio_oversample=2", "train.corpus_oversample.talk=4"]
    config = tiny_config(tmp_path, "quickstart", *overrides)
    loaders = make_loaders(config, prepare_features(config, progress=False))

    drawn = [i for batch in loaders.train for i in batch.ids]
    train_rows = [u for u in joined if u.split == "train"]
    expected = {u.id: 4 if u.id.startswith("talk/") else 2 if u.audio is not None else 1 for u in train_rows}
    assert {i: drawn.count(i) for i in set(drawn)} == expected
    assert set(expected.values()) == {1, 2, 4}

    # loss.class_balance=corpus: within each corpus every class weighs as much, and the rows average 1
    dataset = loaders.train.dataset
    by_corpus = row_weights(dataset, "corpus")
    for corpus in ("talk", "read"):
        mine = [
            (u.label, w)
            for u, w in zip(dataset.utterances, by_corpus, strict=True)
            if u.id.startswith(corpus)
        ]
        totals = Counter()
        for label, w in mine:
            totals[label] += w
        assert sum(w for _, w in mine) == pytest.approx(len(mine))
        assert max(totals.values()) == pytest.approx(min(totals.values()))
    assert by_corpus != row_weights(dataset)  # the two corpora's classes are not drawn alike
    # loss.class_balance=corpus_equal: each corpus weighs as much in all (talk's rows are drawn twice as often)
    equal = row_weights(dataset, "corpus_equal")
    labelled = [(u.id.split("/")[0], w) for u, w in zip(dataset.utterances, equal, strict=True) if u.label]
    shares = Counter()
    for corpus, w in labelled:
        shares[corpus] += w
    assert shares["talk"] == pytest.approx(shares["read"]) and shares.total() == pytest.approx(len(labelled))
    assert equal != by_corpus
    session_config = tiny_config(tmp_path, "quickstart", *overrides, "loss.class_balance=corpus")
    session = start_session(session_config, prepare_features(session_config, progress=False))
    assert session.loaders.train.dataset.row_weights == pytest.approx(by_corpus)
    with pytest.raises(
        ValueError, match="loss.class_balance must be 'split', 'corpus' or 'corpus_equal', got 'speaker'"
    ):
        tiny_config(tmp_path, "quickstart", "loss.class_balance=speaker")

    with pytest.raises(ValueError, match="train.corpus_oversample.talk must be an integer >= 1, got 0"):
        tiny_config(tmp_path, "quickstart", "train.corpus_oversample.talk=0")
    typo = tiny_config(tmp_path, "quickstart", *overrides, "train.corpus_oversample.tlak=4")
    with pytest.raises(ValueError, match="names tlak, which no train row .* belongs to; .*: read, talk"):
        make_loaders(typo, prepare_features(typo, progress=False))


def test_evaluate_by_corpus_scores_each_prefix_on_its_own(tiny_corpus, tiny_config, tmp_path):
    """A joined manifest (ids `<corpus>/...`, as mamer-base's): `mamer evaluate --by-corpus --out` scores each
    corpus's rows apart; the counts add up to the split's and the accuracies, weighted by them, to its own."""
    utts, _ = read_manifest(tiny_corpus, strict=True)
    joined = [dataclasses.replace(u, id=f"{('talk', 'read')[i % 2]}/{u.id}") for i, u in enumerate(utts)]
    manifest = tmp_path / "joined.jsonl"
    write_manifest(joined, manifest)
    run_dir = train(tiny_config(tmp_path, "quickstart", f"data.manifest={manifest}", "train.epochs=1"))
    out = tmp_path / "dev_report"

    assert main(["evaluate", str(run_dir), "--split", "dev", "--by-corpus", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    dev = [u for u in joined if u.split == "dev"]
    assert set(report["by_corpus"]) == {u.id.split("/")[0] for u in dev} == {"talk", "read"}
    assert "## By corpus" in (out / "report.md").read_text()
    assert not (run_dir / "MODEL_CARD.md").exists()  # a report written elsewhere leaves the run's card alone
    for view in ("audio", "text", "audio+text"):
        parts = [c for c in report["by_corpus"].values() if view in c["results"]]
        assert sum(c["n"][view] for c in parts) == report["n"][view] == len(dev)
        correct = sum(c["results"][view]["accuracy"] * c["n"][view] for c in parts)
        assert correct / len(dev) == pytest.approx(report["results"][view]["accuracy"])


def test_evaluate_labels_restricts_the_classes_scored(train_tiny, tmp_path):
    """`mamer evaluate --labels`: only those classes are predicted and scored; the others are named as not
    scored, and a class the model does not know is a clear error."""
    run_dir = train_tiny(tmp_path)
    _, meta = load_model(run_dir)
    kept = meta.label_space.labels[:2]
    out = tmp_path / "two_classes"
    assert main(["evaluate", str(run_dir), "--labels", ",".join(kept), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    test = [u for u in read_manifest(meta.run_config.data.manifest, strict=True)[0] if u.split == "test"]
    assert report["n"]["audio"] == sum(u.label in kept for u in test)
    assert report["unscored"]["rows"] == sum(u.label not in kept for u in test) > 0
    assert report["labels_scored"] == kept and report["chance"]["uar"] == 0.5
    assert main(["evaluate", str(run_dir), "--labels", "bliss", "--out", str(out)]) == 2


def test_select_by_corpus_ranks_by_the_mean_of_each_corpus_over_joined_dev_splits(
    tiny_corpus, tiny_config, tmp_path
):
    """`data.dev_split=[dev,dev_read]` reads both splits; `train.select_by=corpus` scores each corpus (id prefix)
    on its own rows and ranks by their mean: the saved dev score is what `mamer evaluate --by-corpus` gives."""
    utts, _ = read_manifest(tiny_corpus, strict=True)
    joined = []
    for i, u in enumerate(utts):
        corpus = ("talk", "read")[i % 2]
        split = "dev_read" if corpus == "read" and u.split == "dev" else u.split
        joined.append(dataclasses.replace(u, id=f"{corpus}/{u.id}", split=split))
    manifest = tmp_path / "joined.jsonl"
    write_manifest(joined, manifest)
    options = [f"data.manifest={manifest}", "data.dev_split=[dev,dev_read]", "train.select_by=corpus"]
    run_dir = train(tiny_config(tmp_path, "quickstart", *options, "train.epochs=1"))
    _, meta = load_model(run_dir)

    per_corpus = []
    for split, corpus in (("dev", "talk"), ("dev_read", "read")):
        report = evaluate_run(run_dir, split=split, by_corpus=True, report_dir=tmp_path / split)
        assert list(report["by_corpus"]) == [corpus]
        results = report["by_corpus"][corpus]["results"]
        views = [v for v in report["trained_views"] if results.get(v)]
        assert len(views) == 3
        per_corpus.append(np.mean([main_score(results[v], "categorical") for v in views]))
    assert meta.dev_score == pytest.approx(np.mean(per_corpus))

    with pytest.raises(ValueError, match="train.select_by must be 'split' or 'corpus'"):
        tiny_config(tmp_path, "quickstart", "train.select_by=speaker")
    with pytest.raises(ValueError, match="data.dev_split must be a split name or a non-empty list"):
        tiny_config(tmp_path, "quickstart", "data.dev_split=[]")
