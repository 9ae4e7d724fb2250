"""Build a schema-1 manifest from a detection (and its validation)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contracts.base import Coordinates
from contracts.manifest import DecidingFigure, build_manifest, float32_of
from contracts.results import DetectionResult
from contracts.status import SuperWeightStatus
from contracts.validation import ValidationDocument

if TYPE_CHECKING:
    from indexer.validation.validate import ValidationResult


def _weight_status(coordinates: Coordinates, validation: ValidationDocument | None) -> str:
    return (
        str(validation.status_of(coordinates)) if validation is not None else str(SuperWeightStatus.CANDIDATE)
    )


def _decided_by(coordinates: Coordinates, validation: ValidationDocument | None) -> list[dict[str, Any]]:
    """The validation figures that decided a super weight's status: zeroing it alone, and jointly."""
    if validation is None:
        return []
    return [
        DecidingFigure.of(measurement, coordinates).model_dump(mode="json")
        for measurement in validation.deciding(coordinates)
    ]


def manifest_from_detection(
    detection: DetectionResult, validation: ValidationDocument | ValidationResult | None = None
) -> dict[str, Any]:
    """A schema-1 manifest of a detection (statuses `candidate`) or, with its validation, measured statuses.

    `validation`: the validation document (`indexer.validation.document.validation_document`) of the same
    detection, or its `ValidationResult`, or None.
    """
    if validation is not None and not isinstance(validation, ValidationDocument):
        from indexer.validation.document import validation_document

        validation = validation_document(validation)
    weights = [
        {
            "layer": sw.layer,
            "row": sw.row,
            "col": sw.col,
            "value": sw.value,
            "value_float32": float32_of(sw.value),
            "dtype": sw.dtype,
            "hf_tensor": sw.hf_tensor,
            "gguf_tensor": sw.gguf_tensor,
            "gguf_index": list(sw.gguf_index),
            "status": _weight_status(sw.coordinates, validation),
            "decided_by": _decided_by(sw.coordinates, validation),
        }
        for sw in detection.super_weights
    ]
    activation = detection.super_activation
    return build_manifest(
        model=detection.provenance.model,
        revision=detection.provenance.revision,
        super_weights=weights,
        super_activation=activation.model_dump(mode="json") if activation is not None else None,
        provenance=detection.to_dict()["provenance"],
    )
