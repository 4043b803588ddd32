"""Released models by name, folder or hub id, in the layout the Hugging Face Hub expects.

A released model is a folder with `config.json` (the model's description: config, label space, encoder specs),
`model.safetensors` and a `README.md` model card whose YAML header carries the model-index metadata. Built-in
names (`mamer-base`) are folders shipped inside the package, so they work offline right after install.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path

from mamer.atomic import atomic_write
from mamer.checkpoint import HUB_META_FILE, MODEL_FILE, load_model
from mamer.workflows.evaluation.lineage import CARD_FILE, card_lineage, lineage_of, read_card

log = logging.getLogger(__name__)

PACKAGE_MODELS = Path(__file__).resolve().parents[2] / "pretrained"
BUILTIN = ("mamer-base",)
DEFAULT_MODEL = "mamer-base"


def builtin_folder(name: str) -> Path:
    """The folder of a built-in model inside the installed package; FileNotFoundError if it is not shipped."""
    folder = PACKAGE_MODELS / name
    if not (folder / MODEL_FILE).is_file():
        raise FileNotFoundError(
            f"the built-in model {name!r} is not in this install ({folder}); reinstall mamer"
        )
    return folder


def is_hub_id(name: str) -> bool:
    """Shaped like a Hugging Face Hub repository id ("org/name"), and not an existing local path."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not Path(name).exists() and not name.startswith((".", "~"))


def resolve_model(name_or_path: str | Path) -> Path:
    """A folder holding a trained model: a built-in name, a local folder (a release or a run directory), or a
    hub id downloaded into the Hugging Face cache. A hub id without network fails at once, naming the options."""
    name = str(name_or_path)
    if name in BUILTIN:
        return builtin_folder(name)
    if Path(name).is_dir():
        return Path(name)
    if is_hub_id(name):
        return download(name)
    raise FileNotFoundError(
        f"{name}: no such model; give a built-in name ({', '.join(BUILTIN)}), a model or run folder, or a "
        "Hugging Face Hub id (org/name)"
    )


def download(repo_id: str) -> Path:
    """The files of a released model from the Hugging Face Hub (or its local cache)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=[HUB_META_FILE, MODEL_FILE, CARD_FILE]))
    except Exception as err:  # offline, unknown repo, no access: hub errors have many types
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise FileNotFoundError(
            f"{repo_id}: could not fetch this model from the Hugging Face Hub{offline}: {type(err).__name__}; "
            f"use a built-in model ({', '.join(BUILTIN)}) or a local folder (save_pretrained / "
            "`mamer export RUN_DIR --pretrained DIR`)"
        ) from err


def save_pretrained(
    source: str | Path, folder: str | Path, card: str | None = None, overwrite: bool = False
) -> Path:
    """Write a trained model (a run directory or a release folder) to `folder` in the hub layout: config.json,
    model.safetensors and README.md (`card`, or a card made from its description). A folder that already holds
    any of these files is refused unless `overwrite`: they may be the user's own."""
    from mamer.workflows.evaluation.hub_card import hub_card
    from mamer.workflows.evaluation.model_card import model_card

    source, folder = Path(source), Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file; save_pretrained writes a folder (give a new or empty folder)")
    present = [name for name in (HUB_META_FILE, MODEL_FILE, CARD_FILE) if (folder / name).exists()]
    if present and not overwrite:
        raise ValueError(
            f"{folder} already holds {', '.join(present)}; they are left as they are: choose a new folder, or "
            "overwrite them (`mamer export --overwrite`, save_pretrained(..., overwrite=True))"
        )
    _, meta = load_model(source)
    if card is None and card_lineage(read_card(source)).get("name"):
        card = read_card(source)  # a release: its own card, scores and all
    identity = lineage_of(source, meta) | card_lineage(card or "")
    identity["name"] = identity.get("name") or folder.name  # a run without a name of its own: the folder's
    folder.mkdir(parents=True, exist_ok=True)
    if source.resolve() != folder.resolve():
        shutil.copyfile(source / MODEL_FILE, folder / MODEL_FILE)
    # where the training features were cached means nothing elsewhere; who the model is travels with it
    released = replace(meta, features="", lineage=identity)
    atomic_write(
        folder / HUB_META_FILE, lambda p: p.write_text(json.dumps(asdict(released), indent=2) + "\n")
    )
    if card is None:
        card = hub_card(
            released, identity["name"], model_card(source, name=identity["name"]),
            license=identity.get("license") or "other", language=identity.get("language", ()),
            datasets=identity.get("datasets", ()), base_model=identity.get("base_model"),
        )  # fmt: skip
    atomic_write(folder / CARD_FILE, lambda p: p.write_text(card))
    return folder


def push_to_hub(folder: str | Path, repo_id: str, token: str | None = None, private: bool = False) -> str:
    """Upload a saved model folder to the Hugging Face Hub; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, allow_patterns=[HUB_META_FILE, MODEL_FILE, CARD_FILE]
        )
    except Exception as err:  # offline, no token, no access: the hub's errors have many types
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise ValueError(
            f"could not upload {folder} to the Hugging Face Hub as {repo_id}{offline}: {type(err).__name__}: "
            f"{str(err)[:200]}; {folder} is written and kept: push it again when the Hub can be reached"
        ) from err
    return str(info)
