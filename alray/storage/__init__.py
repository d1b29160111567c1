"""Storage: URIs and the LanceDB project store."""

from alray.storage.store import Store, sql_list

__all__ = ["Store", "sql_list"]
