"""Backbone registry: name -> builder. Backbones register themselves on import."""
from __future__ import annotations

from typing import Callable

BackboneBuilder = Callable[..., "object"]
_BACKBONES: dict[str, BackboneBuilder] = {}


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    def deco(fn: BackboneBuilder) -> BackboneBuilder:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} registered twice")
        _BACKBONES[name] = fn
        return fn

    return deco


def get_backbone(name: str) -> BackboneBuilder:
    _register_builtins()
    if name not in _BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; registered: {', '.join(sorted(_BACKBONES))}")
    return _BACKBONES[name]


def registered_backbones() -> list[str]:
    _register_builtins()
    return sorted(_BACKBONES)


def _register_builtins() -> None:
    from . import indirec, sasrec, stosa  # noqa: F401  (each registers itself on import)
