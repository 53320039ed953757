"""License-webhook receiver: ingest, verify, normalize, store, dispatch, inspect."""
