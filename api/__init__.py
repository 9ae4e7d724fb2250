"""The REST API of the super-weight index (FastAPI, versioned under /v1)."""
