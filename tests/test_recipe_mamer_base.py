"""The mamer-base recipe scripts end to end: the dev selection rule, the release and the comparison with dedicated
models, on a few real rows of each of the five corpora (tiny random-initialised model, logmel + hashed text)."""

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from mamer import EmotionRecognizer
from mamer.data.corpora.mamer_base import LABELS, read_mamer_base
from mamer.data.manifest import corpus_of, write_manifest
from mamer.workflows.training.loop import train
from test_corpora import DATA, needs_data  # the real corpora in ../shared/data

sys.path.insert(0, str(Path(__file__).parents[1] / "recipes" / "mamer_base"))  # the scripts import each other
import compare  # noqa: E402
import dev_selection  # noqa: E402
import release  # noqa: E402

ROWS = {"train": 12}  # rows kept per corpus and split; 6 in every other split


@pytest.fixture(scope="module")
def runs(tiny_config, tmp_path_factory) -> list[Path]:
    """Two seeds of the recipe (task both, the 7 classes, test split test_emodb) on a subsample of mamer-base."""
    folder = tmp_path_factory.mktemp("recipe")
    kept: dict[tuple[str, str], list] = defaultdict(list)
    for u in read_mamer_base(DATA).rows:
        group = kept[u.split, corpus_of(u.id)]
        if len(group) < ROWS.get(u.split, 6):
            group.append(u)
    write_manifest([u for group in kept.values() for u in group], folder / "manifest.jsonl")
    options = [f"data.manifest={folder / 'manifest.jsonl'}", "data.task=both", f"data.labels=[{','.join(LABELS)}]",
               "data.test_split=test_emodb", "train.epochs=1"]  # fmt: skip
    return [
        train(
            tiny_config(
                folder, "quickstart", *options, f"run_dir={folder / f'seed{seed}'}", f"train.seed={seed}"
            )
        )
        for seed in (0, 1)
    ]


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
    for split, (corpus, view, metrics) in release.TESTS.items():
        report = json.loads((runs[1] / f"report_{split}" / "report.json").read_text())
        for metric in metrics:
            value = report["results"][view][metric]
            assert f"| {corpus} | {view} | {metric} | {value:.3f} |" in out
    prediction = EmotionRecognizer.from_pretrained(out_dir).predict(text="I can't believe you did that!")
    assert prediction.label in LABELS


@needs_data
def test_compare_puts_every_corpus_beside_the_dedicated_runs(runs, capsys):
    """The second run stands in for a dedicated EmoDB model (its test split is test_emodb): EmoDB rows get both
    columns and their difference, the other corpora the mamer-base column alone."""
    out = run_main(compare, ["--mamer-base", *map(str, runs), "--dedicated", str(runs[1])], capsys)
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:3]): line for line in out.splitlines()}
    emodb = rows["EmoDB", "audio", "uar"]
    assert re.search(
        r"\d\.\d{3} ± \d\.\d{3} \(\d\.\d{3} / \d\.\d{3}\) \| \d\.\d{3} \| [+-]\d\.\d{3} \|", emodb
    )
    assert ("EmoDB", "audio", "uar (own classes)") in rows
    assert rows["MELD", "text", "weighted_f1"].rstrip().endswith("| - | - |")
