"""MkDocs hook: the config reference, generated from the typed config dataclasses and their field comments.

Each key is documented once, where it is defined (`src/mamer/config.py`): the comment on its line or the comment
lines just above it. `docs/config.md` holds a `<!-- config-reference -->` marker that this hook replaces.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import tokenize

from mamer import config

MARKER = "<!-- config-reference -->"
SECTIONS = [
    ("", config.RunConfig),
    ("model.", config.ModelConfig),
    ("loss.", config.LossConfig),
    ("data.", config.DataConfig),
    ("train.", config.TrainConfig),
    ("experiment.", config.ExperimentConfig),
]


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its comment: the comment lines right above the field, then the one at the end of it."""
    source = inspect.getsource(cls)
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    found = {}
    for node in ast.parse(source).body[0].body:
        if not isinstance(node, ast.AnnAssign):
            continue
        above, line = [], node.lineno - 1
        while line in comments and not source.splitlines()[line - 1].split("#")[0].strip():
            above.insert(0, comments[line])
            line -= 1
        trailing = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        found[node.target.id] = " ".join(above + trailing)
    return found


def default_of(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return ""
    if dataclasses.is_dataclass(value):
        return ""
    return json.dumps(value) if not isinstance(value, str) or value == "" else value


def reference() -> str:
    """Markdown: one table per section, every key with its default and its comment."""
    out = []
    for prefix, cls in SECTIONS:
        comments = field_comments(cls)
        title = f"`{prefix.rstrip('.')}`" if prefix else "top level"
        out += [f"## {title}", "", inspect.getdoc(cls) or "", "", "| key | default | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.default_factory if callable(f.default_factory) else None):
                continue
            default = default_of(f).replace("|", "\\|")
            meaning = comments.get(f.name, "").replace("<", "&lt;").replace(">", "&gt;")
            out.append(f"| `{prefix}{f.name}` | `{default}` | {meaning} |")
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, **_: object) -> str:
    return markdown.replace(MARKER, reference()) if MARKER in markdown else markdown
