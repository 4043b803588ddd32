"""The browser page of `mamer serve`: `GET /` (plain HTML/CSS/JS from `static/`, no build step, no CDN) and
`GET /card`, what a visitor should know about the model: its name, labels, training data and test scores.

The card comes from the model folder: a released model's README.md (its YAML header: datasets, licence,
model-index scores; its first paragraph), or a run directory's model.json and report.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from huggingface_hub import ModelCard

from mamer.modality import DIMENSIONS, has_dimensions
from mamer.workflows.evaluation.model_card import is_synthetic
from mamer.workflows.inference.recognizer import EmotionRecognizer

STATIC = Path(__file__).with_name("static")
README, REPORT = "README.md", "report.json"
SYNTHETIC_NOTE = (
    "Trained on the synthetic quickstart corpus (robotic espeak-ng speech with planted cues): its scores say "
    "nothing about human emotional speech."
)


def mount_page(app: FastAPI, recognizer: EmotionRecognizer, transcription: bool) -> None:
    """Serve the page at `/`, its files at `/static/...` and the model card at `/card`."""
    card = model_card(recognizer) | {"transcription": transcription and recognizer.can_transcribe}
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/card")
    def model_card_route() -> dict[str, Any]:
        """The model's name, labels, views, encoders, training data, test scores and licence."""
        return card


def model_card(recognizer: EmotionRecognizer) -> dict[str, Any]:
    """The card's facts for the page; fields the folder does not know stay empty."""
    meta, folder = recognizer.meta, Path(recognizer.run_dir)
    card: dict[str, Any] = {
        "task": recognizer.task,
        "labels": recognizer.labels if recognizer.task != "dimensional" else [],
        "dimensions": list(DIMENSIONS) if has_dimensions(recognizer.task) else [],
        "views": recognizer.views,
        "encoders": {kind: spec.get("name") for kind, spec in meta.encoders.items()},
        "params": meta.params,
        "max_seconds": round(recognizer.max_seconds, 2),
        "training_data": [],
        "scores": [],
        "licence": None,
        "summary": None,
    }
    readme = folder / README
    if readme.is_file():
        card |= released_card(readme.read_text(encoding="utf-8"))
    else:
        card |= run_card(folder, meta.run_config.data.manifest)
    return card | {"name": recognizer.name}  # the name /info gives


def released_card(text: str) -> dict[str, Any]:
    """A Hub-style README.md -> name, training data, scores, licence and its first paragraph, read by
    huggingface_hub's `ModelCard` (the class `hub_card.py` writes our cards with: its `eval_results` are the
    model-index entries); no or unreadable header -> only the first paragraph."""
    try:
        card = ModelCard(text, ignore_metadata_errors=True)
    except (yaml.YAMLError, ValueError):
        return {"training_data": [], "scores": [], "summary": first_paragraph(text)}
    data = card.data
    found = {
        "name": data.model_name,
        "licence": data.license,
        "training_data": [str(d) for d in data.datasets or []],
        "scores": [
            {
                "data": r.dataset_name,
                "split": r.dataset_split,
                "metric": r.metric_name or r.metric_type,
                "value": r.metric_value,
            }
            for r in data.eval_results or []
        ],  # fmt: skip
        "summary": first_paragraph(card.text),
    }
    return {k: v for k, v in found.items() if v is not None}


def run_card(folder: Path, manifest: str) -> dict[str, Any]:
    """A run directory: its training corpus (by folder name) and the test scores of its report.json."""
    synthetic = is_synthetic(manifest)
    corpus = "synthetic quickstart corpus" if synthetic else Path(manifest).parent.name or str(manifest)
    found: dict[str, Any] = {"training_data": [corpus], "summary": SYNTHETIC_NOTE if synthetic else None}
    try:
        report = json.loads((folder / REPORT).read_text())
    except (OSError, ValueError):
        return found
    split = report.get("split")
    found["scores"] = [
        {"data": f"{corpus} ({view})", "split": split, "metric": metric, "value": round(float(value), 4)}
        for view, metrics in (report.get("results") or {}).items()
        for metric, value in metrics.items()
        if isinstance(value, int | float)
    ]
    return found


def first_paragraph(markdown: str) -> str | None:
    """The first paragraph of prose (no heading, code, table or list), joined onto one line."""
    for block in markdown.strip().split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines()]
        if lines and not lines[0].startswith(("#", "```", "|", "-", "*", ">")):
            text = " ".join(lines)
            return text[:-1] + "." if text.endswith(":") else text  # it introduced an example left out
    return None
