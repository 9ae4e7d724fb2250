"""Coordinate bundles on the user's side: build, load and check a manifest, and protect super weights.

A bundle is the schema-1 JSON manifest documented in `docs/bundles.md` (the service renders the same
manifest in other formats with `bundles`; the safetensors rendering carries it too). The
manifest's model, hash and checks are `contracts.manifest`, the one codec both sides call.

- `load_bundle(path_or_url)`: a `.json` or `.safetensors` bundle from a file or an http(s) URL; the sha256
  of its canonical content is checked, and nothing is ever unpickled. `load_bundle("org/name", source=...)`
  asks a `CoordinateSource` (a server's `swi.client.Client`, or `swi.catalog_source.LocalCatalog`) instead.
- `protect_super_weights(model, bundle)` (or `(model, "org/name", client=source)`): records the super
  weights' exact values, optionally clips the other outliers and keeps the super weights out of the
  quantizer's statistics, lets any quantizer run, then writes the exact originals back: the per-weight
  hold-out no quantization tool offers.
- `super_activation_hold_out(model, bundle)`: finds the super activation in each forward pass and holds it
  out of activation quantization (a `hold_out` for `indexer.quantize.fake_quantized_activations`).

Before touching a model, the bundle is checked against it (commit sha, layer count, tensor shapes and the
stored values): a bundle of another model is a clear `BundleMismatchError`, never a silent no-op.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from bundles import safetensors_codec
from contracts.base import Coordinates
from contracts.errors import BundleError, BundleFormatError
from contracts.manifest import (
    BundleManifest,
    DecidingFigure,
    ManifestWeight,
    build_manifest,
    check_manifest,
    float32_of,
)
from contracts.results import DetectionResult
from contracts.status import SuperWeightStatus
from contracts.validation import ValidationDocument
from indexer.adapters import ArchitectureAdapter, adapter_for
from indexer.loading import LoadedModel
from indexer.quantize import ClipSpec, LinearTarget, clip_thresholds, linear_targets

#: bundles are small; anything larger is not a bundle
MAX_BUNDLE_BYTES = 64 * 2**20
#: the value a held-out super weight takes while the quantizer runs: it cannot widen any block's range
STAND_IN = 0.0

if TYPE_CHECKING:
    from indexer.validate import ValidationResult

ModelLike = LoadedModel | nn.Module
logger = logging.getLogger(__name__)


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


# ---- the manifest ----


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

    `validation`: the validation document (`indexer.document.validation_document`) of the same detection,
    or its `ValidationResult`, or None.
    """
    if validation is not None and not isinstance(validation, ValidationDocument):
        from indexer.document import validation_document

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


# ---- loading ----


def load_bundle(
    path_or_url: str | Path,
    *,
    timeout_s: float = 30.0,
    source: CoordinateSource | None = None,
    revision: str | None = None,
) -> Bundle:
    """Load a `.json` or `.safetensors` bundle from a file or an http(s) URL, checking its sha256.

    With `source`, `path_or_url` is a model id (`org/name`) whose manifest the source gives (at `revision`).
    """
    if source is not None:
        return bundle_from_source(str(path_or_url), source, revision)
    text = str(path_or_url)
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        data = _download(text, timeout_s)
    elif scheme and len(scheme) > 1 and not Path(text).exists():
        raise BundleUnavailableError(
            f"unsupported bundle URL scheme {scheme!r}: use a file path, http or https"
        )
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise BundleUnavailableError(f"bundle file not found: {path}")
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise BundleFormatError(f"{path} is larger than any bundle ({MAX_BUNDLE_BYTES // 2**20} MiB)")
        data = path.read_bytes()
    return parse_bundle_bytes(data, source=text)


def bundle_from_source(model_id: str, source: CoordinateSource, revision: str | None = None) -> Bundle:
    """The checked bundle of `model_id` from a coordinate source, logging the revision it was measured on."""
    bundle = parse_manifest(dict(source.bundle_manifest(model_id, revision)))
    if bundle.model.lower() != model_id.lower():
        raise BundleMismatchError(f"asked for the coordinates of {model_id}, got those of {bundle.model}")
    logger.info(
        "coordinates of %s: %s",
        bundle.model,
        f"measured at revision {bundle.revision}" if bundle.revision else "published only (never measured)",
    )
    return bundle


def _download(url: str, timeout_s: float) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json, application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            data: bytes = response.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise BundleUnavailableError(f"could not download the bundle from {url}: {exc}") from None
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleFormatError(f"{url} is larger than any bundle ({MAX_BUNDLE_BYTES // 2**20} MiB)")
    return data


def parse_bundle_bytes(data: bytes, source: str = "bundle") -> Bundle:
    """A `Bundle` from the bytes of a JSON or safetensors bundle (told apart by their first bytes)."""
    if data.lstrip()[:1] == b"{":
        try:
            manifest = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BundleFormatError(f"{source}: not valid JSON: {exc}") from None
        return parse_manifest(manifest)
    return parse_manifest(manifest_from_safetensors(data, source))


def manifest_from_safetensors(data: bytes, source: str = "bundle") -> dict[str, Any]:
    """The manifest a safetensors bundle carries, checked against the tensors it also carries."""
    return safetensors_codec.decode_carried(data, source)


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


# ---- protecting super weights from a weight quantizer ----


@dataclass(frozen=True)
class ProtectedWeights:
    """What `protect_super_weights` recorded: each located weight and its exact original value."""

    weights: tuple[ResolvedWeight, ...]
    originals: tuple[torch.Tensor, ...]  # 0-d tensors in the stored dtype
    bundle: Bundle | None = None

    @property
    def measured_revision(self) -> str | None:
        """The commit the coordinates were measured on (None: published coordinates, never measured)."""
        return self.bundle.revision if self.bundle is not None else None

    @property
    def values(self) -> tuple[float, ...]:
        """The original values as floats."""
        return tuple(float(v) for v in self.originals)

    @property
    def hold_out(self) -> dict[str, list[tuple[int, int]]]:
        """Module name -> `[out, in]` coordinates: the `hold_out` map of `indexer.quantize`'s RTN."""
        held: dict[str, list[tuple[int, int]]] = {}
        for resolved in self.weights:
            held.setdefault(resolved.module, []).append((resolved.weight.row, resolved.weight.col))
        return held


def _stored_weight(model: nn.Module, module_name: str) -> torch.Tensor:
    weight = model.get_submodule(module_name).weight
    if not isinstance(weight, torch.Tensor) or type(weight.data) not in (torch.Tensor, nn.Parameter):
        raise BundleError(
            f"{module_name}.weight is now a {type(weight).__name__}: the quantizer replaced the weight, so "
            "the super weight cannot be written back; fake-quantize in place, or use the tool's ignore list"
        )
    return weight


def clip_outliers_(model: nn.Module, clip: ClipSpec, targets: Sequence[LinearTarget] | None = None) -> int:
    """Clip every linear weight (not embeddings, not the head) to thresholds computed over its tensor."""
    chosen = list(targets) if targets is not None else linear_targets(model)
    with torch.no_grad():
        for target in chosen:
            weight = target.weight
            low, high = clip_thresholds(weight.detach().to(torch.float32), clip)
            weight.clamp_(low, high)
    return len(chosen)


class UnsupportedQuantizerError(BundleError):
    """The quantizer stored scales or replaced tensor types or modules: no exact restore is possible."""


@dataclass
class _Snapshot:
    """All a quantizer can change in a model: to put back exactly (`restore`) or compare (`changes`)."""

    modules: dict[str, tuple[nn.Module, type[nn.Module], dict[str, Any]]]
    tensors: list[tuple[torch.Tensor, torch.Tensor]]  # (the parameter or buffer object, a copy of its data)
    layout: dict[str, tuple[type, torch.dtype, tuple[int, ...]]]  # name -> (tensor type, dtype, shape)

    @classmethod
    def take(cls, model: nn.Module) -> _Snapshot:
        """Record every module (object, class, attributes), every parameter and buffer (object and data)."""
        modules = {}
        for name, module in model.named_modules(remove_duplicate=False):
            # per-module dicts (_parameters, _modules, hooks...) are copied: quantizers mutate them in place
            attributes = {k: dict(v) if isinstance(v, dict) else v for k, v in vars(module).items()}
            modules[name] = (module, type(module), attributes)
        seen: set[int] = set()
        tensors = []
        for tensor in [*model.parameters(), *model.buffers()]:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                tensors.append((tensor, tensor.detach().clone()))
        return cls(modules, tensors, _layout(model))

    def changes(self, model: nn.Module) -> list[str]:
        """What the quantizer changed beyond tensor values: modules, parameter/buffer names, tensor types."""
        found = []
        now = dict(model.named_modules(remove_duplicate=False))
        for name, (module, kind, _) in self.modules.items():
            current = now.get(name)
            if current is not module or type(current) is not kind:
                found.append(
                    f"{name or 'the model'} is now a {type(current).__name__}, was a {kind.__name__}"
                )
        layout = _layout(model)
        added = sorted(set(layout) - set(self.layout))
        removed = sorted(set(self.layout) - set(layout))
        if added:
            found.append(f"new parameters/buffers {', '.join(added[:4])}{' …' if len(added) > 4 else ''}")
        if removed:
            found.append(f"removed parameters/buffers {', '.join(removed[:4])}")
        for name in sorted(set(layout) & set(self.layout)):
            if layout[name] != self.layout[name]:
                kind, dtype, shape = layout[name]
                found.append(f"{name} is now a {kind.__name__} {dtype} {list(shape)}")
        return found

    def restore(self, model: nn.Module) -> None:
        """Put back every module object, its attributes, and every tensor's exact data."""
        for module, _, attributes in self.modules.values():
            vars(module).clear()
            vars(module).update({k: dict(v) if isinstance(v, dict) else v for k, v in attributes.items()})
        with torch.no_grad():
            for tensor, data in self.tensors:
                tensor.data = data.clone()


def _layout(model: nn.Module) -> dict[str, tuple[type, torch.dtype, tuple[int, ...]]]:
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    # a tensor subclass (torchao) shows in the type of `.data`; a replaced Parameter in the type itself
    return {name: (type(t.data), t.dtype, tuple(t.shape)) for name, t in named}


@contextmanager
def protect_super_weights(
    model: ModelLike,
    bundle: Bundle | str,
    *,
    client: CoordinateSource | None = None,
    hold_out: bool = True,
    clip: ClipSpec | None = None,
    revision: str | None = None,
    check_revision: bool = True,
    check_values: bool = True,
) -> Iterator[ProtectedWeights]:
    """Record the super weights, let the block quantize the model, then write the exact originals back.

    `hold_out`: while the block runs, each super weight is `STAND_IN` (0), so it cannot stretch the min/max
    (or absmax) of its block; with `indexer.quantize`'s RTN this gives exactly its super-weight hold-out.
    `clip`: first clip the other outliers of every linear weight (the paper's recipe; thresholds are taken
    without the held-out super weights).
    `bundle` may be a model id (`org/name`): `client` (a server's `swi.client.Client`, or the local
    catalog's `swi.catalog_source.LocalCatalog`) gives its coordinates, checked like any bundle; the
    revision they were measured on is logged and kept as `ProtectedWeights.measured_revision`.

    Transactional: if the block raises, or the quantizer turned out to store scales or replace tensor types
    or modules (`UnsupportedQuantizerError`: a restored value would be clamped to or lost in its stored
    range; use the tool's bundle format instead), the model is put back exactly as it was before the block.
    """
    if isinstance(bundle, str):
        if client is None:
            raise BundleError(
                f"protect_super_weights(model, {bundle!r}) needs client=: a swi.client.Client of a server, "
                "or swi.catalog_source.LocalCatalog()"
            )
        bundle = bundle_from_source(bundle, client, revision)
    module, _, _ = _parts(model)
    resolved = resolve(
        bundle, model, revision=revision, check_revision=check_revision, check_values=check_values
    )
    snapshot = _Snapshot.take(module)
    originals = tuple(_stored_weight(module, r.module)[r.index].detach().clone() for r in resolved)
    try:
        with torch.no_grad():
            if hold_out:
                for r in resolved:
                    _stored_weight(module, r.module)[r.index] = STAND_IN
            if clip is not None:
                clip_outliers_(module, clip)
        yield ProtectedWeights(tuple(resolved), originals, bundle)
        changes = snapshot.changes(module)
        if changes:
            raise UnsupportedQuantizerError(
                "the quantizer stored scales or replaced tensor types or modules ("
                + "; ".join(changes[:3])
                + (" …" if len(changes) > 3 else "")
                + "), so a restored super weight would be clamped to its stored range or lost; the model "
                "is back as it was. Use the tool's bundle format instead (swi bundle -f llm-compressor, "
                "torchao, gptqmodel, autoround or llama.cpp; docs/bundles.md)"
            )
        with torch.no_grad():
            for r, original in zip(resolved, originals, strict=True):
                weight = _stored_weight(module, r.module)
                weight[r.index] = original.to(device=weight.device, dtype=weight.dtype)
    except BaseException:
        snapshot.restore(module)
        raise


# ---- holding the super activation out of activation quantization ----


class SuperActivationHoldOut:
    """Finds the super activation in every forward pass and names the entries to hold out of quantization.

    A forward pre-hook on the down projection that creates it computes, per position, what the bundle's super
    weights add to the super-activation channel; positions reaching `threshold` x the recorded magnitude are
    the sites. `positions(target)` answers `indexer.quantize.fake_quantized_activations`'s `hold_out`: those
    sites, at the super-activation channel (inputs of hidden width, from the creating layer on) and at the
    super weights' columns (the creating down projection's input).
    """

    def __init__(self, model: ModelLike, bundle: Bundle, threshold: float = 0.1) -> None:
        if bundle.super_activation is None:
            raise BundleError(f"bundle {bundle.model} records no super activation")
        if not 0 < threshold <= 1:
            raise BundleError(f"the threshold must be in (0, 1], got {threshold}")
        self.model, self.adapter, _ = _parts(model)
        self.activation = bundle.super_activation
        self.threshold = threshold
        layer = self.activation.first_layer
        self.creators = [w for w in bundle.weights if w.layer == layer and w.row == self.activation.channel]
        if not self.creators:
            raise BundleError(
                f"bundle {bundle.model}: no super weight in layer {layer} writes channel "
                f"{self.activation.channel}"
            )
        magnitudes = self.activation.magnitude_by_layer
        self.reference = magnitudes[layer] if layer < len(magnitudes) else self.activation.peak_magnitude
        self.down_name = self.adapter.down_proj_name(self.model, layer)
        self.hidden = int(self.adapter.as_out_in(self.adapter.down_weight(self.model, layer)).shape[0])
        self.layer_of: dict[int, int] = {}
        for index, decoder_layer in enumerate(self.adapter.decoder_layers(self.model)):
            for sub in decoder_layer.modules():
                self.layer_of[id(sub)] = index
        self.sites: list[tuple[int, int]] = []  # (batch, token) of the current forward pass

    def _find_sites(self, _module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]  # (batch, seq, intermediate) or (seq, intermediate)
        batched = x if x.dim() == 3 else x.unsqueeze(0)
        weight = self.adapter.as_out_in(self.adapter.down_weight(self.model, self.activation.first_layer))
        contribution = torch.zeros(
            batched.shape[:2], dtype=torch.float32, device=batched.device
        )  # (batch, seq)
        for sw in self.creators:
            contribution += batched[..., sw.col].float() * float(weight[sw.row, sw.col])
        found = (contribution.abs() >= self.threshold * self.reference).nonzero().tolist()
        self.sites = [(int(b), int(t)) for b, t in found]

    def positions(self, target: LinearTarget) -> tuple[Sequence[tuple[int, int]], Sequence[int]]:
        """The `(batch, token)` sites and the channels of `target`'s input to hold out now."""
        layer = self.layer_of.get(id(target.module))
        if not self.sites or layer is None or layer < self.activation.first_layer:
            return (), ()
        channels: set[int] = set()
        if target.in_features == self.hidden:
            channels.add(self.activation.channel)
        if target.name == self.down_name:
            channels.update(sw.col for sw in self.creators)
        return list(self.sites), sorted(channels)

    @contextmanager
    def active(self) -> Iterator[SuperActivationHoldOut]:
        """Track the sites while the block runs (the pre-hook runs before any quantizer's, and is removed)."""
        module = self.model.get_submodule(self.down_name)
        handle = module.register_forward_pre_hook(self._find_sites, prepend=True)
        try:
            yield self
        finally:
            handle.remove()
            self.sites = []


@contextmanager
def super_activation_hold_out(
    model: ModelLike, bundle: Bundle, threshold: float = 0.1
) -> Iterator[SuperActivationHoldOut]:
    """Track the super activation while the block runs; `.positions` is an activation quantizer's hold-out."""
    with SuperActivationHoldOut(model, bundle, threshold).active() as hold_out:
        yield hold_out


def quantize_holding_out(
    x: torch.Tensor,
    positions: Sequence[tuple[int, int]],
    channels: Sequence[int],
    quantize: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Apply any activation quantizer to `x` (batch, seq, features) with the given entries held out.

    The held entries are replaced by their token's median before `quantize` runs (so they cannot set its
    range) and their exact original values are put back in its output.
    """
    work = x.clone()
    for b, t in positions:
        median = work[b, t].median()
        for c in channels:
            work[b, t, c] = median
    out = quantize(work)
    for b, t in positions:
        for c in channels:
            out[b, t, c] = x[b, t, c]
    return out
