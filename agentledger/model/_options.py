"""Keyword options declared once as a `TypedDict` and taken as `**options`: refuse the names it does not declare.

`Unpack[SomeOptions]` lets a type checker catch a misspelt option; at run time `**options` takes any
name, so each function that takes options checks them here, the way Python refuses an unknown
keyword argument.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ['check_options']


def check_options(function: str, options: Mapping[str, object], declared: type) -> None:
    """Raise `TypeError` when `options` holds a name the `TypedDict` `declared` does not declare."""
    known: frozenset[str] = getattr(declared, '__required_keys__', frozenset()) | getattr(
        declared, '__optional_keys__', frozenset()
    )
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f'{function}() got an unexpected keyword argument {unknown[0]!r}')
