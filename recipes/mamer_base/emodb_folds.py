"""mamer-base against the single-corpus EmoDB model (same recipe) over EmoDB's speaker folds: the cross-validated
table of docs/mamer-base.md.

    python recipes/mamer_base/emodb_folds.py --mamer-base RUN [RUN ...] --single-corpus RUN [RUN ...]

Each run is put in its fold by the EmoDB speakers of its manifest's ``test_emodb`` split (the manifests of
``mamer prepare --corpus mamer-base --folds 5``). Each run is scored on ``test_emodb`` over EmoDB's own classes
(`compare.run_scores`); a fold's cell is the mean over its runs (seeds), the last row the mean over the folds that
both sides have, with the per-fold differences' mean ± std, its standard error and how many favour mamer-base.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from compare import run_scores, runs_parser, show, side_by_side

from mamer.checkpoint import read_meta
from mamer.data.manifest import read_manifest

SPLIT = "test_emodb"
METRICS = ("uar (own classes)", "macro_f1 (own classes)")


def test_speakers(run_dir: Path) -> str:
    """The EmoDB speakers a run tests on (its fold), as "03, 08"."""
    manifest = Path(read_meta(run_dir).run_config.data.manifest)
    if not manifest.is_file():
        raise SystemExit(f"{run_dir}: its manifest {manifest} is not there (run this from where it trained)")
    rows, _ = read_manifest(manifest)
    speakers = sorted({u.speaker.split("/")[-1] for u in rows if u.split == SPLIT and u.speaker})
    if not speakers:
        raise SystemExit(f"{run_dir}: its manifest {manifest} has no {SPLIT} rows with a speaker")
    return ", ".join(speakers)


def by_fold(runs: list[Path]) -> dict[str, list[dict[str, float]]]:
    """Fold (test speakers) -> the scores of its runs."""
    found: dict[str, list[dict[str, float]]] = {}
    for run in runs:
        found.setdefault(test_speakers(run), []).append(run_scores(run, SPLIT))
    return found


def table(base: dict[str, list[dict]], single: dict[str, list[dict]]) -> str:
    lines = [
        "| EmoDB test speakers | metric | mamer-base | single-corpus | difference of means |",
        "|---|---|---|---|---|",
    ]
    folds = sorted(set(base) | set(single))
    both = [fold for fold in folds if fold in base and fold in single]
    for metric in METRICS:
        gaps = []
        for fold in folds:
            ours = [scores[metric] for scores in base.get(fold, [])]
            theirs = [scores[metric] for scores in single.get(fold, [])]
            cells, gap = side_by_side(ours, theirs)
            if gap is not None:
                gaps.append(gap)
            lines.append(f"| {fold} | {metric} | {cells} |")
        if len(both) > 1:
            ours = [statistics.mean(s[metric] for s in base[fold]) for fold in both]
            theirs = [statistics.mean(s[metric] for s in single[fold]) for fold in both]
            ahead = sum(gap >= 0 for gap in gaps)
            lines.append(
                f"| mean of {len(both)} folds | {metric} | {statistics.mean(ours):.3f} | "
                f"{statistics.mean(theirs):.3f} | {statistics.mean(gaps):+.3f} ± {statistics.stdev(gaps):.3f} "
                f"(standard error {statistics.stdev(gaps) / len(gaps) ** 0.5:.3f}; "
                f"mamer-base ≥ single-corpus on {ahead} of {len(gaps)}) |"
            )
    return "\n".join(lines)


def main() -> None:
    args = runs_parser(
        __doc__, "mamer-base runs, any fold", "single-corpus EmoDB runs (same recipe)"
    ).parse_args()
    show(table(by_fold(args.mamer_base), by_fold(args.single_corpus)), args.out)


if __name__ == "__main__":
    main()
