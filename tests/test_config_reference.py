"""The config reference in docs/ is generated from the dataclasses: every key documented once, where defined."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

HOOK = Path(__file__).parents[1] / "docs" / "hooks" / "config_reference.py"


def load_hook():
    spec = importlib.util.spec_from_file_location("config_reference", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_config_key_has_a_comment_and_a_row():
    hook = load_hook()
    table = hook.reference()
    for prefix, cls in hook.SECTIONS:
        comments = hook.field_comments(cls)
        for f in dataclasses.fields(cls):
            if f.name in ("model", "loss", "data", "train"):
                continue
            assert comments.get(f.name), f"{cls.__name__}.{f.name} has no comment to document it"
            assert f"| `{prefix}{f.name}` |" in table


def test_the_marker_is_replaced():
    hook = load_hook()
    page = hook.on_page_markdown(f"# Config\n\n{hook.MARKER}\n")
    assert hook.MARKER not in page and "`train.audio_oversample`" in page
    assert "&lt;manifest dir&gt;" in page  # angle brackets would read as HTML tags
