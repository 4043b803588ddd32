"""ONNX export of the shared model (projections + transformer + head): one file per view.

`export_onnx(run_dir, "out.onnx")` writes `out.audio.onnx`, `out.text.onnx` and `out.audio+text.onnx` (the views
the model can take) and `out.json` describing them. Inputs, batch and lengths all dynamic:

    audio: (B, Ta, Da) float32 frozen-encoder frames,  audio_mask: (B, Ta) bool, True = valid
    text:  (B, Tt, Dt) float32 frozen-encoder tokens,   text_mask:  (B, Tt) bool
Outputs: `logits` (B, C) over the classes for categorical runs (a model with class parts, `data.class_parts`,
gives their log-probabilities, each part's added to its class's), `dims` (B, 3) arousal/valence/dominance on the
corpus scale for dimensional runs, both for task "both". The frozen encoders are not exported: run them first
(see predict.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from mamer.checkpoint import load_model
from mamer.data.dataset import Targets
from mamer.modality import modalities_of, views_within
from mamer.model.mamer import MAMER

log = logging.getLogger(__name__)
VIEW_INPUTS = {
    "audio": ("audio", "audio_mask"),
    "text": ("text", "text_mask"),
    "audio+text": ("audio", "audio_mask", "text", "text_mask"),
}


class ViewModel(nn.Module):
    """One view of MAMER as a plain tensor-in, tuple-out module (what the exporter needs): class logits and
    A/V/D on the corpus scale of `targets`."""

    def __init__(self, model: MAMER, view: str, targets: Targets):
        super().__init__()
        self.model, self.view, self.targets = model, view, targets
        self.register_buffer("dim_mean", torch.tensor(targets.dim_mean, dtype=torch.float32))
        self.register_buffer("dim_std", torch.tensor(targets.dim_std, dtype=torch.float32))

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(VIEW_INPUTS[self.view], inputs, strict=True)))
        outputs = []
        if out.logits is not None:
            outputs.append(self.targets.class_logits(out.logits))
        if out.dims is not None:
            outputs.append(out.dims * self.dim_std + self.dim_mean)
        return tuple(outputs)


def output_names(model: MAMER) -> list[str]:
    return [name for name, n in (("logits", model.head.num_classes), ("dims", model.head.num_dims)) if n]


def example_inputs(model: MAMER, view: str, batch: int = 3) -> tuple[torch.Tensor, ...]:
    """Random features of a few lengths (batch > 1 and varied lengths keep those axes dynamic)."""
    generator = torch.Generator().manual_seed(0)
    k = model.config.audio_downsample
    inputs = []
    for modality in modalities_of(view):
        projection = model.audio_in if modality == "audio" else model.text_in
        dim = projection.feature_dim
        length = 7 * k + 3 if modality == "audio" else 9
        features = torch.randn(batch, length, dim, generator=generator)
        mask = torch.arange(length)[None] < torch.tensor([length, length - 2, 3][:batch])[:, None]
        inputs += [features, mask]
    return tuple(inputs)


def dynamic_shapes(model: MAMER, view: str) -> tuple[dict, ...]:
    """Batch and per-modality length dims; audio frames up to the model's learned positions."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    frames = torch.export.Dim(
        "audio_frames", min=1, max=model.config.max_audio_tokens * model.config.audio_downsample
    )
    tokens = torch.export.Dim("text_tokens", min=1, max=model.config.max_text_tokens)
    shapes = []
    for modality in modalities_of(view):
        length = frames if modality == "audio" else tokens
        shapes += [{0: batch, 1: length}, {0: batch, 1: length}]
    return tuple(shapes)


def view_paths(out: str | Path, views: list[str]) -> dict[str, Path]:
    """`out.onnx` -> {view: out.<view>.onnx}."""
    out = Path(out)
    stem = out.name.removesuffix(".onnx")
    return {view: out.with_name(f"{stem}.{view}.onnx") for view in views}


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporter logs every graph pass at INFO and warns about unrelated ops: keep the CLI readable."""
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def export_view(model: MAMER, view: str, path: Path, targets: Targets) -> Path:
    """One view -> one ONNX file with dynamic batch and lengths (dynamo exporter; see the module docstring)."""
    wrapper = ViewModel(model, view, targets).eval()
    with quiet_exporter():
        program = torch.onnx.export(
            wrapper,
            example_inputs(model, view),
            dynamo=True,
            dynamic_shapes=(dynamic_shapes(model, view),),  # one entry: the *inputs tuple
            input_names=list(VIEW_INPUTS[view]),
            output_names=output_names(model),
            optimize=True,
            verbose=False,
        )
    program.save(str(path))
    return path


def export_onnx(run_dir: str | Path, out: str | Path, overwrite: bool = False) -> dict[str, Path]:
    """Export every view the run's model can take; returns {view: path} and writes `<out stem>.json`. Files
    already there are refused unless `overwrite`."""
    model, meta = load_model(run_dir, "cpu")
    modalities = {m for m, p in (("audio", model.audio_in), ("text", model.text_in)) if p is not None}
    views = [v for v in views_within(modalities) if v in VIEW_INPUTS]
    paths = view_paths(out, views)
    sidecar = Path(out).with_name(Path(out).name.removesuffix(".onnx") + ".json")
    present = [str(p) for p in [*paths.values(), sidecar] if p.exists()]
    if present and not overwrite:
        raise ValueError(
            f"{', '.join(present)} already exist; they are left as they are (--overwrite replaces them)"
        )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    targets = meta.label_space
    for view, path in paths.items():
        log.info("exporting the %s view to %s", view, path)
        export_view(model, view, path, targets)
    description = {
        "views": {view: path.name for view, path in paths.items()},
        "inputs": {view: list(VIEW_INPUTS[view]) for view in views},
        "outputs": output_names(model),
        "labels": targets.labels,
        "dims": "arousal, valence, dominance on the corpus scale",
        "max_audio_frames": model.config.max_audio_tokens * model.config.audio_downsample,
        "max_text_tokens": model.config.max_text_tokens,
        "encoders": meta.encoders,
        "run_dir": str(run_dir),
    }
    sidecar.write_text(json.dumps(description, indent=2))
    return paths
