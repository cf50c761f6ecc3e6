"""JSON endpoints under /api/v1. Blueprint names start with ``api`` (errors are JSON)."""
