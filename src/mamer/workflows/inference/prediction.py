"""What a prediction holds, and the ways to reshape it: pooling windows, a restricted label set, the top k."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from mamer.modality import DIMENSIONS

# Filled only on request (ASR, top_k, embeddings): left out of `to_dict` when empty, so rows keep their columns.
EXTRAS = ("transcript", "language", "asr_model", "text_skipped", "top_k", "embedding")


@dataclass
class Prediction:
    """One utterance's result. `probabilities`/`label` for categorical runs, A/V/D (corpus scale) for
    dimensional runs, both for task "both"; `view` says which modalities were used. `transcript`, `language`
    and `asr_model` are set when the text came from ASR, `text_skipped` says why that transcript was not given to
    the model (a language its text encoder does not read); `top_k` lists the k likeliest (label, probability);
    `embedding` is the shared transformer's [CLS] output (the vector the heads read, beside the outputs' mean
    with `model.pooling: cls+mean`), `(width,)`."""

    view: str  # "audio", "text" or "audio+text"
    label: str | None = None
    probabilities: dict[str, float] | None = None
    arousal: float | None = None
    valence: float | None = None
    dominance: float | None = None
    transcript: str | None = None
    language: str | None = None
    asr_model: str | None = None
    text_skipped: str | None = None
    top_k: list[tuple[str, float]] | None = None
    embedding: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; the on-request fields only when set."""
        values = asdict(self)
        return {k: v for k, v in values.items() if k not in EXTRAS or v is not None}


def pooled(predictions: Sequence[Prediction], weights: Sequence[float]) -> Prediction:
    """Windows of one clip -> one Prediction: weighted (by duration) mean of probabilities, A/V/D, embedding."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1 / len(w))
    first = predictions[0]
    result = replace(first)
    if first.probabilities is not None:
        labels = list(first.probabilities)
        p = sum(
            wi * np.array([q.probabilities[k] for k in labels]) for wi, q in zip(w, predictions, strict=True)
        )
        result.probabilities = dict(zip(labels, map(float, p), strict=True))
        result.label = labels[int(np.argmax(p))]
    for name in DIMENSIONS:
        if getattr(first, name) is not None:
            setattr(
                result, name, float(sum(wi * getattr(q, name) for wi, q in zip(w, predictions, strict=True)))
            )
    if first.embedding is not None:
        stacked = np.array([q.embedding for q in predictions])
        result.embedding = (w @ stacked).tolist()
    texts = [q.transcript for q in predictions if q.transcript]
    result.transcript = " ".join(texts) if first.transcript is not None else None
    return result


def reshaped(
    prediction: Prediction, labels: Sequence[str] | None = None, top_k: int | None = None
) -> Prediction:
    """Probabilities renormalised over `labels` (the label is the likeliest of them), plus the `top_k` list."""
    if prediction.probabilities is None:
        return prediction
    probabilities = prediction.probabilities
    if labels:
        kept = {k: probabilities[k] for k in labels}
        total = sum(kept.values()) or 1.0
        probabilities = {k: v / total for k, v in kept.items()}
        prediction = replace(prediction, probabilities=probabilities, label=max(kept, key=kept.get))
    if top_k:
        ranked = sorted(probabilities.items(), key=lambda kv: -kv[1])[:top_k]
        prediction = replace(prediction, top_k=[(k, float(v)) for k, v in ranked])
    return prediction


def check_labels(labels: Sequence[str] | None, known: Sequence[str]) -> list[str] | None:
    """`labels` validated against the model's label space; ValueError naming the unknown ones, the model's
    labels, and the likely meant ones ("angry" -> "anger")."""
    if not labels:
        return None
    if not known:
        raise ValueError(
            "this model predicts no classes, only arousal, valence and dominance: drop the labels"
        )
    unknown = [k for k in labels if k not in known]
    if unknown:
        meant = [m for k in unknown for m in difflib.get_close_matches(k.lower(), known, n=1, cutoff=0.5)]
        hint = f" (did you mean {', '.join(dict.fromkeys(meant))}?)" if meant else ""
        raise ValueError(f"unknown labels {', '.join(unknown)}{hint}: this model predicts {', '.join(known)}")
    return list(dict.fromkeys(labels))
