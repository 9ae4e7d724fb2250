"""Data-free super-weight detection: one forward pass per iteration, hooks on every down projection.

A layer holds a super weight when its down projection's input spike and output spike are both outliers
against the other layers (robust z-score of log magnitudes: scale-free), the output spike is dominated by
one weight, and the output channel persists in the residual stream after the layer (this rejects the
late-layer "echo" spikes that cancel the super activation). Found weights are zeroed in place and the
pass is repeated until nothing new is found.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol

import torch
from torch import nn

from contracts.manifest import gguf_down_tensor
from contracts.results import (
    DetectionResult,
    LayerProfile,
    LayerStats,
    Provenance,
    SuperActivation,
    SuperWeight,
)
from contracts.versions import DETECTOR_VERSION
from indexer.errors import InvalidInputError
from indexer.model.ablation import Coordinate, zeroed_weights
from indexer.model.adapters import ArchitectureAdapter
from indexer.model.hooks import forward_hooks, hidden_states_of, without_logits
from indexer.model.loading import LoadedModel

DEFAULT_PROMPT = "Apple Inc. is a worldwide tech company."
#: the other prompts of the default batch: detection decides on the first prompt and reports, per
#: weight, the share of prompts whose spike points at it
DEFAULT_EXTRA_PROMPTS = (
    "The quick brown fox jumps over the lazy dog.",
    "In 1905, Albert Einstein published four papers on physics.",
)


@dataclass(frozen=True)
class DetectConfig:
    """Detection settings; the defaults are the published recipe."""

    prompt: str = DEFAULT_PROMPT
    max_super_weights: int = 8
    #: robust z-score (log magnitude, median/MAD across layers) both spikes must reach
    z_threshold: float = 3.0
    #: floor on the spread used by the z-score, in natural-log units (log 2: a factor of two)
    min_spread: float = math.log(2.0)
    #: after the layer (and the next one) the channel must hold this share of the residual's maximum
    persistence: float = 0.5
    #: the single weight's contribution must be at least this share of the output spike
    dominance: float = 0.5
    #: a layer whose output spike is an outlier but whose input spike is not still qualifies when it
    #: creates the channel: the residual there grows at least this much across the layer (profiles where
    #: several early layers have input spikes of one order, or a modest input meets a huge weight)
    creation: float = 4.0
    #: prompts run in the same forward pass as `prompt`, for the agreement figures
    extra_prompts: tuple[str, ...] = DEFAULT_EXTRA_PROMPTS

    @property
    def prompts(self) -> tuple[str, ...]:
        """The detection prompt first, then the extra ones."""
        return (self.prompt, *self.extra_prompts)

    def validate(self) -> None:
        """Raise `InvalidInputError` for out-of-range settings."""
        if not self.prompt.strip():
            raise InvalidInputError("the detection prompt is empty")
        if not 1 <= self.max_super_weights <= 64:
            raise InvalidInputError("max_super_weights must be between 1 and 64")
        if self.z_threshold <= 0 or self.min_spread <= 0:
            raise InvalidInputError("z_threshold and min_spread must be positive")
        if not 0 < self.persistence <= 1 or not 0 < self.dominance <= 1:
            raise InvalidInputError("persistence and dominance must be in (0, 1]")
        if self.creation <= 1:
            raise InvalidInputError("the creation factor must be above 1")
        if len(self.extra_prompts) > 15 or any(not p.strip() for p in self.extra_prompts):
            raise InvalidInputError("at most 15 extra prompts, none of them empty")


@dataclass(frozen=True)
class _TokenMaxima:
    """Per-token abs-max over channels of one activation (small CPU tensors)."""

    magnitude: torch.Tensor  # (seq,)
    channel: torch.Tensor  # (seq,) argmax channel
    value: torch.Tensor  # (seq,) signed value at that channel


@dataclass(frozen=True)
class _ChannelMaxima:
    """Per-channel abs-max over tokens of the residual stream (small CPU tensors)."""

    magnitude: torch.Tensor  # (hidden,)
    token: torch.Tensor  # (hidden,)
    value: torch.Tensor  # (hidden,) signed


@dataclass
class _PassRecord:
    inputs: list[_TokenMaxima | None]
    outputs: list[_TokenMaxima | None]
    residuals: list[_ChannelMaxima | None]


def _token_maxima(rows: torch.Tensor) -> _TokenMaxima:
    # rows: (seq, channels) of one prompt
    magnitude, channel = rows.abs().float().max(dim=-1)  # (seq,)
    value = rows.gather(-1, channel.unsqueeze(-1)).squeeze(-1).float()
    return _TokenMaxima(magnitude.cpu(), channel.cpu(), value.cpu())


def _channel_maxima(rows: torch.Tensor) -> _ChannelMaxima:
    # rows: (seq, hidden) of one prompt
    magnitude, token = rows.abs().float().max(dim=0)  # (hidden,)
    value = rows.gather(0, token.unsqueeze(0)).squeeze(0).float()
    return _ChannelMaxima(magnitude.cpu(), token.cpu(), value.cpu())


def _prompt_rows(activation: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
    """Each prompt's `(length, channels)` rows of a `(batch, seq, channels)` activation, or of a
    `(batch * seq, channels)` one where a family flattens (OPT); padding is left out."""
    rows = activation.detach().reshape(len(lengths), -1, activation.shape[-1])  # (batch, seq, channels)
    return [rows[b, :length] for b, length in enumerate(lengths)]


@contextmanager
def _recording_hooks(
    model: nn.Module, adapter: ArchitectureAdapter, records: list[_PassRecord], lengths: list[int]
) -> Iterator[None]:
    down_names = adapter.down_proj_names(model)
    residual_names = adapter.residual_names(model)

    def down_hook(index: int) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(_module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            inputs = _prompt_rows(args[0], lengths)  # args[0]: (batch, seq, d_ff)
            outputs = _prompt_rows(hidden_states_of(output), lengths)  # (batch, seq, hidden)
            for record, inp, out in zip(records, inputs, outputs, strict=True):
                record.inputs[index] = _token_maxima(inp)
                record.outputs[index] = _token_maxima(out)

        return hook

    def residual_hook(index: int) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
            residuals = _prompt_rows(hidden_states_of(output), lengths)  # (batch, seq, hidden)
            for record, residual in zip(records, residuals, strict=True):
                record.residuals[index] = _channel_maxima(residual)

        return hook

    hooks = {name: down_hook(i) for i, name in enumerate(down_names)}
    for i, name in enumerate(residual_names):
        if name in hooks:
            raise InvalidInputError(f"{adapter.model_type}: residual module {name} is the down projection")
        hooks[name] = residual_hook(i)
    with forward_hooks(model, hooks):
        yield


def robust_z(magnitudes: list[float], min_spread: float) -> list[float]:
    """Robust z-scores of log magnitudes: (log x - median) / max(1.4826 MAD, min_spread)."""
    logs = torch.tensor([math.log(max(m, 1e-30)) for m in magnitudes], dtype=torch.float64)
    median = logs.median()
    mad = (logs - median).abs().median()
    scale = max(1.4826 * float(mad), min_spread)
    return [float(v) for v in (logs - median) / scale]


class WeightAccess(Protocol):
    """How the detector reads and zeroes down-projection weights, and runs a forward pass."""

    def down_weight(self, layer: int) -> torch.Tensor:
        """Layer `layer`'s down-projection weight as stored."""
        ...

    def zeroed(self, coordinates: list[Coordinate]) -> AbstractContextManager[Any]:
        """The weights at `coordinates` read as zero inside the block."""
        ...

    def passing(self) -> AbstractContextManager[Any]:
        """The context a forward pass runs in."""
        ...


@dataclass(frozen=True)
class InMemoryWeights:
    """The weights of a model held in memory: edited in place, restored bit-exactly."""

    model: nn.Module
    adapter: ArchitectureAdapter

    def down_weight(self, layer: int) -> torch.Tensor:
        """Layer `layer`'s down-projection weight as stored."""
        return self.adapter.down_weight(self.model, layer)

    def zeroed(self, coordinates: list[Coordinate]) -> AbstractContextManager[Any]:
        """Zero the weights in place for the block."""
        return zeroed_weights(self.model, self.adapter, coordinates)

    def passing(self) -> AbstractContextManager[Any]:
        """Nothing to do: every weight is resident."""
        return nullcontext()


class Detector:
    """Runs the iterative detection on one loaded model."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        adapter: ArchitectureAdapter,
        config: DetectConfig,
        weights: WeightAccess | None = None,
    ):
        config.validate()
        self.weights = weights or InMemoryWeights(model, adapter)
        self.model = model
        self.tokenizer = tokenizer
        self.adapter = adapter
        self.config = config
        self.num_layers = len(adapter.decoder_layers(model))
        self.forward_passes = 0
        #: layers seen cancelling the super activation; their spikes are never super weights
        self.echo_layers: set[int] = set()
        encoded = [[int(i) for i in tokenizer(prompt)["input_ids"]] for prompt in config.prompts]
        self.lengths = [len(ids) for ids in encoded]
        if min(self.lengths) < 1:
            raise InvalidInputError("a detection prompt gives no tokens")
        self.input_ids: torch.Tensor = torch.tensor([encoded[0]])  # (1, seq): the deciding prompt
        # one batch, right-padded (causal attention: padding after a prompt never changes it)
        pad = next(
            (
                i
                for i in (getattr(tokenizer, n, None) for n in ("pad_token_id", "eos_token_id"))
                if i is not None
            ),
            0,
        )
        width = max(self.lengths)
        self.batch_ids = torch.tensor(
            [ids + [int(pad)] * (width - len(ids)) for ids in encoded]
        )  # (batch, seq)
        self.attention_mask = torch.tensor(
            [[1] * n + [0] * (width - n) for n in self.lengths]
        )  # (batch, seq)
        bos = getattr(tokenizer, "bos_token_id", None)
        self.bos_present = bos is not None and int(self.input_ids[0, 0]) == int(bos)
        #: records of the extra prompts in the latest pass
        self.other_records: list[_PassRecord] = []

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward_pass(self) -> _PassRecord:
        """One recorded forward pass on the batch of prompts; returns the deciding prompt's record."""
        n = self.num_layers
        records = [_PassRecord([None] * n, [None] * n, [None] * n) for _ in self.lengths]
        device = self._device()
        with (
            self.weights.passing(),
            _recording_hooks(self.model, self.adapter, records, self.lengths),
            without_logits(self.model),  # only hidden states are read
            torch.inference_mode(),
        ):
            if len(records) == 1:
                self.model(input_ids=self.input_ids.to(device), use_cache=False)
            else:
                mask = self.attention_mask.to(device)
                self.model(input_ids=self.batch_ids.to(device), attention_mask=mask, use_cache=False)
        self.forward_passes += 1
        for record in records:
            if any(r is None for r in (*record.inputs, *record.outputs, *record.residuals)):
                raise RuntimeError("a hooked module did not run during the forward pass")
        self.other_records = records[1:]
        return records[0]

    def agreement(self, record: _PassRecord, layer: int, row: int, col: int) -> float:
        """Share of the prompts whose spike at `layer` is at output channel `row` and input channel `col`."""
        agree = 0
        for each in (record, *self.other_records):
            outputs, inputs = each.outputs[layer], each.inputs[layer]
            assert outputs is not None and inputs is not None
            token = int(outputs.magnitude.argmax())
            agree += int(outputs.channel[token]) == row and int(inputs.channel[token]) == col
        return agree / (1 + len(self.other_records))

    def _stats(self, record: _PassRecord) -> tuple[LayerStats, ...]:
        stats = []
        for layer in range(self.num_layers):
            inp, out, res = record.inputs[layer], record.outputs[layer], record.residuals[layer]
            assert inp is not None and out is not None and res is not None
            in_token = int(inp.magnitude.argmax())
            out_token = int(out.magnitude.argmax())
            res_channel = int(res.magnitude.argmax())
            stats.append(
                LayerStats(
                    layer=layer,
                    input_max=float(inp.magnitude[in_token]),
                    input_value=float(inp.value[in_token]),
                    input_token=in_token,
                    input_channel=int(inp.channel[in_token]),
                    output_max=float(out.magnitude[out_token]),
                    output_value=float(out.value[out_token]),
                    output_token=out_token,
                    output_channel=int(out.channel[out_token]),
                    residual_max=float(res.magnitude[res_channel]),
                    residual_token=int(res.token[res_channel]),
                    residual_channel=res_channel,
                )
            )
        return tuple(stats)

    def _residual_at(self, record: _PassRecord, layer: int, row: int) -> tuple[float, float]:
        """(|residual| at channel `row`, max |residual| over channels) after `layer`."""
        residual = record.residuals[layer]
        assert residual is not None
        return float(residual.magnitude[row]), float(residual.magnitude.max())

    def _is_echo(self, record: _PassRecord, layer: int, row: int) -> bool:
        """The layer shrinks the activation already carried at `row`: it cancels, not creates."""
        if layer == 0:
            return False
        before, _ = self._residual_at(record, layer - 1, row)
        after, _ = self._residual_at(record, layer, row)
        return after < before

    def _creates(self, record: _PassRecord, layer: int, row: int) -> bool:
        """The layer creates the activation at `row`: the residual there grows by the creation factor.

        This lets an output spike qualify where the input spike is not an outlier across layers (several
        early layers with input spikes of one order; a modest input meeting a huge weight); layer 0 has no
        recorded residual before it, so it needs both outliers.
        """
        if layer == 0:
            return False
        before, _ = self._residual_at(record, layer - 1, row)
        after, _ = self._residual_at(record, layer, row)
        return after >= self.config.creation * before

    def _persists(self, record: _PassRecord, layer: int, row: int) -> bool:
        """Channel `row` dominates the residual stream after this layer and the next one."""
        if layer + 1 >= self.num_layers:
            return False  # nothing after the last layer can carry it
        for later in (layer, layer + 1):
            carried, peak = self._residual_at(record, later, row)
            if carried < self.config.persistence * peak:
                return False
        return True

    def _column_outlier(self, layer: int, row: int, col: int) -> bool:
        """The weight stands out in its input column (many rows meeting one spike are not super weights)."""
        column = self.adapter.as_out_in(self.weights.down_weight(layer))[:, col].abs().float()
        z = robust_z([float(v) for v in column], self.config.min_spread)
        return z[row] >= self.config.z_threshold

    def _candidates(
        self, record: _PassRecord, stats: tuple[LayerStats, ...], iteration: int, known: set[Coordinate]
    ) -> list[SuperWeight]:
        z_in = robust_z([s.input_max for s in stats], self.config.min_spread)
        z_out = robust_z([s.output_max for s in stats], self.config.min_spread)
        found = []
        for layer, stat in enumerate(stats):
            if z_out[layer] < self.config.z_threshold or layer in self.echo_layers:
                continue
            token, row = stat.output_token, stat.output_channel
            if z_in[layer] < self.config.z_threshold and not self._creates(record, layer, row):
                continue
            if self._is_echo(record, layer, row):
                self.echo_layers.add(layer)
                continue
            inputs = record.inputs[layer]
            assert inputs is not None
            col = int(inputs.channel[token])
            input_value = float(inputs.value[token])
            if (layer, row, col) in known:
                continue
            if not self._persists(record, layer, row) or not self._column_outlier(layer, row, col):
                continue
            weight = self.weights.down_weight(layer)
            stored = weight[self.adapter.storage_index(row, col)]
            contribution = float(stored.float()) * input_value
            if (
                contribution * stat.output_value <= 0
                or abs(contribution) < self.config.dominance * stat.output_max
            ):
                continue
            weight_found = self._super_weight(layer, row, col, stored, input_value, stat, iteration)
            agreement = self.agreement(record, layer, row, col)
            found.append(weight_found.model_copy(update={"prompt_agreement": agreement}))
        found.sort(key=lambda sw: -abs(sw.output_activation))
        return found

    def _super_weight(
        self,
        layer: int,
        row: int,
        col: int,
        stored: torch.Tensor,
        input_value: float,
        stat: LayerStats,
        iteration: int,
    ) -> SuperWeight:
        weight = self.weights.down_weight(layer)
        magnitude = stored.abs()
        rank = int((weight.abs() > magnitude).sum()) + 1
        name = self.adapter.down_proj_name(self.model, layer)
        return SuperWeight(
            layer=layer,
            row=row,
            col=col,
            value=float(stored.item()),
            dtype=str(weight.dtype).removeprefix("torch."),
            hf_tensor=f"{name}.weight",
            gguf_tensor=gguf_down_tensor(layer),
            gguf_index=(col, row),
            input_activation=input_value,
            output_activation=stat.output_value,
            token=stat.output_token,
            magnitude_rank=rank,
            iteration=iteration,
        )

    def run(
        self, progress: Callable[[str], None] | None = None
    ) -> tuple[tuple[SuperWeight, ...], SuperActivation | None, tuple[LayerProfile, ...]]:
        """Iterate detection and removal; the model's weights are bit-identical afterwards."""
        say = progress or (lambda _m: None)
        found: list[SuperWeight] = []
        profiles: list[LayerProfile] = []
        first_record: _PassRecord | None = None
        with ExitStack() as removal:
            for iteration in range(self.config.max_super_weights + 1):
                record = self.forward_pass()
                first_record = first_record or record
                stats = self._stats(record)
                profiles.append(
                    LayerProfile(
                        iteration=iteration, removed=tuple(sw.coordinates for sw in found), layers=stats
                    )
                )
                if len(found) >= self.config.max_super_weights:
                    break
                new = self._candidates(record, stats, iteration, {sw.coordinates for sw in found})
                new = new[: self.config.max_super_weights - len(found)]
                say(f"pass {iteration + 1}: {len(new)} new super weight(s)")
                if not new:
                    break
                found.extend(new)
                removal.enter_context(self.weights.zeroed([sw.coordinates for sw in new]))
        assert first_record is not None
        return tuple(found), self._super_activation(first_record, found), tuple(profiles)

    def _super_activation(self, record: _PassRecord, found: list[SuperWeight]) -> SuperActivation | None:
        if not found:
            return None
        first = min(
            (sw for sw in found if sw.iteration == 0), key=lambda sw: (sw.layer, -abs(sw.output_activation))
        )
        magnitudes = []
        for residual in record.residuals:
            assert residual is not None
            magnitudes.append(float(residual.magnitude[first.row]))
        peak_layer = max(range(len(magnitudes)), key=magnitudes.__getitem__)
        return SuperActivation(
            channel=first.row,
            token=first.token,
            magnitude_by_layer=tuple(magnitudes),
            peak_layer=peak_layer,
            peak_magnitude=magnitudes[peak_layer],
            first_layer=first.layer,
            on_first_token=first.token == 0,
            on_bos=first.token == 0 and self.bos_present,
        )


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a result."""
    versions = {"python": platform.python_version()}
    for package in ("torch", "transformers", "safetensors", "gguf", "numpy", "huggingface_hub"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def detect(
    loaded: LoadedModel,
    config: DetectConfig | None = None,
    progress: Callable[[str], None] | None = None,
    weights: WeightAccess | None = None,
) -> DetectionResult:
    """Find the super weights of a loaded model; the model is left exactly as it was.

    `weights` is where the weights live when not all in `loaded.model` (the streamed engine).
    """
    config = config or DetectConfig()
    started = time.perf_counter()
    detector = Detector(loaded.model, loaded.tokenizer, loaded.adapter, config, weights)
    super_weights, activation, profiles = detector.run(progress)
    model_config = getattr(loaded.model, "config", None)
    weight = loaded.adapter.down_weight(loaded.model, 0)
    hidden, intermediate = loaded.adapter.as_out_in(weight).shape
    provenance = Provenance(
        model=loaded.model_id,
        revision=loaded.revision_sha,
        source_kind=loaded.source.kind,
        model_type=str(getattr(model_config, "model_type", loaded.adapter.model_type)),
        num_layers=detector.num_layers,
        hidden_size=int(hidden),
        intermediate_size=int(intermediate),
        parameter_count=loaded.parameter_count,
        dtype=str(loaded.dtype).removeprefix("torch."),
        device=str(loaded.device),
        prompt=config.prompt,
        prompt_tokens=int(detector.input_ids.shape[1]),
        bos_present=detector.bos_present,
        detector_version=DETECTOR_VERSION,
        library_versions=library_versions(),
        wall_time_s=time.perf_counter() - started,
        forward_passes=detector.forward_passes,
        quantization=loaded.quantization,
        resolved_from=loaded.source.revision,
        extra={"prompts": list(config.prompts), "prompt_tokens": list(detector.lengths)},
    )
    return DetectionResult(
        super_weights=super_weights,
        super_activation=activation,
        layer_profile=profiles,
        provenance=provenance,
    )
