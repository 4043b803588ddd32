"""Released models: save_pretrained / from_pretrained round trips, names and hub ids, and train.init_from."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mamer import EmotionRecognizer
from mamer.checkpoint import load_model
from mamer.cli import main
from mamer.data.manifest import read_manifest, write_manifest
from mamer.workflows.inference.pretrained import resolve_model, save_pretrained


@pytest.fixture(scope="module")
def run(train_tiny, tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("pretrained"))


def test_save_and_load_pretrained_round_trip(run, tmp_path):
    recognizer = EmotionRecognizer.load(run)
    folder = recognizer.save_pretrained(tmp_path / "my-model")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["features"] == "" and config["targets"]["labels"] == recognizer.labels
    header = yaml.safe_load((folder / "README.md").read_text().split("---")[1])
    assert header["library_name"] == "mamer" and header["model_name"] == "my-model"
    again = EmotionRecognizer.from_pretrained(folder)
    first, second = recognizer.predict(text="so happy today"), again.predict(text="so happy today")
    assert first.probabilities == pytest.approx(second.probabilities)
    weights, reloaded = (
        load_file(str(run / "model.safetensors")),
        load_file(str(folder / "model.safetensors")),
    )
    assert all(torch.equal(weights[k], reloaded[k]) for k in weights)


def test_cli_export_pretrained_converts_a_run(run, tmp_path, capsys):
    assert main(["export", str(run), "--pretrained", str(tmp_path / "out")]) == 0
    assert "README.md" in capsys.readouterr().out
    assert (tmp_path / "out" / "config.json").is_file()
    assert main(["export", str(run)]) == 2  # neither --onnx nor --pretrained
    assert "--pretrained" in capsys.readouterr().err


def test_hub_ids_offline_fail_at_once_with_the_options(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        FileNotFoundError, match=r"someone/emotion-model: could not fetch .*HF_HUB_OFFLINE.*built-in"
    ):
        resolve_model("someone/emotion-model")
    with pytest.raises(FileNotFoundError, match="no such model"):
        resolve_model("no-such-model")


def test_save_pretrained_refuses_a_folder_without_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no trained model"):
        save_pretrained(tmp_path, tmp_path / "out")


def relabelled(manifest, out, mapping):
    """The tiny corpus with its classes renamed: a new label set for fine-tuning."""
    rows, _ = read_manifest(manifest)
    write_manifest([dataclasses.replace(r, label=mapping.get(r.label, r.label)) for r in rows], out)
    return out


def test_init_from_keeps_the_shared_model_and_starts_a_new_head(run, tiny_corpus, tiny_config, tmp_path):
    from mamer.workflows.training.loop import train

    source, _ = load_model(run)
    labels = sorted({u.label for u in read_manifest(tiny_corpus)[0]})
    manifest = relabelled(tiny_corpus, tmp_path / "renamed.jsonl", {labels[0]: "other"})
    config = tiny_config(
        tmp_path, "quickstart", f"data.manifest={manifest}", "train.epochs=1", "train.lr=0",
        f"train.init_from={run}", "model.width=64",  # the source's architecture wins over this
    )  # fmt: skip
    tuned, meta = load_model(train(config))
    assert meta.run_config.model.width == source.config.width == 32
    assert "other" in meta.label_space.labels
    before, after = source.state_dict(), tuned.state_dict()
    # lr 0: the copied weights stay as they were
    assert torch.equal(
        before["transformer.layers.0.linear1.weight"], after["transformer.layers.0.linear1.weight"]
    )
    shared = [k for k in before if not k.startswith("head.net.2.")]
    assert shared and all(torch.equal(before[k], after[k]) for k in shared)
    # the output layer: the rows of classes the source knows start from its rows; the new class starts fresh
    old_labels, new_labels = load_model(run)[1].label_space.labels, meta.label_space.labels
    for i, name in enumerate(new_labels):
        same = (
            torch.equal(before["head.net.2.weight"][old_labels.index(name)], after["head.net.2.weight"][i])
            if name in old_labels
            else None
        )
        assert same is (None if name == "other" else True)
    fresh = after["head.net.2.weight"][new_labels.index("other")]
    assert not any(torch.equal(fresh, row) for row in before["head.net.2.weight"])


def test_init_from_with_the_same_labels_keeps_the_head(run, tiny_config, tmp_path):
    from mamer.workflows.training.loop import train

    source, _ = load_model(run)
    config = tiny_config(tmp_path, "quickstart", "train.epochs=1", "train.lr=0", f"train.init_from={run}")
    tuned, _ = load_model(train(config))
    assert torch.equal(source.state_dict()["head.net.2.weight"], tuned.state_dict()["head.net.2.weight"])


def test_init_from_learns_the_copied_weights_slower(run, tiny_config, tmp_path):
    from mamer.workflows.training.init_from import load_source, transfer
    from mamer.workflows.training.session import make_optimizer

    config = tiny_config(tmp_path, "quickstart", "train.init_lr_scale=0.25")
    fresh, _ = load_model(run)
    labels = load_model(run)[1].label_space.labels
    kept = transfer(fresh, load_source(str(run))[0], labels, labels, keep_head=False)
    groups = make_optimizer(config, fresh, torch.nn.Linear(1, 1), kept).param_groups
    scales = {}
    for g in groups:
        scales[g["lr_scale"]] = scales.get(g["lr_scale"], 0) + sum(p.numel() for p in g["params"])
    output = sum(p.numel() for n, p in fresh.named_parameters() if n.startswith("head.net.2."))
    assert scales[0.25] == sum(p.numel() for n, p in fresh.named_parameters() if n in kept)
    assert scales[1.0] >= output + 2  # the output layer and the training-only heads learn at full rate
    assert not any(n.startswith("head.net.2.") for n in kept) and "head.net.0.weight" in kept


def test_the_released_model_predicts_right_after_install(capsys):
    """mamer-base ships in the package: loads by name with no network, the default of `mamer predict`."""
    released = EmotionRecognizer.from_pretrained("mamer-base")
    assert released.labels == ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
    prediction = released.predict(text="I am so furious, how dare you!")
    assert prediction.view == "text" and prediction.label in released.labels
    assert prediction.valence is not None and 1.0 <= prediction.valence <= 5.0
    header = yaml.safe_load((resolve_model("mamer-base") / "README.md").read_text().split("---")[1])
    assert header["license"] == "cc-by-nc-sa-4.0" and header["model-index"][0]["name"] == "mamer-base"
    assert main(["predict", "--text", "what a lovely surprise"]) == 0  # no model named: mamer-base
    assert '"view": "text"' in capsys.readouterr().out
