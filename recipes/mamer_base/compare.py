"""mamer-base against single-corpus models trained by the same recipe, over seeds: the comparison table of
docs/mamer-base.md.

    python recipes/mamer_base/compare.py --mamer-base RUN [RUN ...] --single-corpus RUN [RUN ...]

Every mamer-base run is scored on each corpus's test split that its manifest holds (`release.TESTS`: the view
and metrics per corpus), every single-corpus run on its own config's `data.test_split`; each score is the mean ±
std over the runs given (seeds), with the single runs' values beside it. Reports go to `RUN/report_<split>/`.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from release import TESTS, test_splits

from mamer.checkpoint import read_meta
from mamer.workflows.evaluation.evaluate import evaluate_run

# EmoDB has no surprise: also scored with the predictions restricted to its own six classes, as a user scoring
# EmoDB would (`EmotionRecognizer.predict(labels=...)`, `mamer evaluate --labels`)
OWN_CLASSES = {"test_emodb": ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]}


def run_scores(run_dir: Path, split: str) -> dict[str, float]:
    """The split's headline metrics (release.TESTS) of one run, scored again now; `<metric> (own classes)`
    too where the corpus has fewer classes than the model (OWN_CLASSES)."""
    _, view, metrics = TESTS[split]
    report = evaluate_run(run_dir, split, report_dir=run_dir / f"report_{split}")
    found = {metric: report["results"][view][metric] for metric in metrics}
    if split in OWN_CLASSES:
        report = evaluate_run(
            run_dir, split, report_dir=run_dir / f"report_{split}_own", labels=OWN_CLASSES[split]
        )
        found |= {f"{metric} (own classes)": report["results"][view][metric] for metric in metrics}
    return found


def spread(values: list[float]) -> str:
    """Mean ± sample std (just the value for one run), and the single values."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    each = " / ".join(f"{v:.3f}" for v in values)
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} ({each})"


def side_by_side(ours: list[float], theirs: list[float]) -> tuple[str, float | None]:
    """The mamer-base, single-corpus and difference-of-means cells of one table row ("-" where a side has no run),
    and that difference (None then)."""
    gap = statistics.mean(ours) - statistics.mean(theirs) if ours and theirs else None
    cells = [
        spread(ours) if ours else "-",
        spread(theirs) if theirs else "-",
        "-" if gap is None else f"{gap:+.3f}",
    ]
    return " | ".join(cells), gap


def table(base: dict[str, list[dict]], single: dict[str, list[dict]]) -> str:
    lines = [
        "| test set | view | metric | mamer-base | single-corpus | difference of means |",
        "|---|---|---|---|---|---|",
    ]
    for split, (corpus, view, metrics) in TESTS.items():
        if split not in base and split not in single:
            continue
        own = [f"{metric} (own classes)" for metric in metrics] if split in OWN_CLASSES else []
        for metric in [*metrics, *own]:
            ours = [scores[metric] for scores in base.get(split, [])]
            theirs = [scores[metric] for scores in single.get(split, [])]
            cells, _ = side_by_side(ours, theirs)
            lines.append(f"| {corpus} | {view} | {metric} | {cells} |")
    return "\n".join(lines)


def runs_parser(doc: str, base_help: str, single_help: str) -> argparse.ArgumentParser:
    """The command line of the comparison scripts: mamer-base runs, single-corpus runs, and --out."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mamer-base", nargs="+", type=Path, required=True, help=base_help)
    parser.add_argument("--single-corpus", nargs="+", type=Path, required=True, help=single_help)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    return parser


def show(text: str, out: Path | None) -> None:
    """Print the table, and write it to ``out`` when given."""
    print(text)
    if out:
        out.write_text(text + "\n")


def main() -> None:
    parser = runs_parser(__doc__, "mamer-base runs (seeds)", "single-corpus runs (same recipe), any corpus")
    args = parser.parse_args()
    splits = test_splits(args.mamer_base[0])
    base = {split: [run_scores(run, split) for run in args.mamer_base] for split in splits}
    single: dict[str, list[dict]] = {}
    for run in args.single_corpus:
        split = read_meta(run).run_config.data.test_split
        if split not in TESTS:
            parser.error(f"{run}: its test split {split!r} is none of {sorted(TESTS)}")
        single.setdefault(split, []).append(run_scores(run, split))
    show(table(base, single), args.out)


if __name__ == "__main__":
    main()
