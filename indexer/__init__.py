"""The indexer: the ML library that finds super weights and measures them (no database, web or queue).

- `indexer.model`: loading (in memory or layer-streamed), checkpoints, architecture adapters, hooks;
- `indexer.detection`: data-free super-weight detection;
- `indexer.validation`: pruning and quantization experiments, their engines and verdicts;
- `indexer.bundles`: coordinate bundles (build, load, check, protect) and quantized-artifact checks;
- `indexer.errors`, `indexer.progress`: small modules every layer shares.
"""
