"""Option objects given either whole (`options=`) or as keyword arguments of the same names, never both."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ['options_or_keywords']

_O = TypeVar('_O', bound='DataclassInstance')


def options_or_keywords(options: _O | None, keywords: _O) -> _O:
    """`options`, or the options the keyword arguments built (`keywords`); a `TypeError` when given both.

    A keyword counts as given when its value is not its field's default.
    """
    if options is None:
        return keywords
    # Identity first: a value such as deps may be anything, even without a usable `==`.
    given = [
        field.name
        for field in fields(keywords)
        if (value := getattr(keywords, field.name)) is not field.default and value != field.default
    ]
    if given:
        raise TypeError(f'pass options= or keyword arguments, not both (also given: {", ".join(given)})')
    return options
