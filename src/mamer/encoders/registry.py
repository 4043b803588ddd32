"""Encoders by short name or path: the one place that knows which encoders exist and how to build them.

A name is a built-in encoder, a preset (a Hugging Face hub name, read from the local cache or from
`path=DIR`), a local model folder, or a hub name ("org/model"). Heavy modules (transformers, the weight
packages) are imported only when an encoder is built, so listing what is available stays cheap.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mamer.encoders.base import AudioEncoder, TextEncoder
from mamer.encoders.packages import INSTALL_HINT, installed

# openSMILE low-level descriptor sets (mamer.encoders.opensmile): an optional extra, non-commercial licence.
OPENSMILE = ("egemaps", "compare")

# Presets: short name -> Hugging Face hub name. No registry package carries these weights: they load from the
# local Hugging Face cache, or from a local folder given as `path=DIR` (or as the encoder name itself).
AUDIO_PRESETS = {
    "wavlm-large": "microsoft/wavlm-large",
    "wavlm-base-plus": "microsoft/wavlm-base-plus",
    "hubert-large": "facebook/hubert-large-ll60k",
    "wav2vec2-large": "facebook/wav2vec2-large-lv60",
}
TEXT_PRESETS = {
    "roberta-large": "FacebookAI/roberta-large",
    "roberta-base": "FacebookAI/roberta-base",
}


def in_hub_cache(hub_name: str) -> bool:
    """True when `hub_name`'s config.json is in the local Hugging Face cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(hub_name, "config.json"), str)


def available_audio_encoders() -> dict[str, bool]:
    """Registered audio encoder names and presets -> whether their weights are installed or cached."""
    presets = {name: in_hub_cache(hub) for name, hub in AUDIO_PRESETS.items()}
    whisper = {name: installed(name) for name in ("whisper-base", "whisper-tiny.en")}
    opensmile = dict.fromkeys(OPENSMILE, importlib.util.find_spec("opensmile") is not None)
    return {**whisper, "logmel": True, **presets, **opensmile}


def available_text_encoders() -> dict[str, bool]:
    """Registered text encoder names and presets -> whether their weights are installed or cached.

    Not listed: "hf", which loads any transformers folder given as `path=` (or given as the name itself).
    """
    presets = {name: in_hub_cache(hub) for name, hub in TEXT_PRESETS.items()}
    return {"minilm": installed("minilm"), "hashed": True, **presets}


def is_path_or_hub_name(name: str) -> bool:
    """A local folder, or something shaped like a hub name ("org/model")."""
    return Path(name).is_dir() or "/" in name


def load_audio_encoder(name: str, **options) -> AudioEncoder:
    """Build audio encoder `name`: "whisper-base", "whisper-tiny.en", "logmel", "egemaps", "compare" (openSMILE),
    a preset, "hf" (with `path=`), a folder or hub name.

    `options` go to the encoder's constructor (e.g. `layers=[6, 7, 8]`, `device="cuda"`, and for presets
    `path=DIR` to read the weights from a local folder).
    """
    if name in ("whisper-base", "whisper-tiny.en"):
        from mamer.encoders.whisper import WhisperAudioEncoder

        return WhisperAudioEncoder(name, **options)
    if name == "logmel":
        from mamer.encoders.logmel import LogMelEncoder

        return LogMelEncoder(**options)
    if name in OPENSMILE:
        from mamer.encoders.opensmile import OpenSmileEncoder

        return OpenSmileEncoder(name, **options)
    from mamer.encoders.hf_audio import HFAudioEncoder

    return _hf_encoder(HFAudioEncoder, AUDIO_PRESETS, "audio", name, options, available_audio_encoders)


def load_text_encoder(name: str, **options) -> TextEncoder:
    """Build text encoder `name`: "minilm", "hashed", a preset, "hf" (with `path=`), a folder or hub name."""
    if name == "minilm":
        from mamer.encoders.text import minilm_encoder

        return minilm_encoder(**options)
    if name == "hashed":
        from mamer.encoders.text import HashedTextEncoder

        return HashedTextEncoder(**options)
    from mamer.encoders.text import HFTextEncoder

    return _hf_encoder(HFTextEncoder, TEXT_PRESETS, "text", name, options, available_text_encoders)


def _hf_encoder(cls, presets: dict[str, str], kind: str, name: str, options: dict, available):
    """A Hugging Face encoder of class `cls` by preset, "hf" (with `path=`), local folder or hub name."""
    if name in presets:
        source = {"model": presets[name], **({"path": str(options["path"])} if "path" in options else {})}
        return cls(**{"path": presets[name], **options}, name=name, source=source)
    if name == "hf":
        if "path" not in options:
            raise ValueError(f"the 'hf' {kind} encoder needs path=<local folder or hub name>")
        return cls(**options)
    if is_path_or_hub_name(name):
        return cls(path=name, **options)
    known = ", ".join([*available(), "hf (with path=...)", "a model folder"])
    raise ValueError(f"unknown {kind} encoder {name!r}; known: {known}")


def default_encoder_names() -> tuple[str, str, str]:
    """`(audio, text, note)`: the real encoders if installed, else the fallbacks and a one-line why/how-to."""
    if available_audio_encoders()["whisper-base"] and available_text_encoders()["minilm"]:
        return "whisper-base", "minilm", ""
    return (
        "logmel",
        "hashed",
        "whisper-base/minilm weights are not installed, so the fallback encoders logmel (80-bin log-mel) and "
        f"hashed (word identity only) are used and results will be much weaker; install them: {INSTALL_HINT}",
    )


NO_LAYERS = ("logmel", "hashed", *OPENSMILE)  # fallbacks and openSMILE: no device, no hidden states

# The languages a text encoder was trained to read; one not listed reads any (hashed) or is not known to us.
TEXT_LANGUAGES = {"minilm": ("en",)}
