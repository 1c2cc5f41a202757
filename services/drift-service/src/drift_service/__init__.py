"""drift-service."""
