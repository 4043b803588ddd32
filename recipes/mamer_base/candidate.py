"""A mamer-base v2 candidate against the released model, corpus by corpus: the table of docs/mamer-base.md, "v2".

    python recipes/mamer_base/candidate.py RUN [RUN ...] [--release mamer-base] [--out FILE]

Each candidate run (a seed of config `mamer_base_v2`) is scored on every test split of its manifest that a
release's card can have (`release.TESTS`, nEMO's included), the view and metrics of the card, and the
speech corpora also with their transcripts (audio+text: is fusion ever worse than audio alone?). A candidate
trained with `audio_normalise: speaker` is scored on the speech corpora three ways: each clip standardised by its
speaker's clips, by all the test corpus's clips as one group (a folder from one source, `--one-source`), and each
clip alone (what `predict` does with one clip). The released model is scored on the same audio rows as a user
runs it (`EmotionRecognizer.predict_batch`, the clips alone and with their transcripts); its text scores are its
card's (the suite checks that the shipped weights reproduce the card). Cells are the mean ± std over the runs
given. Reports go to `RUN/report_<split>_<grouping>/`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from compare import show, spread
from release import TESTS

from mamer import EmotionRecognizer
from mamer.checkpoint import read_meta
from mamer.data.manifest import Utterance, read_manifest
from mamer.metrics import categorical_metrics
from mamer.workflows.evaluation.evaluate import evaluate_run
from mamer.workflows.evaluation.lineage import card_header, read_card
from mamer.workflows.inference.pretrained import builtin_folder

GROUPINGS = {"speaker": "speaker's clips", "corpus": "corpus's clips as one group", "none": "each clip alone"}


def views_of(split: str) -> list[str]:
    """The views a split is scored on: the card's, and audio+text beside audio."""
    view = TESTS[split][1]
    return [view, "audio+text"] if view == "audio" else [view]


def candidate_scores(run: Path, split: str) -> dict[str, dict[str, dict[str, float]]]:
    """grouping -> view -> metric -> value of one run on one split: the three groupings for the speech corpora
    of a model normalised per speaker, else `speaker` alone (the groups change nothing then)."""
    _, view, metrics = TESTS[split]
    normalised = read_meta(run).run_config.model.audio_normalise == "speaker"
    groupings = list(GROUPINGS) if view == "audio" and normalised else ["speaker"]
    found = {}
    for grouping in groupings:
        report = evaluate_run(run, split, report_dir=run / f"report_{split}_{grouping}", groups=grouping)
        found[grouping] = {v: {m: report["results"][v][m] for m in metrics} for v in views_of(split)}
    return found


def released_scores(
    recognizer: EmotionRecognizer, manifest: list[Utterance], split: str
) -> dict[str, dict[str, float]]:
    """view -> metrics of the released model on a split's audio rows of ``manifest``, each clip alone: its
    audio, and its audio with its transcript (audio+text)."""
    rows = [u for u in manifest if u.split == split and u.audio is not None and u.label]
    index = {label: i for i, label in enumerate(recognizer.labels)}
    unknown = sorted({u.label for u in rows} - set(index))
    if unknown:
        raise ValueError(f"{split}: classes {unknown} are not the release's {recognizer.labels}")
    truth = np.array([index[u.label] for u in rows])
    found = {}
    for view, items in (("audio", [{"audio": u.audio} for u in rows]),
                        ("audio+text", [{"audio": u.audio, "text": u.text} for u in rows])):  # fmt: skip
        predicted = recognizer.predict_batch(items, batch_size=16)
        found[view] = categorical_metrics(truth, np.array([index[p.label] for p in predicted]), len(index))
    return found


def card_scores(folder: Path) -> dict[tuple[str, str], float]:
    """(dataset, metric) -> value from a release's card (its model-index header)."""
    header = card_header(read_card(folder))
    return {
        (result["dataset"]["name"], metric["type"]): metric["value"]
        for result in header.get("model-index", [{}])[0].get("results", [])
        for metric in result["metrics"]
    }


def table(runs: list[Path], release: str) -> str:
    """The markdown table: a row per test split of the first run's manifest, view and metric."""
    folder = builtin_folder(release) if not Path(release).exists() else Path(release)
    card, recognizer = card_scores(folder), EmotionRecognizer.load(str(folder))
    manifest = read_manifest(read_meta(runs[0]).run_config.data.manifest)[0]
    splits = {u.split for u in manifest}
    columns = ["v1 (released), each clip alone", *(f"candidate: {name}" for name in GROUPINGS.values())]
    lines = [f"| test set | view | metric | {' | '.join(columns)} |", "|---" * (3 + len(columns)) + "|"]
    for split, (corpus, view, metrics) in TESTS.items():
        if split not in splits:
            continue
        per_run = [candidate_scores(run, split) for run in runs]
        released = released_scores(recognizer, manifest, split) if view == "audio" else {}
        for scored in views_of(split):
            for metric in metrics:
                v1 = released[scored][metric] if released else card.get((corpus, metric))
                cells = ["-" if v1 is None else f"{v1:.3f}"]
                for grouping in GROUPINGS:
                    values = [scores[grouping][scored][metric] for scores in per_run if grouping in scores]
                    cells.append(spread(values) if values else "-")
                lines.append(f"| {corpus} | {scored} | {metric} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="candidate runs (seeds of one config)")
    parser.add_argument("--release", default="mamer-base", help="the released model: a name or folder")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)
    text = table(args.runs, args.release)
    show(text, args.out)
    return text


if __name__ == "__main__":
    main()
