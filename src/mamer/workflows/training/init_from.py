"""Fine-tuning from a trained or released model (`mamer train --config C train.init_from=NAME|PATH`).

The new run takes the source's architecture and frozen encoders (its features must be the ones the source was
trained on), copies every weight whose name and shape match, and starts a new prediction head where the label
space differs. Copied weights learn at `train.init_lr_scale` times the learning rate, the new ones at full rate.
"""

from __future__ import annotations

import dataclasses
import logging

import torch

from mamer.checkpoint import ModelMeta, load_model
from mamer.config import RunConfig, differing_keys
from mamer.encoders.choice import EncoderChoice
from mamer.modality import MODALITIES
from mamer.model.mamer import MAMER
from mamer.workflows.evaluation.lineage import lineage_of
from mamer.workflows.inference.pretrained import resolve_model

log = logging.getLogger(__name__)


def load_source(name_or_path: str) -> tuple[MAMER, ModelMeta]:
    """The model to start from: a built-in name, a run or release folder, or a hub id."""
    return load_model(resolve_model(name_or_path))


def inherited_lineage(name_or_path: str) -> dict:
    """What a model fine-tuned from `name_or_path` carries of it: its licence, data and languages, and it as the
    base model (see `mamer.workflows.evaluation.lineage`)."""
    source = lineage_of(resolve_model(name_or_path))
    inherited = {k: source.get(k) for k in ("license", "datasets", "language")}
    return {k: v for k, v in inherited.items() if v} | {"base_model": source.get("name") or str(name_or_path)}


def adopt_source(config: RunConfig, meta: ModelMeta) -> RunConfig:
    """`config` with the source's model section (its own trained views kept) and the source's encoders."""
    source = meta.run_config
    model = dataclasses.replace(source.model, views=list(config.model.views))
    data = config.data
    for kind in MODALITIES:
        spec = meta.encoders.get(kind)
        if spec:
            choice = EncoderChoice.from_spec(spec, kind)
            data = dataclasses.replace(
                data,
                **{
                    f"{kind}_encoder": choice.name,
                    f"{kind}_layers": list(choice.layers),
                    f"{kind}_layer_pooling": choice.layer_pooling,
                },
            )
    adopted = dataclasses.replace(config, model=model, data=data)
    changed = differing_keys(dataclasses.asdict(config), dataclasses.asdict(adopted))
    if changed:
        log.info(
            "train.init_from=%s: taken from the source model: %s", config.train.init_from, ", ".join(changed)
        )
    return adopted


def same_labels(meta: ModelMeta, outputs: list[str], task: str) -> bool:
    """Whether the source's head has exactly these outputs (same classes and class parts in the same order, same
    task)."""
    source = meta.run_config.data.task
    return source == task and meta.label_space.outputs == list(outputs)


def transfer(
    model: MAMER, source: MAMER, source_labels: list[str], labels: list[str], keep_head: bool
) -> set[str]:
    """Copy into `model` every source weight with the same name and shape; returns the names of the parameters
    copied whole. The head's output layer is copied whole only with `keep_head` (the same label space);
    otherwise it starts new, except the rows of outputs the source also has (by name) and the A/V/D rows
    when both predict them, which start from the source's."""
    out = "head.net.2."  # the head's output layer: classes, then dimensions (see PredictionHead)
    target, copied = model.state_dict(), {}
    for name, value in source.state_dict().items():
        if name.startswith(out) and not keep_head:
            continue
        if name in target and target[name].shape == value.shape:
            copied[name] = value
    model.load_state_dict(copied, strict=False)
    if not keep_head:
        _copy_head_rows(model, source, source_labels, labels)
    parameters = {name for name, _ in model.named_parameters()}
    kept = parameters & set(copied)
    log.info("train.init_from: %d of %d parameter tensors copied, %s", len(kept), len(parameters),
             "head kept" if keep_head else "new output layer")  # fmt: skip
    return kept


@torch.no_grad()
def _copy_head_rows(model: MAMER, source: MAMER, source_labels: list[str], labels: list[str]) -> None:
    """The output rows of shared class names, and of arousal/valence/dominance, from the source's head."""
    new, old = model.head.net[-1], source.head.net[-1]
    if new.in_features != old.in_features:
        return
    pairs = [(i, source_labels.index(name)) for i, name in enumerate(labels) if name in source_labels]
    if model.head.num_classes and source.head.num_classes:
        pairs = [(i, j) for i, j in pairs if i < model.head.num_classes and j < source.head.num_classes]
    else:
        pairs = []
    if model.head.num_dims and source.head.num_dims:
        pairs += [
            (model.head.num_classes + k, source.head.num_classes + k) for k in range(model.head.num_dims)
        ]
    for i, j in pairs:
        new.weight[i] = old.weight[j]
        new.bias[i] = old.bias[j]
    log.info("train.init_from: %d output rows start from the source's (shared classes, A/V/D)", len(pairs))
