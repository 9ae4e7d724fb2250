"""Prune validation and quantization checks: what each detected super weight is worth, in perplexity.

Experiments (each a perplexity figure and its ratio to the baseline), all on one loaded model; each family
is a module of `indexer.validation.experiments`, registered in `indexer.validation.experiments.REGISTRY`:

1. `baseline`;
2. `joint`: every super weight zeroed together;
3. `alone`: each super weight zeroed alone;
4. `restore_sa`: super weights zeroed, the super activation put back (the paper's "+SA" row);
5. `controls`: the same number of the largest other down-projection weights zeroed (outside the super
   activation's row), and a seeded random, magnitude-matched null set (each super weight's value
   subtracted at a random coordinate of its own down projection, outside that row);
   `null`: the calibrated null, K random magnitude-matched sets and same-column sets (`null_figures`);
   `leave_one_out`: every super weight zeroed but one, for each member (which members the set needs);
6. `stopwords`: next-token probability mass on a fixed stopword list before and after joint zeroing;
7. `scaling`: the super weights multiplied by each factor;
plus `rtn` (weight round-to-nearest, plain / clipped + restored / held out + restored) and `w8a8`
(8-bit weights per channel and activations per tensor, naive / super activation held out: at the corpus
positions where the super activation shows, the entries at its channel in every hidden-size linear input
and at the super weights' columns in their down projection's input, from the super activation's layer on).

Super weights are edited in place and restored bit-exactly after every figure, quantized variants run each
linear layer on a quantized copy of its weight (one at a time); variants that start at a
super weight's layer reuse the baseline's hidden states at that layer's input (the prefix cache).
Every ratio carries a paired bootstrap interval over the corpus windows; the verdicts
(`indexer.validation.verdicts`) apply the confirm factor to its low end.
"""

from __future__ import annotations

import time

from contracts.results import DetectionResult
from contracts.versions import VALIDATOR_VERSION
from indexer.detection.detect import library_versions
from indexer.model.loading import LoadedModel
from indexer.model.streaming import StreamedModel
from indexer.validation.config import RTN_VARIANTS, W8A8_VARIANTS, ValidateConfig
from indexer.validation.corpus import Corpus, TokenWindows, token_windows
from indexer.validation.engines.layered import LayeredSuite
from indexer.validation.engines.suite import Suite
from indexer.validation.experiments import EXPERIMENTS, parse_experiments
from indexer.validation.experiments.stopwords import STOPWORDS
from indexer.validation.perplexity import default_window
from indexer.validation.results import (
    Figure,
    ModelVerdict,
    NullSummary,
    Phase,
    ProgressCallback,
    ProgressEvent,
    QuantizationSummary,
    StopwordShift,
    SuperActivationSites,
    SuperWeightVerdict,
    TokenShift,
    ValidationResult,
    ValidationTiming,
    WeightSet,
)
from indexer.validation.verdicts import decide_verdicts

__all__ = [
    "EXPERIMENTS",
    "RTN_VARIANTS",
    "STOPWORDS",
    "VALIDATOR_VERSION",
    "W8A8_VARIANTS",
    "Figure",
    "ModelVerdict",
    "NullSummary",
    "Phase",
    "ProgressCallback",
    "ProgressEvent",
    "QuantizationSummary",
    "StopwordShift",
    "SuperActivationSites",
    "SuperWeightVerdict",
    "TokenShift",
    "ValidateConfig",
    "ValidationResult",
    "ValidationTiming",
    "WeightSet",
    "decide_verdicts",
    "evaluation_windows",
    "parse_experiments",
    "validate",
]


def evaluation_windows(loaded: LoadedModel, corpus: Corpus, config: ValidateConfig) -> TokenWindows:
    """The corpus's token windows under the configuration (default window: min(2048, context, budget)).

    Only an explicit `window` longer than the budget is an error: a default never exceeds the budget.
    """
    window = config.window or default_window(loaded.model, config.max_tokens)
    return token_windows(corpus, loaded.tokenizer, window, config.max_tokens)


def validate(
    model: LoadedModel | StreamedModel,
    detection: DetectionResult,
    corpus: Corpus | TokenWindows,
    config: ValidateConfig | None = None,
    progress: ProgressCallback | None = None,
    *,
    hidden_memory: int | None = None,
) -> ValidationResult:
    """Measure every configured experiment on `model`; its weights are bit-identical afterwards.

    A streamed model runs the layer-major suite (each decoder layer read once); `hidden_memory` bounds
    the memory its variants' hidden states hold before they go to a temporary file (default: half the
    free memory).
    """
    config = config or ValidateConfig()
    config.check()
    started = time.perf_counter()
    loaded = model.loaded if isinstance(model, StreamedModel) else model
    windows = corpus if isinstance(corpus, TokenWindows) else evaluation_windows(loaded, corpus, config)
    suite = (
        LayeredSuite(model, detection, windows, config, progress, hidden_memory=hidden_memory)
        if isinstance(model, StreamedModel)
        else Suite(loaded, detection, windows, config, progress)
    )
    suite.run()
    assert suite.baseline is not None
    named = {key: f for key, f in suite.figures.items() if f.experiment != "null"}
    null = tuple(f for f in suite.figures.values() if f.experiment == "null")
    model_verdict, weight_verdicts = decide_verdicts(
        suite.coordinates, named, config, null, corpus=windows.identity.name
    )
    return ValidationResult(
        model=loaded.model_id,
        revision=loaded.revision_sha,
        source_quantization=loaded.quantization,
        dtype=str(loaded.dtype).removeprefix("torch."),
        device=str(loaded.device),
        super_weights=suite.coordinates,
        super_weight_values=tuple(sw.value for sw in detection.super_weights),
        config=config,
        corpus=windows.identity,
        batch_size=suite.evaluator.batch_size,
        baseline_perplexity=suite.baseline.perplexity,
        verdict=model_verdict,
        super_weight_verdicts=weight_verdicts,
        figures=tuple(named.values()),
        weight_sets=tuple(suite.weight_sets),
        stopwords=suite.summary("stopwords"),
        super_activation=suite.activation_sites(),
        quantization=suite.quantization_summary(),
        timing=suite.timing(time.perf_counter() - started),
        validator_version=VALIDATOR_VERSION,
        library_versions=library_versions(),
        null_figures=null,
    )
