"""Several corpora in one manifest with a shared label space: training on partially paired data.

Rows keep their train and dev splits (so the model trains and early-stops on all corpora); each corpus's test split
becomes `test_<name>` so it is scored on its own. Labels are renamed (e.g. MELD's joy -> happiness) and rows whose
label is outside the shared space are dropped. Each part is also written alone (`<out>_<name>`), with the same
label space and split names, for the dedicated models to compare with.

A part named in `test_only` is held out whole: every one of its rows becomes `test_<name>`. That is the
cross-corpus test (train on one corpus, test on all of another, on the classes they share).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mamer.data.manifest import Utterance, read_manifest, write_manifest


def parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    """["a=b", ...] -> {"a": "b"}; a clear error for an item without "="."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{flag} {item!r}: expected NAME=VALUE")
        pairs[key] = value
    return pairs


def joint_rows(
    name: str, rows: list[Utterance], labels: list[str], rename: dict[str, str], test_only: bool = False
) -> list[Utterance]:
    """One corpus's rows in the shared label space, its test split (every split if `test_only`) renamed
    `test_<name>`."""
    out = []
    for u in rows:
        label = rename.get(u.label, u.label)
        if label not in labels:
            continue
        split = f"test_{name}" if test_only or u.split == "test" else u.split
        out.append(dataclasses.replace(u, label=label, split=split))
    return out


def join_manifests(
    parts: dict[str, str | Path],
    out: Path,
    labels: list[str],
    rename: dict[str, str] | None = None,
    test_only: tuple[str, ...] = (),
) -> dict[Path, list[Utterance]]:
    """Write the joint manifest `out` and one per part (`out_<name>`); returns path -> rows written. Parts
    named in `test_only` are held out whole as `test_<name>`."""
    if len(parts) < 2:
        raise ValueError("join needs at least two parts (NAME=manifest)")
    unknown = [name for name in test_only if name not in parts]
    if unknown:
        raise ValueError(f"--test-only {', '.join(unknown)}: not a part name (parts: {', '.join(parts)})")
    if len(set(test_only)) == len(parts):
        raise ValueError("--test-only names every part: nothing would be left to train on")
    labels = [label.strip() for label in labels if label.strip()]
    joined: dict[str, list[Utterance]] = {}
    seen: dict[str, str] = {}
    for name, manifest in parts.items():
        rows, problems = read_manifest(Path(manifest))
        if problems:
            raise ValueError(
                f"{manifest}: {len(problems)} problem(s), e.g. {problems[0]}; fix or re-prepare it"
            )
        joined[name] = joint_rows(name, rows, labels, rename or {}, name in test_only)
        if not joined[name]:
            raise ValueError(f"{manifest}: no row has a label in {labels} (after --rename)")
        for u in joined[name]:
            if u.id in seen:
                raise ValueError(f"id {u.id!r} is in both {seen[u.id]} and {manifest}; ids must be unique")
            seen[u.id] = str(manifest)
    out = Path(out)
    written = {out: [u for rows in joined.values() for u in rows]}
    for name, rows in joined.items():
        written[out.with_name(f"{out.stem}_{name}{out.suffix}")] = rows
    for path, rows in written.items():
        write_manifest(rows, path)
    return written
