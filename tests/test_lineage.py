"""A model carries its name, licence, scores and lineage through save, fine-tune and export (issue 37, item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mamer import EmotionRecognizer
from mamer.checkpoint import read_meta
from mamer.cli import main
from mamer.workflows.evaluation.hub_card import Score, hub_card
from mamer.workflows.evaluation.lineage import card_header
from mamer.workflows.evaluation.model_card import write_model_card
from mamer.workflows.inference.pretrained import builtin_folder, save_pretrained
from mamer.workflows.training.loop import train


def header(folder: Path) -> dict:
    return card_header((folder / "README.md").read_text())


def test_mamer_base_saved_again_is_still_mamer_base(tmp_path):
    """It used to be saved with `license: other`, titled by its run (parts3f_eo12_seed0), without results."""
    saved = EmotionRecognizer.from_pretrained("mamer-base").save_pretrained(tmp_path / "m")
    card = (saved / "README.md").read_text()
    assert card == (builtin_folder("mamer-base") / "README.md").read_text()
    assert header(saved)["license"] == "cc-by-nc-sa-4.0" and "parts3f" not in card and "cropped" not in card
    lineage = json.loads((saved / "config.json").read_text())["lineage"]
    assert lineage["name"] == "mamer-base" and lineage["license"] == "cc-by-nc-sa-4.0"
    assert EmotionRecognizer.load(saved).name == EmotionRecognizer.load("mamer-base").name == "mamer-base"


@pytest.fixture(scope="module")
def release(train_tiny, tmp_path_factory) -> Path:
    """A tiny model released under a non-commercial licence, with a test score on its card."""
    folder = tmp_path_factory.mktemp("lineage")
    run = train_tiny(folder)
    meta = read_meta(run)
    card = hub_card(meta, "tiny-base", "# tiny-base\n\nA tiny release.", [Score("EmoDB", "test", "uar", 0.5)],
                    license="cc-by-nc-sa-4.0", language=["de"], datasets=["EmoDB"])  # fmt: skip
    return save_pretrained(run, folder / "release", card=card)


def test_a_fine_tuned_model_inherits_licence_and_names_its_base(release, tiny_config, tmp_path, capsys):
    run = train(tiny_config(tmp_path, "quickstart", "train.epochs=1", f"train.init_from={release}"))
    assert read_meta(run).lineage == {
        "license": "cc-by-nc-sa-4.0", "datasets": ["EmoDB"], "language": ["de"], "base_model": "tiny-base"
    }  # fmt: skip
    card = write_model_card(run).read_text()
    assert "licence: cc-by-nc-sa-4.0" in card and "fine-tuned from `tiny-base`" in card
    assert "trained on EmoDB" in card and "cropped" not in card
    assert main(["export", str(run), "--pretrained", str(tmp_path / "mine")]) == 0
    exported = header(tmp_path / "mine")
    assert exported["license"] == "cc-by-nc-sa-4.0" and exported["base_model"] == "tiny-base"
    assert EmotionRecognizer.load(tmp_path / "mine").name == "mine"


def test_info_and_card_give_the_same_name(release, train_tiny, tmp_path):
    from fastapi.testclient import TestClient

    from mamer.workflows.service.app import create_app

    plain = train_tiny(tmp_path)
    for folder, name in ((release, "tiny-base"), (plain, read_meta(plain).run_config.name)):
        with TestClient(create_app(folder, asr=None), base_url="http://localhost") as client:
            assert client.get("/info").json()["name"] == client.get("/card").json()["name"] == name
