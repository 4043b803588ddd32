import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mamer.checkpoint import load_model
from mamer.cli import main
from mamer.workflows.export import ViewModel

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def exported(train_tiny, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("export")
    run = train_tiny(folder, "quickstart", "data.task=both")
    assert main(["export", str(run), "--onnx", str(folder / "onnx" / "model.onnx")]) == 0
    return run, folder / "onnx"


def random_inputs(view: str, batch: int, lengths: dict[str, int], dims: dict[str, int], seed: int):
    generator = torch.Generator().manual_seed(seed)
    inputs = {}
    for modality in view.split("+"):
        n = lengths[modality]
        inputs[modality] = torch.randn(batch, n, dims[modality], generator=generator)
        valid = torch.randint(1, n + 1, (batch,), generator=generator)
        valid[0] = n  # one full row, the others padded
        inputs[f"{modality}_mask"] = torch.arange(n)[None] < valid[:, None]
    return inputs


def test_onnxruntime_matches_pytorch_on_every_view(exported):
    run, folder = exported
    model, meta = load_model(run)
    description = json.loads((folder / "model.json").read_text())
    assert description["views"] == {v: f"model.{v}.onnx" for v in ("audio", "text", "audio+text")}
    assert description["outputs"] == ["logits", "dims"]
    dims = {"audio": model.audio_in.feature_dim, "text": model.text_in.feature_dim}
    targets = meta.label_space
    for view, name in description["views"].items():
        session = ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == description["inputs"][view]
        wrapper = ViewModel(model, view, targets).eval()
        # batch sizes and lengths unlike the export example (3, 7k + 3 frames, 9 tokens), batch 1 included
        for seed, (batch, frames, tokens) in enumerate([(1, 50, 4), (5, 123, 21), (2, 8, 1)]):
            inputs = random_inputs(view, batch, {"audio": frames, "text": tokens}, dims, seed)
            with torch.inference_mode():
                expected = wrapper(*inputs.values())
            got = session.run(None, {k: v.numpy() for k, v in inputs.items()})
            assert [g.shape for g in got] == [(batch, len(targets.labels)), (batch, 3)]
            for g, e in zip(got, expected, strict=True):
                np.testing.assert_allclose(g, e.numpy(), atol=1e-4, err_msg=f"{view} batch {batch}")


def test_exported_dims_are_on_the_corpus_scale(exported):
    run, folder = exported
    model, meta = load_model(run)
    inputs = random_inputs("text", 2, {"text": 6}, {"text": model.text_in.feature_dim}, 0)
    session = ort.InferenceSession(str(folder / "model.text.onnx"), providers=["CPUExecutionProvider"])
    _, dims = session.run(None, {k: v.numpy() for k, v in inputs.items()})
    with torch.inference_mode():
        normalised = model(**inputs).dims
    np.testing.assert_allclose(dims, meta.label_space.denormalise(normalised).numpy(), atol=1e-4)
