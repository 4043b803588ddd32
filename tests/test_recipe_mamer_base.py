"""The mamer-base recipe scripts end to end: the dev selection rule, the release, the comparison with
single-corpus models and a v2 candidate beside the release, on a few real rows of each corpus (tiny
random-initialised model, logmel + hashed text)."""

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from mamer import EmotionRecognizer
from mamer.checkpoint import read_meta
from mamer.data.corpora.mamer_base import LABELS, emodb_fold, read_mamer_base, read_mamer_base_v2
from mamer.data.manifest import corpus_of, read_manifest, write_manifest
from mamer.workflows.evaluation.lineage import card_lineage
from mamer.workflows.inference.pretrained import builtin_folder
from mamer.workflows.training.loop import train
from test_corpora import DATA, needs_data  # the real corpora in ../shared/data

sys.path.insert(0, str(Path(__file__).parents[1] / "recipes" / "mamer_base"))  # the scripts import each other
import candidate  # noqa: E402
import compare  # noqa: E402
import dev_selection  # noqa: E402
import emodb_folds  # noqa: E402
import release  # noqa: E402

# these tests are the recipe scripts' smallest runs too (tests/test_smoke_scripts.py): `-k smoke` selects them
pytestmark = pytest.mark.smoke
ROWS = {"train": 12}  # rows kept per corpus and split; 6 in every other split


@pytest.fixture(scope="module")
def runs(tiny_config, tmp_path_factory) -> list[Path]:
    """Two seeds of the recipe (task both, the 7 classes, test split test_emodb) on a subsample of mamer-base."""
    folder = tmp_path_factory.mktemp("recipe")
    write_manifest(few_rows(read_mamer_base(DATA).rows), folder / "manifest.jsonl")
    return [
        train(recipe_config(tiny_config, folder, "manifest.jsonl", f"seed{seed}", seed)) for seed in (0, 1)
    ]


@pytest.fixture(scope="module")
def candidate_run(tiny_config, tmp_path_factory) -> Path:
    """The v2 config itself (nEMO, per-speaker normalisation, lone clips, nEMO's class part and draws) on a few
    rows of each corpus of mamer-base v2."""
    folder = tmp_path_factory.mktemp("candidate")
    write_manifest(few_rows(read_mamer_base_v2(DATA).rows, train_per_class=2), folder / "manifest.jsonl")
    options = [f"data.manifest={folder / 'manifest.jsonl'}", "data.audio_layers=[]", "data.text_layers=[]"]
    options += ["train.epochs=1", f"run_dir={folder / 'v2'}"]
    return train(tiny_config(folder, "mamer_base_v2", *options))


def few_rows(rows: list, train_per_class: int | None = None) -> list:
    """The first `ROWS` rows (6 where it names none) of each corpus in each split; with `train_per_class`, that
    many train rows of each class of each corpus instead (so that every class part has rows to train)."""
    kept: dict[tuple, list] = defaultdict(list)
    for u in rows:
        by_class = train_per_class is not None and u.split == "train"
        group = kept[(u.split, corpus_of(u.id), u.label) if by_class else (u.split, corpus_of(u.id))]
        if len(group) < (train_per_class if by_class else ROWS.get(u.split, 6)):
            group.append(u)
    return [u for group in kept.values() for u in group]


@pytest.fixture(scope="module")
def fold1_run(runs, tiny_config) -> Path:
    """The recipe on the same rows with EmoDB's speaker fold 1 of 3: the subsample's EmoDB speakers are 03
    (test), 09 (dev) and 11 (train), so fold 1 tests 09."""
    folder = runs[0].parent
    rows, _ = read_manifest(folder / "manifest.jsonl")
    write_manifest(emodb_fold(rows, 1, 3), folder / "manifest_fold1.jsonl")
    return train(recipe_config(tiny_config, folder, "manifest_fold1.jsonl", "fold1", 0))


def recipe_config(tiny_config, folder: Path, manifest: str, name: str, seed: int):
    options = [f"data.manifest={folder / manifest}", "data.task=both", f"data.labels=[{','.join(LABELS)}]",
               "data.test_split=test_emodb", "train.epochs=1", f"run_dir={folder / name}", f"train.seed={seed}"]  # fmt: skip
    return tiny_config(folder, "quickstart", *options)


def run_main(module, argv: list[str], capsys) -> str:
    old = sys.argv
    sys.argv = [module.__file__, *argv]
    try:
        module.main()
    finally:
        sys.argv = old
    return capsys.readouterr().out


@needs_data
def test_dev_selection_scores_each_corpus_and_picks_the_highest_mean(runs, capsys):
    out = run_main(dev_selection, [str(r) for r in runs], capsys)
    means = {}
    for run in runs:
        row = next(line for line in out.splitlines() if line.startswith(f"| {run.name} |"))
        numbers = [float(x) for x in row.strip("|").split("|")[1:]]
        assert len(numbers) == len(dev_selection.HEADLINES) + 1
        assert numbers[-1] == pytest.approx(sum(numbers[:-1]) / len(dev_selection.HEADLINES), abs=2e-3)
        means[run.name] = numbers[-1]
        emodb = json.loads((run / "report_dev_emodb" / "report.json").read_text())
        assert numbers[0] == pytest.approx(emodb["results"]["audio"]["uar"], abs=5e-4)
    assert f"picked: {max(means, key=means.__getitem__)}" in out


@needs_data
def test_release_writes_a_model_that_loads_with_its_test_scores_on_the_card(runs, tmp_path, capsys):
    out_dir = tmp_path / "release"
    out = run_main(release, [str(runs[1]), str(out_dir)], capsys)
    assert {p.name for p in out_dir.iterdir()} >= {"config.json", "model.safetensors", "README.md"}
    card = (out_dir / "README.md").read_text()
    assert "model-index" in card and "cc-by-nc-sa-4.0" in card
    lineage = card_lineage(card)
    assert lineage["datasets"] == ["EmoDB", "RAVDESS", "MELD", "GoEmotions", "EmoBank"]
    assert lineage["language"] == ["en", "de"] and "nEMO" not in out
    for split in release.test_splits(runs[1]):
        corpus, view, metrics = release.TESTS[split]
        report = json.loads((runs[1] / f"report_{split}" / "report.json").read_text())
        for metric in metrics:
            value = report["results"][view][metric]
            assert f"| {corpus} | {view} | {metric} | {value:.3f} |" in out
    prediction = EmotionRecognizer.from_pretrained(out_dir).predict(text="I can't believe you did that!")
    assert prediction.label in LABELS


@needs_data
def test_release_of_a_v2_run_names_nemo_and_polish_on_its_card(candidate_run, tmp_path, capsys):
    out = run_main(release, [str(candidate_run), str(tmp_path / "release")], capsys)
    lineage = card_lineage((tmp_path / "release" / "README.md").read_text())
    assert lineage["datasets"] == ["EmoDB", "RAVDESS", "nEMO", "MELD", "GoEmotions", "EmoBank"]
    assert lineage["language"] == ["en", "de", "pl"]
    report = json.loads((candidate_run / "report_test_nemo" / "report.json").read_text())
    assert f"| nEMO | audio | uar | {report['results']['audio']['uar']:.3f} |" in out


@needs_data
def test_compare_puts_every_corpus_beside_the_single_corpus_runs(runs, capsys):
    """The second run stands in for a single-corpus EmoDB model (its test split is test_emodb): EmoDB rows get
    both columns and their difference, the other corpora the mamer-base column alone."""
    out = run_main(compare, ["--mamer-base", *map(str, runs), "--single-corpus", str(runs[1])], capsys)
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:3]): line for line in out.splitlines()}
    emodb = rows["EmoDB", "audio", "uar"]
    assert re.search(
        r"\d\.\d{3} ± \d\.\d{3} \(\d\.\d{3} / \d\.\d{3}\) \| \d\.\d{3} \| [+-]\d\.\d{3} \|", emodb
    )
    assert ("EmoDB", "audio", "uar (own classes)") in rows
    assert rows["MELD", "text", "weighted_f1"].rstrip().endswith("| - | - |")


@needs_data
def test_emodb_folds_groups_runs_by_their_test_speakers(runs, fold1_run, capsys):
    """Fold 0 (seed 0 against seed 1) and fold 1 (the fold-1 run on both sides): one row per fold and metric,
    and a mean row over the two folds."""
    argv = ["--mamer-base", str(runs[0]), str(fold1_run), "--single-corpus", str(runs[1]), str(fold1_run)]
    out = run_main(emodb_folds, argv, capsys)
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): line for line in out.splitlines()}
    gaps = []
    for fold in ("03", "09"):
        cells = [cell.strip() for cell in rows[fold, "uar (own classes)"].strip("|").split("|")]
        gaps.append(float(cells[4]))
        assert gaps[-1] == pytest.approx(float(cells[2]) - float(cells[3]), abs=1.5e-3)  # one run a side
    assert gaps[1] == 0.0  # the same run on both sides
    mean = [cell.strip() for cell in rows["mean of 2 folds", "uar (own classes)"].strip("|").split("|")]
    gap, spread = mean[4].split(" ± ")
    assert float(gap) == pytest.approx((gaps[0] + gaps[1]) / 2, abs=1e-3)
    std = float(spread.split()[0])
    assert std == pytest.approx(abs(gaps[0]) / 2**0.5, abs=1e-3)  # two gaps, one of them 0
    assert (
        f"(standard error {std / 2**0.5:.3f}; mamer-base ≥ single-corpus on {(gaps[0] >= 0) + 1} of 2)"
        in spread
    )


@needs_data
def test_candidate_scores_the_speech_corpora_three_ways_beside_the_release(candidate_run, capsys):
    """nEMO's rows trained (its class part and draws in the config) and tested; each speech corpus scored with
    its speakers' clips, a corpus's clips and each clip alone, the text corpora once, the release beside them
    (its text scores from its card)."""
    out = candidate.main([str(candidate_run)])
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:3]): line for line in out.splitlines()}
    for corpus, split in (("EmoDB", "test_emodb"), ("RAVDESS", "test_ravdess"), ("nEMO", "test_nemo")):
        cells = [cell.strip() for cell in rows[corpus, "audio", "uar"].strip("|").split("|")[3:]]
        assert all(re.fullmatch(r"\d\.\d{3}", cell) for cell in cells), cells
        for grouping, cell in zip(candidate.GROUPINGS, cells[1:], strict=True):
            report = json.loads((candidate_run / f"report_{split}_{grouping}" / "report.json").read_text())
            assert float(cell) == pytest.approx(report["results"]["audio"]["uar"], abs=5e-4)
            assert report["audio_normalise"].startswith("speaker")
            assert report["n"]["audio"] == 6
            fused = [cell.strip() for cell in rows[corpus, "audio+text", "uar"].strip("|").split("|")[3:]]
            assert re.fullmatch(r"\d\.\d{3}", fused[0]), fused  # the release with the transcripts
            assert float(fused[1 + list(candidate.GROUPINGS).index(grouping)]) == pytest.approx(
                report["results"]["audio+text"]["uar"], abs=5e-4
            )
    meld = [cell.strip() for cell in rows["MELD", "text", "weighted_f1"].strip("|").split("|")[3:]]
    assert float(meld[0]) == pytest.approx(
        candidate.card_scores(builtin_folder("mamer-base"))["MELD", "weighted_f1"], abs=5e-4
    )
    assert meld[2:] == ["-", "-"]
    meta = read_meta(candidate_run)
    assert meta.run_config.train.corpus_oversample["nemo"] == 2 and meta.run_config.train.lone_share == 0.5
