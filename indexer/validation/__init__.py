"""Validation by pruning and quantization: configuration, result types, verdicts and the engine.

The public entry point is `indexer.validate.validate`; the experiments live in `indexer.experiments`.
"""
