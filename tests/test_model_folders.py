"""Broken model folders get a named error (the file and what is wrong), never a traceback (issue 32, finding 11)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mamer.checkpoint import ModelFolderError, load_model
from mamer.cli import main


@pytest.fixture(scope="module")
def runs(train_tiny, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("model_folders")
    return {"unified": train_tiny(folder), "audio_only": train_tiny(folder, "quickstart_audio_only")}


def edited(run: Path, folder: Path, edit) -> Path:
    """A copy of `run`'s model (weights + model.json) with its description changed by `edit(description)`."""
    folder.mkdir()
    shutil.copyfile(run / "model.safetensors", folder / "model.safetensors")
    description = json.loads((run / "model.json").read_text())
    edit(description)
    (folder / "model.json").write_text(json.dumps(description))
    return folder


CASES = {
    "audio_dim 999": (
        lambda d: d.update(audio_dim=999),
        r"model\.safetensors: these weights do not fit .*audio",
    ),
    "labels cut to 2": (
        lambda d: d["targets"].update(labels=d["targets"]["labels"][:2]),
        r"model\.safetensors: these weights do not fit .*head",
    ),
    "max_audio_tokens -5": (
        lambda d: d["config"]["model"].update(max_audio_tokens=-5),
        r"model\.json: describes no model .*model\.max_audio_tokens must be an integer >= 1, got -5",
    ),
    "config null": (lambda d: d.update(config=None), r"model\.json: `config` must be an object, not null"),
    "text_dim a string": (lambda d: d.update(text_dim="384"), r"model\.json: `text_dim` must be an integer"),
}


@pytest.mark.parametrize("case", CASES)
def test_an_edited_description_is_named(runs, tmp_path, case, capsys):
    edit, words = CASES[case]
    folder = edited(runs["unified"], tmp_path / "model", edit)
    with pytest.raises(ModelFolderError, match=words):
        load_model(folder)
    assert main(["predict", str(folder), "--text", "so happy"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(folder) in err


def test_another_models_weights_are_named(runs, tmp_path):
    folder = edited(runs["unified"], tmp_path / "model", lambda d: None)
    shutil.copyfile(runs["audio_only"] / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(ModelFolderError, match=r"do not fit the model model\.json describes .*is missing"):
        load_model(folder)


def test_pretrained_at_a_file_and_a_push_offline_are_named(runs, tmp_path, capsys, monkeypatch):
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    assert main(["export", str(runs["unified"]), "--pretrained", str(target)]) == 2
    assert "notes.txt is a file" in capsys.readouterr().err and target.read_text() == "mine\n"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "release"
    assert main(["export", str(runs["unified"]), "--pretrained", str(out), "--push-to-hub", "me/model"]) == 2
    err = capsys.readouterr().err
    assert "could not upload" in err and "is written and kept" in err and "Traceback" not in err
    assert (out / "model.safetensors").is_file()
