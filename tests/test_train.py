import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import mamer.workflows.training.resume as resume_module
from conftest import TINY
from mamer.cli import main
from mamer.data.extract import prepare_features
from mamer.workflows.experiments.quickstart import run_quickstart
from mamer.workflows.training.loop import train


def test_quickstart_path_end_to_end(tmp_path, capsys):
    reports = run_quickstart(
        tmp_path, speakers=4, utterances_per_speaker=8, overrides=[*TINY, "train.epochs=2"], progress=False
    )
    run = tmp_path / "unified"
    report = json.loads((run / "report.json").read_text())
    assert report == json.loads(json.dumps(reports["unified"]))
    assert report["task"] == "categorical" and list(report["results"]) == ["audio", "text", "audio+text"]
    for metrics in report["results"].values():
        assert {"macro_f1", "accuracy", "uar"} <= set(metrics)
    assert report["n"] == {"audio": 8, "text": 8, "audio+text": 8}
    for name in (
        "report.md",
        "views.png",
        "confusion_audio.png",
        "confusion_text.png",
        "confusion_audio+text.png",
        "model.safetensors",
        "model.json",
        "config.yaml",
    ):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").iterdir())
    assert "audio+text" in capsys.readouterr().out


ON_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize(
    ("device", "batching"),
    [("cpu", "mixed"), ("cpu", "by_modality"), pytest.param("cuda", "mixed", marks=ON_CUDA)],
)
def test_resume_after_a_crash_ends_where_an_uninterrupted_run_ends(
    device, batching, partial_manifest, tiny_config, tmp_path, monkeypatch
):
    """On a GPU, dropout draws from CUDA's generator: resume must restore it as well as the CPU's. Batched by
    modality, the resumed epoch draws the batches it would have drawn (their order is a function of the epoch)."""
    options = ["train.epochs=3", "train.patience=9", f"train.device={device}", "train.precision=fp32",
               f"data.manifest={partial_manifest}", f"train.batching={batching}"]  # fmt: skip
    whole = train(tiny_config(tmp_path / "a", "quickstart", *options))

    real_save = resume_module.save_training_state

    def save_then_crash(folder, model, heads, state):
        real_save(folder, model, heads, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt  # killed right after the epoch-2 checkpoint

    config = tiny_config(tmp_path / "b", "quickstart", *options)
    monkeypatch.setattr(resume_module, "save_training_state", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.setattr(resume_module, "save_training_state", real_save)
    resumed = train(config, resume=True)
    a, b = (
        load_file(str(whole / "last/model.safetensors")),
        load_file(str(resumed / "last/model.safetensors")),
    )
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_cli_train_evaluate_compare(tiny_corpus, tmp_path, capsys):
    common = [
        f"data.manifest={tiny_corpus}",
        f"data.features={tmp_path / 'features'}",
        "data.audio_encoder=logmel",
        "data.text_encoder=hashed",
        *TINY,
        "train.epochs=1",
    ]
    for name in ("quickstart_text_only", "quickstart_multimodal_only"):
        assert main(["train", "--config", name, f"run_dir={tmp_path / name}", *common]) == 0
        assert main(["evaluate", str(tmp_path / name), "--split", "test"]) == 0
    text_only = json.loads((tmp_path / "quickstart_text_only/report.json").read_text())
    assert list(text_only["results"]) == ["text"]  # a dedicated text model has no audio view
    multimodal = json.loads((tmp_path / "quickstart_multimodal_only/report.json").read_text())
    assert list(multimodal["results"]) == ["audio", "text", "audio+text"]  # its missing-modality scores too
    capsys.readouterr()
    out = tmp_path / "compare.md"
    assert (
        main(
            [
                "compare",
                str(tmp_path / "quickstart_text_only"),
                str(tmp_path / "quickstart_multimodal_only"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "quickstart_text_only" in table and "params" in table and " - " in table
    assert out.read_text().strip() == table.strip()


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no trained model" in capsys.readouterr().err
    assert main(["train", "--config", "quickstart", "model.widht=3"]) == 2
    assert "unknown config key model.'widht'" in capsys.readouterr().err


def test_dimensional_and_categorical_together(tiny_config, tmp_path):
    from mamer.workflows.evaluation.evaluate import evaluate_run

    run = train(tiny_config(tmp_path, "quickstart", "data.task=both", "train.epochs=1"))
    report = evaluate_run(run, "test")
    assert report["task"] == "both"
    for metrics in report["results"].values():
        assert {"macro_f1", "uar", "ccc_arousal", "ccc_valence", "ccc_dominance", "ccc_mean"} <= set(metrics)
        assert -1.0 <= metrics["ccc_mean"] <= 1.0
    assert report == json.loads((run / "report.json").read_text())
    for view, matrix in report["confusion"].items():  # rows true, columns predicted, in label order
        counts = np.array(matrix)
        assert counts.shape == (len(report["labels"]),) * 2 and counts.sum() == report["n"][view]
        assert np.trace(counts) / counts.sum() == pytest.approx(report["results"][view]["accuracy"])


def test_configured_layers_reach_the_feature_extractor(tiny_config, tmp_path):
    config = tiny_config(tmp_path, "quickstart", "data.audio_layers=[1]")
    with pytest.raises(ValueError, match="layer"):  # logmel has no layers: the option got through
        prepare_features(config, progress=False)


def test_weight_decay_reaches_only_weight_matrices(tiny_config, tmp_path):
    """Norms, biases, the [CLS]/[SEP]/[MASK] vectors, position/type embeddings and the temperature are not
    decayed; the projections, attention and feed-forward matrices are."""
    from mamer.checkpoint import build_model
    from mamer.data.dataset import Targets
    from mamer.model.heads import PretrainingHeads
    from mamer.workflows.training.session import make_optimizer

    config = tiny_config(tmp_path, "quickstart", "model.audio_downsample=4", "train.weight_decay=0.05")
    model = build_model(config, 16, 24, Targets(["a", "b"]))
    heads = PretrainingHeads(32, 16, 24, 4, 16, 0.07)
    decay = {
        id(p): g["weight_decay"]
        for g in make_optimizer(config, model, heads).param_groups
        for p in g["params"]
    }
    named = dict(model.named_parameters()) | {f"heads.{n}": p for n, p in heads.named_parameters()}
    free = sorted(n for n, p in named.items() if decay[id(p)] == 0.0)
    decayed = sorted(n for n, p in named.items() if decay[id(p)] == 0.05)
    for name in ("sequence.cls", "sequence.sep", "sequence.mask", "sequence.audio_pos.weight",
                 "sequence.types.weight", "transformer.norm.weight", "head.net.0.weight", "heads.logit_scale",
                 "transformer.layers.0.linear1.bias"):  # fmt: skip
        assert name in free
    assert "transformer.layers.0.linear1.weight" in decayed and "text_in.proj.weight" in decayed
    assert all(named[n].ndim == 2 for n in decayed) and len(free) + len(decayed) == len(named)


def test_text_longer_than_the_model_reads_is_shortened_and_counted(tiny_config, tmp_path, caplog):
    """A text encoder may give more tokens than model.max_text_tokens: training reads the first ones (it used
    to stop with an index error in the position embedding) and says how many texts were shortened."""
    config = tiny_config(tmp_path, "quickstart", "model.max_text_tokens=3", "train.epochs=1")
    with caplog.at_level("WARNING", logger="mamer.data.dataset"):
        run = train(config)
    assert (run / "model.safetensors").is_file()
    assert any("tokens (model.max_text_tokens)" in r.getMessage() for r in caplog.records)
