"""The dev selection rule of mamer-base: each candidate run's headline dev score per corpus, and their mean.

    python recipes/mamer_base/dev_selection.py RUN [RUN ...]

Headline dev scores: EmoDB and RAVDESS audio-view UAR (splits `dev_emodb`, `dev_ravdess`), MELD text
weighted-F1, GoEmotions text macro-F1 and EmoBank text CCC (mean of A, V, D), the last three from the shared
`dev` split scored per corpus. The rule picks the highest mean (docs/mamer-base.md, "Dev selection"). Reports go
to `RUN/report_<split>/`.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from mamer.workflows.evaluation.evaluate import evaluate_run

# column -> (split, corpus in the split or None for the whole split, view, metric)
HEADLINES = {
    "EmoDB audio UAR": ("dev_emodb", None, "audio", "uar"),
    "RAVDESS audio UAR": ("dev_ravdess", None, "audio", "uar"),
    "MELD text wF1": ("dev", "meld", "text", "weighted_f1"),
    "GoEmotions text mF1": ("dev", "goemotions", "text", "macro_f1"),
    "EmoBank text CCC (mean)": ("dev", "emobank", "text", "ccc_mean"),
}


def dev_scores(run_dir: Path) -> dict[str, float]:
    """The headline dev score of every corpus for one run."""
    reports = {
        split: evaluate_run(run_dir, split, report_dir=run_dir / f"report_{split}", by_corpus=split == "dev")
        for split in dict.fromkeys(split for split, *_ in HEADLINES.values())
    }
    found = {}
    for column, (split, corpus, view, metric) in HEADLINES.items():
        report = reports[split]
        results = report["by_corpus"][corpus]["results"] if corpus else report["results"]
        found[column] = results[view][metric]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    means = {}
    print("| candidate | " + " | ".join(HEADLINES) + " | mean |")
    print("|---" * (len(HEADLINES) + 2) + "|")
    for run in args.runs:
        found = dev_scores(run)
        means[run.name] = statistics.mean(found.values())
        print(
            f"| {run.name} | "
            + " | ".join(f"{v:.3f}" for v in found.values())
            + f" | {means[run.name]:.3f} |"
        )
    print(f"\npicked: {max(means, key=means.__getitem__)}")


if __name__ == "__main__":
    main()
