"""The output folder of a job at scale: its plan, its inputs, and one Parquet shard per block of inputs.

```text
OUT/
  plan.json                      model, options, shard size, number of inputs and their digest
  inputs.parquet                 every input in order (input_row, id, source, path, offset, size, text, error)
  predictions/part-00000.parquet rows of inputs 0 .. shard_size-1: one per clip, or per segment
  errors/part-00000.parquet      the bad inputs of that block and why (only when it has some)
  summary.json                   the last run's figures
```

Inputs are cut into shards by position (shard k holds inputs k*shard_size ...), so a rerun that lists the same
inputs maps them to the same shards; `open` refuses a rerun whose inputs or options differ from the plan. Each
shard is written by the driver alone, errors first and rows last, each to a temporary file renamed into place
(`mamer.atomic`): a shard's rows file exists whole or not at all, and its existence is what "done" means, so a
run killed at any moment and rerun gives each input exactly once. Temporaries start with a dot, which Parquet
readers skip (`pandas.read_parquet("OUT/predictions")` reads the finished shards only).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mamer.atomic import atomic_write
from mamer.modality import DIMENSIONS, has_categories, has_dimensions
from mamer.workflows.scale.inputs import InputRow

PART = re.compile(r"^part-(\d{5,})\.parquet$")
TEMPORARY = re.compile(r"^\.(plan\.json|inputs\.parquet|summary\.json)\.\d+\.tmp$")  # `atomic_write`'s names
STATS_KEY = b"mamer.shard"  # each rows file's Parquet metadata: its inputs and figures (see `write_shard`)
INPUT_SCHEMA = pa.schema(
    [("input_row", pa.int64()), ("id", pa.string()), ("source", pa.string()), ("path", pa.string()),
     ("offset", pa.int64()), ("size", pa.int64()), ("text", pa.string()), ("error", pa.string())]
)  # fmt: skip
ERROR_SCHEMA = pa.schema(
    [("input_row", pa.int64()), ("id", pa.string()), ("source", pa.string()), ("error", pa.string())]
)


def row_schema(task: str, labels: list[str], top_k: bool = False, embeddings: bool = False) -> pa.Schema:
    """The columns of every rows shard: the input's row, id and source, the view, the task's outputs (a
    `probabilities` struct with one field per label, and/or A/V/D), the ASR transcript, its language, the ASR
    model and why the transcript was not given to the model (`text_skipped`: a language its text encoder does
    not read), segment start/end (seconds; null for a whole clip), then top_k / embedding when asked for."""
    columns = [("input_row", pa.int64()), ("id", pa.string()), ("source", pa.string()), ("view", pa.string())]
    if has_categories(task):
        columns += [("label", pa.string()), ("probabilities", pa.struct([(k, pa.float64()) for k in labels]))]
    if has_dimensions(task):
        columns += [(name, pa.float64()) for name in DIMENSIONS]
    columns += [("transcript", pa.string()), ("language", pa.string()), ("asr_model", pa.string()),
                ("text_skipped", pa.string())]  # fmt: skip
    columns += [("start", pa.float64()), ("end", pa.float64())]
    if top_k:
        columns.append(
            ("top_k", pa.list_(pa.struct([("label", pa.string()), ("probability", pa.float64())])))
        )
    if embeddings:
        columns.append(("embedding", pa.list_(pa.float32())))
    return pa.schema(columns)


def record(row: dict[str, Any], input_row: int, source: str, id_: str) -> dict[str, Any]:
    """A `batch.prediction_row` dict as a rows-shard record: the input's row, id and source in place of the
    job's; top_k pairs as {label, probability}."""
    out = {k: v for k, v in row.items() if k != "file"} | {
        "input_row": input_row,
        "id": id_,
        "source": source,
    }
    if out.get("top_k") is not None:
        out["top_k"] = [{"label": k, "probability": p} for k, p in out["top_k"]]
    return out


def inputs_digest(inputs: list[InputRow]) -> str:
    """SHA-256 over the inputs in order: a rerun whose listing differs is caught before it predicts."""
    digest = hashlib.sha256()
    for row in inputs:
        digest.update(json.dumps(asdict(row), sort_keys=True).encode() + b"\n")
    return digest.hexdigest()


class OutputFolder:
    """The output folder of one job (see the module docstring); `open` creates or resumes it."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.plan: dict[str, Any] = {}

    @property
    def shard_size(self) -> int:
        return int(self.plan["shard_size"])

    @property
    def shard_count(self) -> int:
        return -(-int(self.plan["inputs"]) // self.shard_size)

    def open(self, plan: dict[str, Any], inputs: list[InputRow]) -> None:
        """Start the folder (plan, then inputs), or resume it: the plan must match, inputs included. Refuses a
        file, or a folder that holds anything else (nothing the user owns is overwritten)."""
        plan = plan | {"inputs": len(inputs), "inputs_sha256": inputs_digest(inputs)}
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(
                f"--out {self.folder} is a file; the Ray engine writes a folder of Parquet shards"
            )
        plan_file = self.folder / "plan.json"
        if plan_file.is_file():
            self._check_resumable(json.loads(plan_file.read_text()), plan, inputs)
        else:
            self._refuse_foreign()
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(plan_file, lambda tmp: tmp.write_text(json.dumps(plan, indent=1) + "\n"))
        self.plan = plan
        if not (self.folder / "inputs.parquet").is_file():  # first run, or one killed before it was written
            rows = [{"input_row": i} | asdict(r) for i, r in enumerate(inputs)]
            table = pa.Table.from_pylist(rows, schema=INPUT_SCHEMA)
            atomic_write(self.folder / "inputs.parquet", lambda tmp: pq.write_table(table, tmp))
        for part in ("predictions", "errors"):
            (self.folder / part).mkdir(exist_ok=True)
            for stale in (self.folder / part).glob(".part-*.tmp"):  # a run killed while writing
                stale.unlink(missing_ok=True)

    def _refuse_foreign(self) -> None:
        """ValueError unless the folder is absent or empty (temporaries of a killed first run aside): the plan
        is written first, so a folder without one that holds files is someone else's."""
        if not self.folder.is_dir():
            return
        for stale in self.folder.glob(".*.tmp"):
            if TEMPORARY.match(stale.name):
                stale.unlink(missing_ok=True)
        held = sorted(p.name for p in self.folder.iterdir())
        if held:
            more = ", ..." if len(held) > 3 else ""
            raise ValueError(
                f"--out {self.folder} already holds {', '.join(held[:3])}{more} and is no MAMER output folder: "
                "give a new or empty folder"
            )

    def _check_resumable(self, old: dict, new: dict, inputs: list[InputRow]) -> None:
        """ValueError naming what differs between the folder's plan and this run's, settings or inputs."""
        listing = ("inputs", "inputs_sha256")
        changed = sorted(k for k in old.keys() | new.keys() if k not in listing and old.get(k) != new.get(k))
        if changed:
            said = "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in changed)
            raise ValueError(
                f"--out {self.folder} holds a job with other settings ({said}): rerun with the same settings "
                "to resume it, or give a new folder"
            )
        if old["inputs_sha256"] == new["inputs_sha256"]:
            return
        said = f"{old['inputs']} inputs there, {new['inputs']} now"
        if (self.folder / "inputs.parquet").is_file():
            table = pq.read_table(self.folder / "inputs.parquet").drop_columns(["input_row"])
            stored = [InputRow(**r) for r in table.to_pylist()]
            first = next(
                (i for i, (a, b) in enumerate(zip(stored, inputs, strict=False)) if a != b),
                min(len(stored), len(inputs)),
            )
            said += f"; the first to differ is input {first}: {(stored if first < len(stored) else inputs)[first].source}"
        raise ValueError(
            f"--out {self.folder} was made from other inputs ({said}): rerun with the same inputs to resume, or "
            "give a new folder"
        )

    def shard_inputs(self, shard: int) -> range:
        """Positions of the inputs shard `shard` covers."""
        start = shard * self.shard_size
        return range(start, min(start + self.shard_size, int(self.plan["inputs"])))

    def done(self) -> set[int]:
        """Shards whose rows file is in place (written whole: see the module docstring)."""
        found = (PART.match(p.name) for p in (self.folder / "predictions").iterdir())
        return {int(m.group(1)) for m in found if m}

    def write_shard(self, shard: int, rows: pa.Table, errors: pa.Table, stats: dict[str, Any]) -> None:
        """Write shard `shard`: its errors (or none), then its rows with `stats` in their metadata, each whole."""
        name = f"part-{shard:05d}.parquet"
        errors_file = self.folder / "errors" / name
        if errors.num_rows:
            atomic_write(errors_file, lambda tmp: pq.write_table(errors, tmp))
        else:  # a rerun of a shard whose errors went away leaves none behind
            errors_file.unlink(missing_ok=True)
        meta = {STATS_KEY: json.dumps({"shard": shard} | stats).encode()}
        table = rows.replace_schema_metadata(meta)
        atomic_write(self.folder / "predictions" / name, lambda tmp: pq.write_table(table, tmp))

    def stats(self) -> list[dict[str, Any]]:
        """The figures of every finished shard, from the metadata of its rows file."""
        out = []
        for shard in sorted(self.done()):
            meta = pq.read_schema(self.folder / "predictions" / f"part-{shard:05d}.parquet").metadata or {}
            out.append(json.loads(meta.get(STATS_KEY, b"{}")))
        return out
