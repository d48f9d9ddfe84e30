"""Values against their type annotations, for config files read from disk (which may come from anyone).

`check_types` walks a config dataclass, nested ones included, and raises a one-line
`ValueError` naming the field, the value and the expected type.
"""

from __future__ import annotations

import dataclasses
import typing


def check_type(value, hint, name: str) -> None:
    """Raises `ValueError` naming `name` unless `value` fits the annotation `hint`.

    `bool` is no `int` here (JSON's true is not 1), an `int` is a `float`, and
    a `float` is no `int` (3.0 epochs is a mistake somewhere).

    Examples:
        >>> check_type(3, typing.Optional[int], "model.image_size")
        >>> check_type("ten", int, "stage1.epochs")
        Traceback (most recent call last):
        ValueError: stage1.epochs must be an integer, got 'ten'
    """
    if not _fits(value, hint):
        raise ValueError(f"{name} must be {_describe(hint)}, got {shown(value)}")


def check_types(cfg, where: str = "") -> None:
    """`check_type` of every field of a config dataclass, nested ones included."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            if not isinstance(value, hints[f.name]):
                raise ValueError(f"{where}{f.name} must be a {hints[f.name].__name__}, got {shown(value)}")
            check_types(value, f"{where}{f.name}.")
        else:
            check_type(value, hints[f.name], f"{where}{f.name}")


def _fits(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return any(_fits(value, a) for a in args)
    if origin in (list, typing.List):
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value) if args else isinstance(value, list)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True  # an annotation this checker does not know: the dataclass decides


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        return " or ".join(_describe(a) for a in args)
    if origin in (list, typing.List):
        return f"a list of {_describe(args[0]).split(' ', 1)[-1]}s" if args else "a list"
    return {type(None): "null", bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))


def shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
