"""GoEmotions (Google): English Reddit comments, as distributed in monologg/GoEmotions-pytorch's data folder.

Expected under ``root``: ``ekman/{train,dev,test}.tsv`` and ``ekman/labels.txt`` (or ``root`` itself holding
them, e.g. the ``original/`` folder with its 27 emotions + neutral). Each line is ``text<TAB>label ids,
comma-separated<TAB>comment id``; ``labels.txt`` names the ids in order. With the Ekman grouping the classes are
anger, disgust, fear, joy, neutral, sadness, surprise. Official split (43,410 / 5,426 / 5,427 lines).

GoEmotions is multi-label. MAMER's categorical task takes one class per row, so a row with exactly one label keeps
it, and a row with several labels is left out (about 9% of each split); their number per split is a note, not a
problem. Rows are text-only; GoEmotions has no speakers.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from mamer.data.corpora.base import Prepared, read_text
from mamer.data.manifest import Utterance

SPLITS = ("train", "dev", "test")


def read_goemotions(root: Path) -> Prepared:
    """GoEmotions single-label rows with the official split; multi-label rows are counted in the notes."""
    root = Path(root)
    folder = root / "ekman" if (root / "ekman" / "labels.txt").is_file() else root
    if not (folder / "labels.txt").is_file():
        raise FileNotFoundError(
            f"{root}: no GoEmotions found; expected {root}/ekman/labels.txt and {root}/ekman/train.tsv ..."
        )
    labels = [name.strip() for name in read_text(folder / "labels.txt").splitlines() if name.strip()]
    out = Prepared()
    multi: Counter[str] = Counter()
    for split in SPLITS:
        table = folder / f"{split}.tsv"
        if not table.is_file():
            out.problems.append(f"{table}: file not found; split {split!r} skipped")
            continue
        for line, raw in enumerate(read_text(table).splitlines(), start=1):
            if not raw.strip():
                continue
            utt = _row(raw, labels, split, f"{table}:{line}", out.problems)
            if utt == "multi":
                multi[split] += 1
            elif utt is not None:
                out.rows.append(utt)
    if multi:
        counts = ", ".join(f"{s} {multi[s]}" for s in SPLITS if multi[s])
        out.notes.append(f"{folder}: {sum(multi.values())} multi-label GoEmotions rows left out ({counts})")
    return out


def _row(raw: str, labels: list[str], split: str, where: str, problems: list[str]) -> Utterance | str | None:
    """One tsv line as an utterance, "multi" for a multi-label row, or None (with the reason in ``problems``)."""
    fields = raw.split("\t")
    if len(fields) != 3:
        problems.append(
            f"{where}: expected 3 tab-separated fields (text, labels, id), got {len(fields)}; row skipped"
        )
        return None
    text, ids, comment = (" ".join(fields[0].split()), fields[1].strip(), fields[2].strip())
    codes = [c.strip() for c in ids.split(",") if c.strip()]
    if not text or not comment:
        problems.append(f"{where}: empty text or comment id; row skipped")
        return None
    if not codes or not all(c.isdigit() and int(c) < len(labels) for c in codes):
        problems.append(
            f"{where}: label ids {ids!r} are not indices into labels.txt (0-{len(labels) - 1}); row skipped"
        )
        return None
    if len(set(codes)) > 1:
        return "multi"
    return Utterance(
        id=comment,
        audio=None,
        text=text,
        label=labels[int(codes[0])],
        arousal=None,
        valence=None,
        dominance=None,
        speaker=None,
        split=split,
    )
