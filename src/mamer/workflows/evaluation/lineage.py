"""Who a model is (name, licence, the model it was fine-tuned from, its data, its languages), so that this travels
with it through `save_pretrained`, fine-tuning (`train.init_from`) and `mamer export`, and `/info` and `/card` agree.

A model's description records it under `lineage`. A release shipped before that was recorded says it in its
card's YAML header (README.md: `model-index` name, `license`, `datasets`, `language`, `base_model`); the
description wins where both say something.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mamer.checkpoint import ModelMeta, read_meta

CARD_FILE = "README.md"  # a released model's card, in the Hugging Face layout


def card_header(text: str) -> dict:
    """The YAML header of a model card's markdown: {} when there is none or it is unreadable."""
    try:
        header = yaml.safe_load(text.split("---", 2)[1]) if text.startswith("---") else None
    except (IndexError, yaml.YAMLError):
        return {}
    return header if isinstance(header, dict) else {}


def card_lineage(text: str) -> dict:
    """name, license, base_model, datasets, language as a card's header states them (keys it lacks left out)."""
    header = card_header(text)
    index = header.get("model-index")
    named = index[0].get("name") if isinstance(index, list) and index and isinstance(index[0], dict) else None
    found = {
        "name": header.get("model_name") or named,
        "license": header.get("license"),
        "base_model": header.get("base_model"),
        "datasets": header.get("datasets"),
        "language": header.get("language"),
    }
    return {k: v for k, v in found.items() if v}


def read_card(folder: str | Path) -> str:
    """The model card (README.md) in `folder`, or "" when there is none."""
    try:
        return (Path(folder) / CARD_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def lineage_of(folder: str | Path, meta: ModelMeta | None = None) -> dict:
    """Who the model in `folder` is: name, license, base_model, datasets, language, from its description's
    `lineage`, else its card's header (a release shipped before lineage was recorded). Keys not known are left
    out: a run trained from scratch has none (its name is then its config's, see `model_name`)."""
    meta = meta or read_meta(folder)
    return card_lineage(read_card(folder)) | {k: v for k, v in meta.lineage.items() if v}


def model_name(folder: str | Path, meta: ModelMeta | None = None) -> str:
    """The name the model goes by: its own (a release, an export), else its run config's."""
    meta = meta or read_meta(folder)
    return lineage_of(folder, meta).get("name") or meta.run_config.name
