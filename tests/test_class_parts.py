"""Class parts (`data.class_parts`): one corpus's rows of a class train an output of their own, and every answer
and score counts that output as the class."""

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch

from mamer import EmotionRecognizer
from mamer.checkpoint import build_model, load_model
from mamer.data.dataset import Targets
from mamer.data.extract import prepare_features
from mamer.data.manifest import Utterance, read_manifest, write_manifest
from mamer.workflows.evaluation.evaluate import evaluate_run
from mamer.workflows.evaluation.model_card import write_model_card
from mamer.workflows.training.init_from import same_labels, transfer
from mamer.workflows.training.loop import train
from mamer.workflows.training.session import make_loaders, row_weights


def test_class_logits_add_each_part_to_its_class():
    targets = Targets(["angry", "happy", "sad"], parts=["happy@talk", "angry@read"])
    assert targets.outputs == ["angry", "happy", "sad", "happy@talk", "angry@read"]
    assert targets.output_classes == [0, 1, 2, 1, 0]
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)) * 3
    p = logits.softmax(-1)
    merged = targets.class_logits(logits).exp()
    expected = torch.stack([p[:, 0] + p[:, 4], p[:, 1] + p[:, 3], p[:, 2]], dim=1)
    torch.testing.assert_close(merged, expected)
    torch.testing.assert_close(targets.class_logits(logits).softmax(-1), expected)  # softmax keeps them
    plain = Targets(["angry", "happy"])
    torch.testing.assert_close(plain.class_logits(logits[:, :2]), logits[:, :2])  # no parts: unchanged

    row = Utterance("talk/x", None, "hi", "happy", None, None, None, None, "train")
    assert targets.class_index(row) == 3
    assert targets.class_index(dataclasses.replace(row, id="read/x")) == 1
    assert targets.class_index(dataclasses.replace(row, label="bored")) == -100


@pytest.fixture
def joined_manifest(tiny_corpus, tmp_path):
    """The tiny corpus as two corpora, `talk/...` and `read/...`, as a joined manifest."""
    utts, _ = read_manifest(tiny_corpus, strict=True)
    joined = [dataclasses.replace(u, id=f"{('talk', 'read')[i % 2]}/{u.id}") for i, u in enumerate(utts)]
    path = tmp_path / "joined.jsonl"
    write_manifest(joined, path)
    return path, joined


def test_a_class_part_trains_apart_and_answers_as_its_class(joined_manifest, tiny_config, tmp_path):
    manifest, joined = joined_manifest
    overrides = [f"data.manifest={manifest}", "data.class_parts={talk: [happy]}", "train.epochs=1"]
    config = tiny_config(tmp_path, "quickstart", *overrides)
    loaders = make_loaders(config, prepare_features(config, progress=False))
    targets = loaders.targets
    assert targets.parts == ["happy@talk"] and "happy@talk" not in targets.labels
    dataset = loaders.train.dataset
    index = {u.id: dataset[i]["label"] for i, u in enumerate(dataset.utterances)}
    for u in dataset.utterances:
        part = u.label == "happy" and u.id.startswith("talk/")
        assert index[u.id] == (len(targets.labels) if part else targets.labels.index(u.label)), u.id
    weights = {}  # the part counts as its class: a class's rows weigh the same, whichever output they train
    for u, w in zip(dataset.utterances, row_weights(dataset), strict=True):
        weights.setdefault(u.label, set()).add(round(w, 9))
    assert all(len(w) == 1 for w in weights.values()), weights
    part_rows = sum(u.label == "happy" and u.id.startswith("talk/") for u in dataset.utterances)
    assert 0 < part_rows < sum(u.label == "happy" for u in dataset.utterances)  # both outputs of happy train
    totals = {
        label: w.pop() * sum(u.label == label for u in dataset.utterances) for label, w in weights.items()
    }
    assert max(totals.values()) == pytest.approx(min(totals.values()))  # and every class weighs as much

    run_dir = train(config)
    model, meta = load_model(run_dir)
    assert model.head.num_classes == len(targets.labels) + 1 and meta.label_space.parts == ["happy@talk"]
    report = evaluate_run(run_dir)
    test = [u for u in joined if u.split == "test"]
    assert report["labels"] == targets.labels
    matrix = np.asarray(report["confusion"]["audio"])
    assert matrix.shape == (len(targets.labels),) * 2 and matrix.sum() == len(test)
    happy = targets.labels.index("happy")  # the rows of the part are scored as happy
    assert matrix[happy].sum() == sum(u.label == "happy" for u in test)
    two = evaluate_run(
        run_dir, labels=["happy", "sad"], report_dir=tmp_path / "two"
    )  # restricted after merging
    matrix = np.asarray(two["confusion"]["audio"])
    assert matrix[happy].sum() == matrix[:, [happy, targets.labels.index("sad")]].sum(1)[happy]
    assert matrix.sum() == two["n"]["audio"] == sum(u.label in ("happy", "sad") for u in test)

    recognizer = EmotionRecognizer.load(run_dir)
    features = recognizer.featurize([None], ["I am so happy today!"])[0]
    result = recognizer.predict(text="I am so happy today!")
    assert list(result.probabilities) == targets.labels
    with torch.inference_mode():
        p = model(text=features.text[None], text_mask=torch.ones(1, len(features.text), dtype=torch.bool))
    p = p.logits.softmax(-1)[0]
    expected = dict(zip(targets.labels, p[: len(targets.labels)].tolist(), strict=True))
    expected["happy"] += p[-1].item()
    assert result.probabilities == pytest.approx(expected, abs=1e-5)
    assert "happy@talk" in write_model_card(run_dir, report).read_text()

    # fine-tuning into the classes alone (no parts): a new output layer whose class rows start from the source's
    plain = Targets(targets.labels)
    assert not same_labels(meta, plain.outputs, meta.run_config.data.task)
    tuned = build_model(meta.run_config, meta.audio_dim, meta.text_dim, plain, meta.encoders)
    transfer(tuned, model, targets.outputs, plain.outputs, keep_head=False)
    torch.testing.assert_close(tuned.head.net[-1].weight, model.head.net[-1].weight[: len(plain.labels)])

    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec(
        "onnxscript"
    ):  # export merges too
        import onnxruntime

        from mamer.workflows.export import export_onnx

        paths = export_onnx(run_dir, tmp_path / "onnx" / "model.onnx")
        session = onnxruntime.InferenceSession(str(paths["text"]), providers=["CPUExecutionProvider"])
        mask = np.ones((1, len(features.text)), dtype=bool)
        logits = session.run(None, {"text": features.text[None].numpy(), "text_mask": mask})[0]
        got = dict(zip(targets.labels, torch.from_numpy(logits).softmax(-1)[0].tolist(), strict=True))
        assert got == pytest.approx(expected, abs=1e-4)
        assert json.loads((tmp_path / "onnx" / "model.json").read_text())["labels"] == targets.labels


def test_class_parts_that_cannot_train_are_errors(joined_manifest, tiny_config, tmp_path):
    manifest, _ = joined_manifest
    for parts, message in [
        ("{talk: [bliss]}", r"data.class_parts: talk: 'bliss' is not a class \(angry, happy, neutral, sad\)"),
        (
            "{tlak: [happy]}",
            "no train row of corpus 'tlak' .* has class 'happy', so its part would never train",
        ),
    ]:
        config = tiny_config(tmp_path, "quickstart", f"data.manifest={manifest}", f"data.class_parts={parts}")
        with pytest.raises(ValueError, match=message):
            make_loaders(config, prepare_features(config, progress=False))
    with pytest.raises(ValueError, match="data.class_parts must map corpus names to lists of classes"):
        tiny_config(tmp_path, "quickstart", "data.class_parts={talk: happy}")
