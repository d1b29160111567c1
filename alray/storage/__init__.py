"""Storage: URIs and the LanceDB project store.

``Store`` and ``sql_list`` load lazily, so a decode worker importing
:mod:`alray.storage.uri` does not pay for importing LanceDB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alray.storage.store import Store, sql_list

__all__ = ["Store", "sql_list"]


def __getattr__(name: str):
    if name in __all__:
        from alray.storage import store

        return getattr(store, name)
    raise AttributeError(f"module 'alray.storage' has no attribute {name!r}")
