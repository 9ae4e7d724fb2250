"""Validation by pruning and quantization: configuration, result types, experiments, engines and verdicts.

The public entry point is `indexer.validation.validate.validate`; the experiments live in
`indexer.validation.experiments`, the engines in `indexer.validation.engines`.
"""
