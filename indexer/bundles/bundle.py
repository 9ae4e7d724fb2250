"""The parsed, checked coordinate bundle, and checking it against a model (`resolve`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from contracts.errors import BundleError
from contracts.manifest import BundleManifest, ManifestWeight, check_manifest
from indexer.model.adapters import ArchitectureAdapter, adapter_for
from indexer.model.loading import LoadedModel

ModelLike = LoadedModel | nn.Module


class CoordinateSource(Protocol):
    """Where coordinates come from by model id: a server (`swi.client.Client`) or the local catalog.

    The indexer never imports either: callers pass one in.
    """

    def bundle_manifest(self, model_id: str, revision: str | None = None) -> Mapping[str, Any]:
        """The schema-1 manifest of `model_id` (at `revision`, default the newest measured one)."""
        ...


class BundleMismatchError(BundleError):
    """The bundle belongs to another model (commit sha, layer count, tensor shape or stored value differ)."""


class BundleUnavailableError(BundleError):
    """The bundle could not be read from its path or URL."""

    permanent = False


# ---- the parsed bundle ----


class Bundle(BundleManifest):
    """A checked coordinate bundle: the manifest (`contracts.manifest.BundleManifest`, every tensor named),
    and checking it against a model."""

    @property
    def weights(self) -> tuple[ManifestWeight, ...]:
        """The super weights."""
        return self.super_weights

    def check(
        self,
        model: ModelLike,
        *,
        revision: str | None = None,
        check_revision: bool = True,
        check_values: bool = True,
    ) -> list[ResolvedWeight]:
        """Match the bundle against `model`; raise `BundleMismatchError` naming every difference."""
        return resolve(
            self, model, revision=revision, check_revision=check_revision, check_values=check_values
        )


def parse_manifest(manifest: Any) -> Bundle:
    """A `Bundle` from a schema-1 manifest dict, after checking its structure and its sha256."""
    checked = check_manifest(manifest)
    named = tuple(weight.named() for weight in checked.super_weights)
    return Bundle.model_validate(checked.model_copy(update={"super_weights": named}), from_attributes=True)


# ---- checking a bundle against a model ----


@dataclass(frozen=True)
class ResolvedWeight:
    """A bundle weight located in a model: its module name and storage index."""

    weight: ManifestWeight
    module: str  # qualified name of the down projection
    index: tuple[int, int]  # index into the stored weight (layout-aware)


def _parts(model: ModelLike) -> tuple[nn.Module, ArchitectureAdapter, str | None]:
    if isinstance(model, LoadedModel):
        return model.model, model.adapter, model.revision_sha
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if not isinstance(model_type, str):
        raise BundleMismatchError(f"{type(model).__name__} has no `config.model_type`: pass a LoadedModel")
    commit = getattr(config, "_commit_hash", None)  # set by transformers' from_pretrained
    return model, adapter_for(model_type), commit if isinstance(commit, str) else None


def resolve(
    bundle: Bundle,
    model: ModelLike,
    *,
    revision: str | None = None,
    check_revision: bool = True,
    check_values: bool = True,
) -> list[ResolvedWeight]:
    """Locate every bundle weight in `model`, or raise `BundleMismatchError` listing every difference."""
    module, adapter, model_revision = _parts(model)
    model_revision = revision or model_revision
    problems: list[str] = []
    values_prove_identity = check_values and all(w.value is not None for w in bundle.weights)
    if bundle.revision and check_revision:
        if model_revision is None and values_prove_identity:
            pass  # a local copy has no commit sha: the layers, shapes and exact stored values identify it
        elif model_revision is None:
            problems.append(
                f"the bundle is for revision {bundle.revision} but the model's revision is unknown "
                "and the bundle records no values to compare (pass revision=<the commit sha you loaded>, "
                "or check_revision=False to skip this check)"
            )
        elif model_revision != bundle.revision:
            problems.append(f"the bundle is for revision {bundle.revision}, the model is {model_revision}")
    layers = len(adapter.decoder_layers(module))
    expected_layers = bundle.provenance.get("num_layers")
    if isinstance(expected_layers, int) and expected_layers != layers:
        problems.append(f"the bundle's model has {expected_layers} layers, this one {layers}")
    expected_shape = tuple(bundle.provenance.get(key) for key in ("hidden_size", "intermediate_size"))
    resolved: list[ResolvedWeight] = []
    for weight in bundle.weights:
        where = "super weight ({}, {}, {})".format(*weight.coordinates)
        if weight.layer >= layers:
            problems.append(f"{where}: the model has only {layers} layers")
            continue
        tensor = adapter.down_weight(module, weight.layer)
        shape = tuple(int(s) for s in adapter.as_out_in(tensor).shape)  # (hidden, intermediate)
        if all(isinstance(s, int) for s in expected_shape) and shape != expected_shape:
            problems.append(
                f"{where}: {weight.hf_tensor_name} is {shape[0]}x{shape[1]} here, "
                f"{expected_shape} in the bundle"
            )
            continue
        if weight.row >= shape[0] or weight.col >= shape[1]:
            problems.append(f"{where}: outside {weight.hf_tensor_name} of shape {shape[0]}x{shape[1]}")
            continue
        index = adapter.storage_index(weight.row, weight.col)
        if check_values and weight.value is not None:
            stored = tensor[index].detach()
            expected = torch.tensor(weight.value, dtype=torch.float64).to(stored.dtype)
            if not bool(torch.equal(stored.cpu(), expected)):
                problems.append(
                    f"{where}: the model stores {float(stored):.9g}, the bundle {weight.value:.9g} "
                    "(other weights; check_values=False skips this check)"
                )
                continue
        resolved.append(ResolvedWeight(weight, adapter.down_proj_name(module, weight.layer), index))
    if problems:
        raise BundleMismatchError(
            f"bundle {bundle.model}@{bundle.revision or 'unpinned'} does not match the model: "
            + "; ".join(problems)
        )
    return resolved
