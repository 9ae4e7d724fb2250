"""The coordinate bundle's manifest (schema 1, `docs/bundles.md`): its model, canonical hash and checks.

One codec for both sides: the API builds and checks manifests before rendering them
(`bundles`), the indexer checks the manifests it applies (`indexer.bundles`).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, StrictInt, ValidationError, field_validator

from contracts.base import Coordinate, Coordinates, Frozen
from contracts.errors import BundleFormatError
from contracts.identifiers import canonical_sha256
from contracts.results import SuperActivation
from contracts.status import SuperWeightStatus
from contracts.validation import CorpusIdentity, Measurement

SCHEMA_VERSION = 1
#: the coordinate convention every manifest states
CONVENTION = (
    "model.layers[layer].mlp.down_proj.weight[row, col]; row = hidden (output) channel, "
    "col = intermediate (input) channel"
)
COARSE_NOTE = (
    "coarse: this keeps each whole module (down projection) that holds a super weight at higher precision; "
    "no tool takes single weights. For the exact per-weight hold-out use "
    "indexer.bundles.protect_super_weights."
)
#: the statuses a manifest entry may carry
STATUSES = tuple(SuperWeightStatus)
REQUIRED_KEYS = ("model", "revision", "convention", "super_weights", "super_activation", "sha256")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def down_proj_module(layer: int) -> str:
    """The Hugging Face module of decoder layer `layer`'s down projection, under the convention."""
    return f"model.layers.{layer}.mlp.down_proj"


def gguf_down_tensor(layer: int) -> str:
    """llama.cpp's GGUF tensor of decoder layer `layer`'s down projection."""
    return f"blk.{layer}.ffn_down.weight"


class DecidingFigure(Frozen):
    """A measurement that decided a super weight's status (in a manifest's `decided_by`)."""

    experiment: str  # the figure's key text, e.g. `zero/alone/2-3968-7003` or `zero/joint`
    parameters: dict[str, Any] = Field(default_factory=dict)
    metric: str
    value: float | None = None
    baseline: float | None = None
    ratio: float | None = None
    corpus: CorpusIdentity | None = None
    coordinates: Coordinate | None = None  # the super weight it decided

    @classmethod
    def of(cls, measurement: Measurement, coordinates: Coordinates) -> DecidingFigure:
        """The manifest entry of a validation measurement that decided the weight at `coordinates`."""
        shared = measurement.model_dump(exclude={"experiment", "key", "coordinates"})
        return cls.model_validate(
            {**shared, "experiment": str(measurement.figure), "coordinates": Coordinate.of(coordinates)}
        )


class ManifestWeight(Frozen):
    """One super weight of a manifest."""

    layer: StrictInt = Field(ge=0)
    row: StrictInt = Field(ge=0)
    col: StrictInt = Field(ge=0)
    value: float | None = Field(default=None, allow_inf_nan=False, description="As stored.")
    value_float32: float | None = Field(default=None, description="The stored value rounded to float32.")
    dtype: str | None = None
    hf_tensor: str | None = None
    gguf_tensor: str | None = None
    gguf_index: tuple[StrictInt, StrictInt] | None = Field(
        default=None, description="GGUF `ne` order: [col, row]."
    )
    status: SuperWeightStatus
    decided_by: tuple[DecidingFigure, ...] = ()

    @field_validator("value", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError("`value` must be a finite number or null")
        return value

    @property
    def coordinates(self) -> Coordinates:
        """The `(layer, row, col)` triple."""
        return (self.layer, self.row, self.col)

    @property
    def hf_tensor_name(self) -> str:
        """The Hugging Face tensor that holds it (the convention's name when the manifest gives none)."""
        return self.hf_tensor or f"{down_proj_module(self.layer)}.weight"

    @property
    def gguf_tensor_name(self) -> str:
        """The GGUF tensor that holds it (llama.cpp's name when the manifest gives none)."""
        return self.gguf_tensor or gguf_down_tensor(self.layer)

    @property
    def gguf_position(self) -> tuple[int, int]:
        """Its index in the GGUF tensor, in `ne` order `(col, row)`."""
        return self.gguf_index or (self.col, self.row)

    def named(self) -> ManifestWeight:
        """The same weight with its tensor names and GGUF index filled in."""
        update = {"hf_tensor": self.hf_tensor_name, "gguf_tensor": self.gguf_tensor_name}
        return self.model_copy(update={**update, "gguf_index": self.gguf_position})


class BundleManifest(Frozen):
    """A checked schema-1 manifest."""

    schema_version: Literal[1] = 1
    model: str = Field(min_length=1)
    revision: str | None
    convention: str
    super_weights: tuple[ManifestWeight, ...]
    super_activation: SuperActivation | None
    provenance: dict[str, Any] = Field(default_factory=dict)
    notes: dict[str, str] | None = Field(
        default=None, description="Caveats, e.g. of the coarse tool formats."
    )
    sha256: str = Field(description="SHA-256 of the canonical JSON of every other field.")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _HEX64.match(value):
            raise ValueError("`sha256` must be 64 lower-case hex digits")
        return value


def manifest_sha256(manifest: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of every field except `sha256` itself."""
    return canonical_sha256({key: value for key, value in manifest.items() if key != "sha256"})


def float32_of(value: float | None) -> float | None:
    """The value rounded to the nearest float32 (None when absent or out of the float32 range)."""
    if value is None:
        return None
    try:
        return float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:
        return None


def build_manifest(
    *,
    model: str,
    revision: str | None,
    super_weights: Sequence[Mapping[str, Any]],
    super_activation: Mapping[str, Any] | None,
    provenance: Mapping[str, Any],
) -> dict[str, Any]:
    """A complete, checked schema-1 manifest (convention, note and sha256 added) from JSON-ready parts."""
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": model,
        "revision": revision,
        "convention": CONVENTION,
        "super_weights": [dict(weight) for weight in super_weights],
        "super_activation": dict(super_activation) if super_activation is not None else None,
        "provenance": dict(provenance),
        "notes": {"tool_formats": COARSE_NOTE},
    }
    manifest["sha256"] = manifest_sha256(manifest)
    check_manifest(manifest)
    return manifest


def check_manifest(manifest: Any) -> BundleManifest:
    """The checked manifest, else `BundleFormatError` (unknown schema, malformed, or a hash mismatch)."""
    if not isinstance(manifest, Mapping):
        raise BundleFormatError("a bundle manifest must be a JSON object")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleFormatError(f"unsupported bundle schema_version {version!r}; this reader knows 1")
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise BundleFormatError(f"bundle manifest lacks {', '.join(missing)}")
    sha = manifest["sha256"]
    try:
        actual = manifest_sha256(manifest)
    except (TypeError, ValueError) as exc:
        raise BundleFormatError(f"bundle manifest is not plain JSON: {exc}") from None
    if actual != sha:
        raise BundleFormatError(
            f"bundle manifest sha256 mismatch: it says {str(sha)[:16]}…, "
            f"its content hashes to {actual[:16]}… (the file was edited or damaged)"
        )
    try:
        return BundleManifest.model_validate(dict(manifest))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise BundleFormatError(f"malformed bundle manifest: {where}: {error['msg']}") from None
