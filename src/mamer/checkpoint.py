"""Run-directory checkpoints: safetensors weights + a JSON description; never pickles of code."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mamer.atomic import BrokenFileError, atomic_write
from mamer.config import RunConfig, config_from_dict, config_to_dict
from mamer.data.dataset import Targets
from mamer.encoders.base import stacked_layers
from mamer.modality import DIMENSIONS, has_categories, has_dimensions, modalities_in
from mamer.model.mamer import MAMER, count_parameters

MODEL_FILE, META_FILE, LAST_DIR = "model.safetensors", "model.json", "last"
HUB_META_FILE = "config.json"  # the same description, in a released model's folder (the Hugging Face layout)
STATE_FILE = "trainer_state.pt"  # optimizer, counters and random streams of `last/`, for --resume


class CheckpointError(BrokenFileError):
    """A checkpoint file (weights, description or trainer state) is truncated or corrupt; names the file."""


_RETRAIN = "re-create it (train again, export again, or reinstall mamer for a built-in model)"
_RESUME = "the run cannot resume from it: train again without --resume (this starts the run over)"


@dataclass
class ModelMeta:
    """Everything needed to rebuild a trained model and read its outputs, stored as `model.json`."""

    config: dict
    audio_dim: int
    text_dim: int
    targets: dict
    features: str  # feature cache folder the model was trained on
    encoders: dict  # specs of the frozen encoders that made the features
    params: int  # parameters of the inference model (training-only heads excluded)
    epoch: int = 0
    dev_score: float | None = None

    @property
    def run_config(self) -> RunConfig:
        return config_from_dict(self.config)

    @property
    def label_space(self) -> Targets:
        return Targets(**self.targets)


def build_model(
    config: RunConfig, audio_dim: int, text_dim: int, targets: Targets, encoders: dict | None = None
) -> MAMER:
    """The inference model for features of `encoders` (their specs by modality; None = one hidden state or a
    mean each) and `targets`' label space."""
    task = config.data.task
    num_classes = len(targets.outputs) if has_categories(task) else 0
    num_dims = len(DIMENSIONS) if has_dimensions(task) else 0
    modalities = modalities_in(config.model.views)
    audio_dim = audio_dim if "audio" in modalities else 0
    text_dim = text_dim if "text" in modalities else 0
    encoders = encoders or {}
    stacked = (stacked_layers(encoders.get("audio", {})), stacked_layers(encoders.get("text", {})))
    return MAMER(config.model, audio_dim, text_dim, num_classes, num_dims, stacked)


def make_meta(
    config: RunConfig,
    model: MAMER,
    audio_dim: int,
    text_dim: int,
    targets: Targets,
    features: Path,
    encoders: dict,
) -> ModelMeta:
    return ModelMeta(
        config_to_dict(config),
        audio_dim,
        text_dim,
        asdict(targets),
        str(features),
        encoders,
        count_parameters(model),
    )


def save_weights(module: nn.Module, path: Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write(path, lambda p: save_file(state, str(p)))


def save_model(folder: Path, model: MAMER, meta: ModelMeta) -> None:
    """Inference weights and their description: what `load_model` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, folder / MODEL_FILE)
    atomic_write(folder / META_FILE, lambda p: p.write_text(json.dumps(asdict(meta), indent=2)))


def read_meta(folder: str | Path) -> ModelMeta:
    """The description of the model in a run directory (model.json) or a released model's folder (config.json)."""
    folder = Path(folder)
    for name in (META_FILE, HUB_META_FILE):
        if (folder / name).is_file() and (folder / MODEL_FILE).is_file():
            try:
                return ModelMeta(**json.loads((folder / name).read_text(encoding="utf-8")))
            except (ValueError, TypeError) as err:  # JSONDecodeError, UnicodeDecodeError, missing fields
                raise CheckpointError(folder / name, "the model description", _RETRAIN, err) from err
    raise FileNotFoundError(
        f"{folder} holds no trained model ({MODEL_FILE} + {META_FILE} or {HUB_META_FILE}); is it a run directory?"
    )


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[MAMER, ModelMeta]:
    """Rebuild a trained model from a run directory or a released model's folder."""
    folder = Path(path)
    meta = read_meta(folder)
    model = build_model(meta.run_config, meta.audio_dim, meta.text_dim, meta.label_space, meta.encoders)
    model.load_state_dict(read_weights(folder / MODEL_FILE, "the model's weights", _RETRAIN))
    return model.to(device).eval(), meta


def read_weights(path: Path, what: str, remedy: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; CheckpointError naming it when it is truncated or corrupt."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise
    except Exception as err:  # safetensors raises SafetensorError (a bare Exception subclass), OSError, ...
        raise CheckpointError(path, what, remedy, err) from err


def save_training_state(folder: Path, model: nn.Module, heads: nn.Module, state: dict) -> None:
    """The last epoch, for --resume: weights as safetensors, optimizer/scheduler/counters as a tensor-only file."""
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, folder / "model.safetensors")
    save_weights(heads, folder / "heads.safetensors")
    atomic_write(folder / STATE_FILE, lambda p: torch.save(state, p))


def load_training_state(folder: Path, model: nn.Module, heads: nn.Module) -> dict:
    """Weights and trainer state of `folder` (`last/`) into `model` and `heads`; returns the state.
    CheckpointError names a truncated or corrupt file."""
    if not (folder / STATE_FILE).exists():
        raise FileNotFoundError(f"nothing to resume: {folder} has no {STATE_FILE}")
    model.load_state_dict(read_weights(folder / "model.safetensors", "the last epoch's weights", _RESUME))
    heads.load_state_dict(read_weights(folder / "heads.safetensors", "the last epoch's heads", _RESUME))
    try:
        return torch.load(folder / STATE_FILE, weights_only=True)
    except Exception as err:  # EOFError (empty), RuntimeError (truncated zip), UnpicklingError (garbage)
        raise CheckpointError(folder / STATE_FILE, "the trainer state", _RESUME, err) from err
