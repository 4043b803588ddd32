"""An encoder choice as one object: which frozen encoder, which of its hidden states, and how they are pooled.

A choice travels from the config or the command line to the feature cache, and a checkpoint's recorded encoder
`spec()` turns back into one (`EncoderChoice.from_spec`), so inference rebuilds the very encoder training used.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mamer.config import DataConfig, differing_keys
from mamer.encoders.base import LAYER_POOLINGS, AudioEncoder, TextEncoder
from mamer.encoders.registry import NO_LAYERS, default_encoder_names, load_audio_encoder, load_text_encoder

log = logging.getLogger(__name__)

# Built-in encoders: spec key -> constructor option (the other spec keys describe, they do not configure).
_SPEC_OPTIONS = {
    "whisper-base": {"window_seconds": "window_seconds"},
    "whisper-tiny.en": {"window_seconds": "window_seconds"},
    "logmel": {"dim": "n_mels", "sample_rate": "sample_rate", "normalize": "normalize"},
    "minilm": {"max_tokens": "max_tokens"},
    "hashed": {"dim": "dim", "max_tokens": "max_tokens", "seed": "seed"},
    "egemaps": {"normalize": "normalize"},
    "compare": {"normalize": "normalize"},
}
# Encoders on transformers models (presets, "hf", a folder or hub name): these keys, and weights.path if any.
_HF_SPEC_OPTIONS = ("max_tokens", "window_seconds", "overlap_seconds")


@dataclass(frozen=True)
class EncoderChoice:
    """The frozen encoder of one modality: `kind` "audio" or "text"; `name` a registry name, preset, folder or
    hub name ("auto": the offline default when installed, else the no-download fallback); `layers` the hidden
    states used (empty: the encoder's default); `layer_pooling` "mean" of them or "learned" (kept side by side
    for the model's learned weighted sum); `options` further constructor options a recorded spec carries."""

    kind: str
    name: str = "auto"
    layers: tuple[int, ...] = ()
    layer_pooling: str = "mean"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("audio", "text"):
            raise ValueError(f"encoder kind must be 'audio' or 'text', got {self.kind!r}")
        object.__setattr__(self, "layers", tuple(int(layer) for layer in self.layers))

    @classmethod
    def from_config(cls, data: DataConfig, kind: str) -> EncoderChoice:
        """The `kind` encoder a run config's data section names (`data.{kind}_encoder`, `_layers`, ...)."""
        return cls(
            kind,
            getattr(data, f"{kind}_encoder"),
            tuple(getattr(data, f"{kind}_layers")),
            getattr(data, f"{kind}_layer_pooling"),
        )

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], kind: str) -> EncoderChoice:
        """The choice that rebuilds the encoder whose `spec()` a checkpoint or feature cache recorded."""
        name, weights = spec["name"], spec.get("weights") or {}
        pooling = "learned" if spec.get("pooling") == LAYER_POOLINGS["learned"] else "mean"
        if name in _SPEC_OPTIONS:
            options = {option: spec[key] for key, option in _SPEC_OPTIONS[name].items() if key in spec}
            if name.startswith("whisper"):
                options["pad_to_30s"] = spec.get("context") == "30s-padded"
                if "model_dir" in weights:
                    options["model_dir"] = weights["model_dir"]
        else:
            options = {key: spec[key] for key in _HF_SPEC_OPTIONS if key in spec}
            if "path" in weights:
                options["path"] = weights["path"]
            elif name == "hf":
                raise ValueError(
                    "the 'hf' encoder spec records no model folder (weights.path); cannot rebuild it"
                )
        layers = spec.get("layers") if name not in NO_LAYERS else None
        return cls(kind, name, tuple(layers or ()), pooling, options)

    def resolved(self) -> EncoderChoice:
        """This choice with "auto" replaced by the encoder it stands for here (logs why if a fallback)."""
        if self.name != "auto":
            return self
        audio, text, note = default_encoder_names()
        if note:
            log.warning(note)
        return replace(self, name=audio if self.kind == "audio" else text)

    def constructor_options(self, device: str = "cpu") -> dict[str, Any]:
        """Keyword arguments for the registry's loader; ValueError for layer options on an encoder without layers."""
        options = dict(self.options)
        if self.name in NO_LAYERS:
            if self.layers or self.layer_pooling != "mean":
                raise ValueError(
                    f"the {self.name} encoder has no layers to choose or pool; drop the layer options"
                )
            return options
        if device != "cpu":
            options["device"] = device
        if self.layers:
            options["layers"] = list(self.layers)
        if self.layer_pooling != "mean":
            options["layer_pooling"] = self.layer_pooling
        return options

    def build(self, device: str = "cpu") -> AudioEncoder | TextEncoder:
        """The encoder itself; missing weights raise ValueError naming the fix."""
        choice = self.resolved()
        load = load_audio_encoder if self.kind == "audio" else load_text_encoder
        try:
            return load(choice.name, **choice.constructor_options(device))
        except OSError as err:  # weights not found: a user error, not a traceback
            raise ValueError(str(err)) from err


def rebuild_encoder(spec: Mapping[str, Any], kind: str, device: str = "cpu") -> AudioEncoder | TextEncoder:
    """The frozen `kind` encoder a checkpoint recorded; warns about any recorded key the rebuilt one differs in."""
    name = spec["name"]
    try:
        encoder = EncoderChoice.from_spec(spec, kind).build(device)
    except (ImportError, ValueError) as err:  # ModuleNotFoundError is an ImportError
        raise ModuleNotFoundError(
            f"the model was trained on {kind} features of the {name!r} encoder, which cannot be built here: {err}"
        ) from err
    differs = differing_keys(dict(spec), encoder.spec())
    if differs:
        log.warning(
            "%s encoder %r differs from the one the model was trained with in: %s", kind, name, differs
        )
    return encoder
