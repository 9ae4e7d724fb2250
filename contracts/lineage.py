"""Lineage and provenance of catalog entries: who reports a coordinate, how models derive, what runs say."""

from __future__ import annotations

import enum


class SourceKind(enum.StrEnum):
    """What kind of source reports a coordinate (in order of authority: the paper's table comes first)."""

    PAPER_TABLE = "paper table"
    REFERENCE_CODE = "reference code"
    REPLICATION = "replication"


class RelationKind(enum.StrEnum):
    """How a model derives from its base model."""

    FINE_TUNE = "fine-tune"
    QUANTIZED_BUILD = "quantized build"
    MERGE = "merge"


class Reproduction(enum.StrEnum):
    """What the measured runs say about a reported coordinate."""

    REPRODUCED = "reproduced"  # detected, or zeroing it passed the verdict
    CONTRADICTED = "contradicted"  # measured, and inert
    NOT_FOUND = "not_found"  # a run of the model (or of a build) did not detect it
    UNVERIFIED = "unverified"  # no run yet
