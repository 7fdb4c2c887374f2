"""Reference documentation of every config key, read from the dataclasses' field docstrings."""
from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing

from .config import ExperimentConfig, to_dict


def field_docs(cls: type) -> dict[str, str]:
    """The string literal that follows each field in the class body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def rows(cls: type = ExperimentConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, doc) for every leaf key."""
    out = []
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.extend(rows(tp, key + "."))
            continue
        tname = str(tp).replace("typing.", "") if not isinstance(tp, type) else tp.__name__
        out.append((key, tname, repr(to_dict(getattr(default, f.name))), docs.get(f.name, "")))
    return out


def markdown() -> str:
    lines = ["# Configuration reference", "",
             "Generated from the config dataclasses by `prismrec config --markdown` (do not edit by hand).",
             "Set any key in a YAML recipe (nested sections) or with `--set section.key=value`.", "",
             "| key | type | default | meaning |", "|---|---|---|---|"]
    for key, tname, dflt, doc in rows():
        lines.append(f"| `{key}` | `{tname.replace('|', 'or')}` | `{dflt}` | {doc.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
