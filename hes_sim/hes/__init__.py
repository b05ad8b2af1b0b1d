"""The head-end: ingest, store, connectivity, metrics (and, later, commands and billing)."""
