"""The model side: loading (in memory or layer-streamed), checkpoints, architecture adapters, hooks."""
