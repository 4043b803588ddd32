"""The browser page of `mamer serve`: `GET /` (plain HTML/CSS/JS from `static/`, no build step, no CDN),
`GET /card`, what a visitor should know about the model: its name, labels, training data and test scores,
`GET /colours.json` (the page's colours, shared with the figures), and the API's own pages `/docs` (Swagger UI)
and `/redoc` from the assets the `fastapi-offline` package ships: FastAPI's defaults load them from a CDN, which
leaves both pages blank offline.

The card comes from the model folder: a released model's README.md (its YAML header: datasets, licence,
model-index scores; its first paragraph), or a run directory's model.json and report.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from huggingface_hub import ModelCard

from mamer.modality import DIMENSIONS, has_dimensions
from mamer.workflows.evaluation.colours import palette
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

    @app.get("/colours.json", include_in_schema=False)
    def colours() -> dict[str, Any]:
        return palette()

    mount_docs(app)


def mount_docs(app: FastAPI) -> None:
    """`/docs` and `/redoc` served with their scripts from this machine (the app is made with `docs_url=None,
    redoc_url=None`: FastAPI's own pages fetch Swagger UI, ReDoc and Google fonts from CDNs)."""
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).with_name("static")
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
    title = f"{app.title}: the HTTP API"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=title, swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css", swagger_favicon_url="/docs-assets/favicon.png",
        )  # fmt: skip

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url, title=title, redoc_js_url="/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/favicon.png", with_google_fonts=False,
        )  # fmt: skip


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
    from mamer.workflows.evaluation.model_card import is_synthetic  # it imports matplotlib: 1-3 s of start-up

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
