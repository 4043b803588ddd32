"""The README.md model card of a released model: a YAML header with Hugging Face model-index metadata, then text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mamer.checkpoint import ModelMeta
from mamer.modality import modalities_in

TEMPLATE = "---\n{{ card_data }}\n---\n\n{{ body }}\n"
TAGS = ["emotion-recognition", "speech-emotion-recognition", "multimodal", "mamer"]


@dataclass(frozen=True)
class Score:
    """One test score for the model index: a dataset (and split), a metric and its value."""

    dataset: str
    split: str
    metric: str
    value: float
    modality: str = "audio"  # which task type the Hub files it under: audio or text classification


def hub_card(
    meta: ModelMeta,
    name: str,
    body: str,
    scores: Sequence[Score] = (),
    license: str = "other",
    language: Sequence[str] = (),
    datasets: Sequence[str] = (),
    base_model: str | None = None,
) -> str:
    """Markdown with the Hub's metadata header (model-index from `scores`; `base_model`: the model it was
    fine-tuned from) above `body`."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    results = [
        EvalResult(
            task_type="audio-classification" if s.modality == "audio" else "text-classification",
            dataset_type=s.dataset,
            dataset_name=s.dataset,
            dataset_split=s.split,
            metric_type=s.metric,
            metric_name=s.metric,
            metric_value=round(float(s.value), 4),
        )
        for s in scores
    ]
    modalities = modalities_in(meta.run_config.model.views)
    data = ModelCardData(
        model_name=name,
        library_name="mamer",
        license=license,
        base_model=base_model,
        language=list(language) or None,
        datasets=list(datasets) or None,
        tags=TAGS,
        pipeline_tag="audio-classification" if "audio" in modalities else "text-classification",
        eval_results=results or None,
    )
    return str(ModelCard.from_template(data, template_str=TEMPLATE, body=body.strip()))
