"""EmoBank (JULIELab): English sentences rated for valence, arousal and dominance on a 1-5 scale.

Expected: ``root/emobank.csv`` (or ``root`` itself being that file) with columns id, split, V, A, D, text, as
in the official repository. Rows are text-only with dimensional labels kept on the corpus's own 1-5 scale.
"""

from __future__ import annotations

from pathlib import Path

from mamer.data.corpora.base import Prepared, csv_rows, number_in
from mamer.data.manifest import Utterance

SPLITS = ("train", "dev", "test")
SCALE = (1.0, 5.0)
DIMENSION_COLUMNS = {"A": "arousal", "V": "valence", "D": "dominance"}


def read_emobank(root: Path) -> Prepared:
    """EmoBank rows with the official split; rows with ratings outside 1-5 are problems."""
    root = Path(root)
    table = root if root.suffix.lower() == ".csv" else root / "emobank.csv"
    out = Prepared()
    for line, row in csv_rows(table, ("id", "split", *DIMENSION_COLUMNS, "text")):
        utt = _row(row, f"{table}:{line}", out.problems)
        if utt is not None:
            out.rows.append(utt)
    return out


def _row(row: dict[str, str], where: str, problems: list[str]) -> Utterance | None:
    """One EmoBank row as an utterance, or None (with the reasons in ``problems``)."""
    errors = []
    if not row["id"]:
        errors.append("empty id")
    if row["split"] not in SPLITS:
        errors.append(f"split {row['split']!r} is not one of {SPLITS}")
    if not row["text"]:
        errors.append("empty transcript")
    dims: dict[str, float | None] = {}
    for column, name in DIMENSION_COLUMNS.items():
        dims[name], error = number_in(row[column], *SCALE)
        if error:
            errors.append(f"{column} ({name}) {error}")
    if errors:
        problems.extend(f"{where}: {e}; row skipped" for e in errors)
        return None
    return Utterance(
        id=row["id"], audio=None, text=row["text"], label=None, speaker=None, split=row["split"], **dims
    )
