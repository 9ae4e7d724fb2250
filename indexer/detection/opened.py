"""Detection on a model opened by either engine (`indexer.model.streaming.open_model`)."""

from __future__ import annotations

from contracts.results import DetectionResult
from indexer.detection.detect import DetectConfig, detect
from indexer.model.loading import ProgressCallback
from indexer.model.streaming import OpenedModel, StreamedModel


def detect_opened(
    opened: OpenedModel, config: DetectConfig | None = None, progress: ProgressCallback | None = None
) -> DetectionResult:
    """Detect on a model opened by either engine (the streamed one reads each layer once per pass)."""
    if isinstance(opened.model, StreamedModel):
        return detect(opened.model.loaded, config, progress, weights=opened.model)
    return detect(opened.model, config, progress)
