"""Release a trained mamer-base run: per-corpus test reports, the model card, and the Hub-layout folder.

    python recipes/mamer_base/release.py RUN_DIR OUT_DIR

Each corpus's test split is scored on its own (`report_<split>/` in the run), the scores go into the card's
model-index metadata and its table, and `save_pretrained` writes config.json, model.safetensors and README.md.
The card names the corpora whose test split the run's manifest holds and their languages (v1: five corpora,
English and German; v2 adds nEMO, Polish).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mamer.checkpoint import read_meta
from mamer.data.manifest import read_manifest
from mamer.workflows.evaluation.evaluate import evaluate_run
from mamer.workflows.evaluation.hub_card import Score, hub_card
from mamer.workflows.inference.pretrained import save_pretrained

# test split -> (corpus name on the card, view scored, metrics): each corpus's field-standard metrics
TESTS = {
    "test_emodb": ("EmoDB", "audio", ("uar", "macro_f1")),
    "test_ravdess": ("RAVDESS", "audio", ("uar", "macro_f1")),
    "test_nemo": ("nEMO", "audio", ("uar", "macro_f1")),
    "test_meld": ("MELD", "text", ("weighted_f1", "macro_f1")),
    "test_goemotions": ("GoEmotions (Ekman)", "text", ("macro_f1",)),
    "test_emobank": ("EmoBank", "text", ("ccc_arousal", "ccc_valence", "ccc_dominance")),
}
# the language each corpus is spoken or written in (ISO 639-1, as the card's header takes it)
LANGUAGES = {"test_emodb": "de", "test_nemo": "pl"}  # the others: English
BODY = Path(__file__).with_name("card.md")


def test_splits(run_dir: Path) -> list[str]:
    """The splits of `TESTS` that the run's manifest holds, in `TESTS`'s order."""
    rows, _ = read_manifest(read_meta(run_dir).run_config.data.manifest)
    held = {u.split for u in rows}
    return [split for split in TESTS if split in held]


def scores(run_dir: Path, splits: list[str]) -> list[Score]:
    """Every corpus's headline test scores, from its own report (written to run_dir/report_<split>/)."""
    found = []
    for split in splits:
        corpus, view, metrics = TESTS[split]
        report = evaluate_run(run_dir, split, report_dir=run_dir / f"report_{split}")
        found += [Score(corpus, split, m, report["results"][view][m], view) for m in metrics]
    return found


def table(found: list[Score]) -> str:
    lines = ["| test set | view | metric | score |", "|---|---|---|---|"]
    lines += [f"| {s.dataset} | {s.modality} | {s.metric} | {s.value:.3f} |" for s in found]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--overwrite", action="store_true", help="replace the release already in OUT")
    args = parser.parse_args()
    splits = test_splits(args.run_dir)
    found = scores(args.run_dir, splits)
    meta = read_meta(args.run_dir)
    body = BODY.read_text().replace("{scores}", table(found)).replace("{params}", f"{meta.params:,}")
    languages = list(dict.fromkeys(["en", *(LANGUAGES[s] for s in splits if s in LANGUAGES)]))
    datasets = [TESTS[s][0].split(" (")[0] for s in splits]  # "GoEmotions (Ekman)" is the dataset GoEmotions
    card = hub_card(
        meta, "mamer-base", body, found, license="cc-by-nc-sa-4.0", language=languages, datasets=datasets
    )
    print(save_pretrained(args.run_dir, args.out, card=card, overwrite=args.overwrite))
    print(table(found))


if __name__ == "__main__":
    main()
