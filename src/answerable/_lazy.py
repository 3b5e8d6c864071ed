"""Names a package imports when first used (PEP 562), not when it is imported.

``answerable halt`` is pressed when something must stop now: importing the package, or its
light ``answerable.ledger.location``, must not load the gateway, the SQL store, Cedar and their
dependencies first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, home: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``: each name in ``home`` is
    imported from the module ``home`` names for it on first use, then kept in ``namespace``
    (the package's globals), so the next look-up is a plain one."""

    def getattr_(name: str) -> Any:
        where = home.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted([*namespace, *home])

    return getattr_, dir_
