"""Pipeline: per-image work in native threads between the ring buffer and the file (compression)."""
