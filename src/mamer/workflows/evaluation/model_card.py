"""MODEL_CARD.md for a run directory: data, encoders, per-view metrics, size, intended use and limits."""

from __future__ import annotations

import json
from pathlib import Path

from mamer.checkpoint import read_meta
from mamer.modality import has_dimensions, modalities_in
from mamer.workflows.evaluation.lineage import lineage_of
from mamer.workflows.evaluation.report import format_table

CARD_FILE = "MODEL_CARD.md"


def is_synthetic(manifest: str | Path) -> bool:
    """True for a corpus written by `mamer.data.synthetic.generate_corpus` (it leaves corpus.json beside it)."""
    info = Path(manifest).parent / "corpus.json"
    try:
        return "generator_version" in json.loads(info.read_text()).get("parameters", {})
    except (OSError, ValueError, AttributeError):
        return False


def _encoder_line(kind: str, spec: dict | None, used: bool) -> str:
    if not spec or not used:
        return f"- {kind}: not used (the model was trained without {kind})"
    details = ", ".join(f"{k} {spec[k]}" for k in ("dim", "layers", "frame_rate", "context") if k in spec)
    weights = spec.get("weights") or "none (no pretrained weights)"
    return f"- {kind}: `{spec['name']}` ({details}); weights: {json.dumps(weights)}"


def _limits(synthetic: bool, task: str, normalise: str = "none") -> list[str]:
    lines = []
    if synthetic:
        lines.append(
            "- **Trained and scored on the synthetic quickstart corpus** (robotic espeak-ng speech with planted "
            "prosody and word cues). Its scores say that the code learns and fuses modalities; they say nothing "
            "about accuracy on human emotional speech. Do not use this model on real people."
        )
    lines += [
        "- Scores hold for the corpus, speakers, language and recording conditions of the data above; expect "
        "lower scores elsewhere, and check on your own held-out speakers before relying on it.",
        "- Emotion labels are perceived, not felt: the model predicts what annotators would label, not what a "
        "speaker feels. Do not use it for decisions about individuals (hiring, health, policing, credit).",
        "- Audio longer than the model's audio limit is read as a timeline of segments, each predicted on its own "
        "(`mamer predict`, `EmotionRecognizer.timeline`); a text transcript should be what was said.",
    ]
    if has_dimensions(task):
        lines.append("- Arousal/valence/dominance are on the training corpus's own scale.")
    if normalise == "speaker":
        lines.append(
            "- Trained on audio features standardised per speaker: give several clips of one speaker together "
            "(`predict_batch` items sharing a `speaker` value, or a folder from one source: `mamer predict --audio "
            "DIR --one-source`); a clip given alone is standardised by the "
            "training rows' statistics, which scores lower (`mamer evaluate --groups none` measures by how much)."
        )
    return lines


def model_card(run_dir: str | Path, report: dict | None = None, name: str | None = None) -> str:
    """The card's markdown for a run directory (report: its report.json, read from the run if None; name: the
    model's, default its own name or its run config's)."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    config = meta.run_config
    identity = lineage_of(run_dir, meta)
    if report is None and (run_dir / "report.json").is_file():
        report = json.loads((run_dir / "report.json").read_text())
    modalities = modalities_in(config.model.views)
    synthetic = is_synthetic(config.data.manifest)
    labels = ", ".join(meta.label_space.labels) or "-"
    if meta.label_space.parts:
        parts = ", ".join(meta.label_space.parts)
        labels += f" (parts trained as outputs of their own, each counted as its class: {parts})"
    lines = [
        f"# Model card: {name or identity.get('name') or config.name}",
        "",
        "MAMER (modality-agnostic multimodal emotion recognition): frozen encoders, then one shared transformer "
        "that reads audio, text or both, and one prediction head for every view.",
        "",
        "## Model",
        f"- task: {config.data.task}; classes: {labels}",
        f"- trained views: {', '.join(config.model.views)}",
        f"- shared model: width {config.model.width}, depth {config.model.depth}, heads {config.model.heads}; "
        f"{meta.params:,} parameters (encoders excluded)",
        f"- best epoch {meta.epoch}, dev score {meta.dev_score}",
        "",
        "## Data",
        f"- manifest: `{config.data.manifest}`" + (" (synthetic quickstart corpus)" if synthetic else ""),
        f"- splits: train `{config.data.train_split}`, dev `{', '.join(config.data.dev_splits)}`, "
        f"test `{config.data.test_split}`",
        "",
        "## Encoders (frozen)",
        _encoder_line("audio", meta.encoders.get("audio"), "audio" in modalities),
        _encoder_line("text", meta.encoders.get("text"), "text" in modalities),
        "",
        "## Licence and lineage",
        *_lineage(identity),
        "",
        "## Results",
        *_results(report),
        "",
        "## Intended use",
        "- Research on emotion recognition from speech, transcripts, or both; comparing views and fusion.",
        "- Use: `mamer predict RUN_DIR --audio FILE --text STR`, `EmotionRecognizer.load(RUN_DIR)`, or "
        "`mamer serve RUN_DIR`.",
        "",
        "## Limits",
        *_limits(synthetic, config.data.task, config.model.audio_normalise),
        "",
    ]
    return "\n".join(lines)


def _lineage(identity: dict) -> list[str]:
    """Licence, the model it derives from, and that model's data."""
    license = identity.get("license")
    lines = [f"- licence: {license}" if license else "- licence: not stated; a model carries the terms of the "
             "data it was trained on (and of any model it was fine-tuned from)"]  # fmt: skip
    if identity.get("base_model"):
        lines.append(
            f"- fine-tuned from `{identity['base_model']}`, and under its licence"
            + (
                f"; that model was trained on {', '.join(identity['datasets'])}"
                if identity.get("datasets")
                else ""
            )
        )
    return lines


def _results(report: dict | None) -> list[str]:
    if not report:
        return ["Not evaluated yet: run `mamer evaluate RUN_DIR`."]
    n = report.get("n", {})
    counts = ", ".join(f"{view} {count}" for view, count in n.items())
    chance = report.get("chance") or {}
    lines = [f"Split `{report.get('split', '?')}` ({counts} utterances):", "", format_table(report)]
    if chance:
        lines += ["", "Chance: " + ", ".join(f"{k} {v:.3f}" for k, v in chance.items())]
    return lines


def write_model_card(run_dir: str | Path, report: dict | None = None) -> Path:
    """Write `MODEL_CARD.md` into the run directory; returns its path."""
    path = Path(run_dir) / CARD_FILE
    path.write_text(model_card(run_dir, report))
    return path
