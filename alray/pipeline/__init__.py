"""Pipeline steps: ingest, train, score, select; each re-runnable from the store."""
