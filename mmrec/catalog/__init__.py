"""Catalog ingest: source adapters -> validation -> typed, versioned items artifact."""
