"""Read a quantized artifact and check that a bundle's super weights survived it (`swi check`).

Artifacts: a GGUF file (the `gguf` library dequantizes the tensor), a compressed-tensors safetensors folder
(llm-compressor: `weight_packed` int32 words, element i at bit i*bits, stored with a +2^(bits-1) offset,
`weight_scale` per group or channel), a GPTQ safetensors folder (GPTQModel, AutoRound: `qweight` packed
along the input dimension, `qzeros` along the output dimension, `scales`, `g_idx`; the v1 checkpoint
format stores zero points minus one), and a torchao state dict (`torch.save(model.state_dict())`, read
with `weights_only=True`; torchao must be importable, its tensor subclasses dequantize themselves).
Only the super weights' entries are decoded, never the whole model.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from contracts.errors import BundleError
from contracts.manifest import ManifestWeight
from indexer.bundles.bundle import Bundle

#: a super weight passes when its dequantized value is within this relative error of the exact value
DEFAULT_TOLERANCE = 0.02


class ArtifactError(BundleError):
    """The artifact cannot be read, or it does not hold a bundle's tensor."""


@dataclass(frozen=True)
class WeightCheck:
    """One super weight in an artifact: how its module is stored and what value it dequantizes to."""

    layer: int
    row: int
    col: int
    tensor: str
    storage: str  # e.g. "Q8_0", "int4 group 64", "float32"
    bits: float
    exact: float | None
    dequantized: float
    relative_error: float | None
    passed: bool


@dataclass(frozen=True)
class ArtifactCheck:
    """The check of one artifact against one bundle."""

    artifact: str
    kind: str  # gguf, compressed-tensors, gptq, torchao
    tolerance: float
    weights: tuple[WeightCheck, ...]

    @property
    def passed(self) -> bool:
        """True when every super weight survived."""
        return bool(self.weights) and all(w.passed for w in self.weights)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "artifact": self.artifact,
            "kind": self.kind,
            "tolerance": self.tolerance,
            "passed": self.passed,
            "weights": [asdict(w) for w in self.weights],
        }


def _judge(
    weight: ManifestWeight, tensor: str, storage: str, bits: float, value: float, tolerance: float
) -> WeightCheck:
    exact = weight.value
    if exact is None:
        error, passed = None, False  # reported coordinates: nothing to compare with
    else:
        error = abs(value - exact) / max(abs(exact), 1e-12)
        passed = error <= tolerance
    return WeightCheck(
        weight.layer, weight.row, weight.col, tensor, storage, bits, exact, value, error, passed
    )


def check_artifact(path: str | Path, bundle: Bundle, tolerance: float = DEFAULT_TOLERANCE) -> ArtifactCheck:
    """Read `path` (GGUF file, safetensors folder or torchao state dict) and check every bundle weight."""
    artifact = Path(path)
    if artifact.is_file() and artifact.suffix == ".gguf":
        return ArtifactCheck(str(artifact), "gguf", tolerance, _check_gguf(artifact, bundle, tolerance))
    if artifact.is_file() and artifact.suffix in (".pt", ".pth", ".bin"):
        return ArtifactCheck(str(artifact), "torchao", tolerance, _check_torchao(artifact, bundle, tolerance))
    if artifact.is_dir():
        config = _quantization_config(artifact)
        tensors = _SafetensorsFolder(artifact)
        method = str(config.get("quant_method", ""))
        kind = "compressed-tensors" if method == "compressed-tensors" else "gptq"
        checks = tuple(_check_folder_weight(tensors, config, w, tolerance) for w in bundle.weights)
        return ArtifactCheck(str(artifact), kind, tolerance, checks)
    raise ArtifactError(f"{artifact}: not a .gguf file, a .pt state dict or a safetensors folder")


# ---- GGUF ----


def _check_gguf(path: Path, bundle: Bundle, tolerance: float) -> tuple[WeightCheck, ...]:
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}
    checks = []
    for weight in bundle.weights:
        tensor = by_name.get(weight.gguf_tensor_name)
        if tensor is None:
            raise ArtifactError(f"{path.name} has no tensor {weight.gguf_tensor_name}")
        kind = gguf.GGMLQuantizationType(tensor.tensor_type)
        block, size = gguf.GGML_QUANT_SIZES[kind]
        values = np.asarray(gguf.quants.dequantize(tensor.data, kind))  # (ne1, ne0) = (rows, cols)
        col, row = weight.gguf_position
        value = float(values.reshape(int(tensor.shape[1]), int(tensor.shape[0]))[row, col])
        checks.append(_judge(weight, weight.gguf_tensor_name, kind.name, size * 8 / block, value, tolerance))
    return tuple(checks)


# ---- safetensors folders ----


def _quantization_config(folder: Path) -> dict[str, Any]:
    for name in ("config.json", "quantize_config.json", "quantization_config.json"):
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            config = data.get("quantization_config", data) if name == "config.json" else data
            if isinstance(config, dict) and config:
                return config
    return {}


class _SafetensorsFolder:
    """The tensors of every `*.safetensors` file of a folder, read lazily by name."""

    def __init__(self, folder: Path) -> None:
        from safetensors import safe_open

        self.files: dict[str, Path] = {}
        for path in sorted(folder.glob("*.safetensors")):
            with safe_open(str(path), framework="pt") as opened:
                for key in opened.keys():  # noqa: SIM118 (safe_open is no mapping)
                    self.files[key] = path
        if not self.files:
            raise ArtifactError(f"{folder}: no safetensors files")

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def get(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(str(self.files[name]), framework="pt") as opened:
            tensor: torch.Tensor = opened.get_tensor(name)
        return tensor


def _unpack(words: torch.Tensor, index: int, bits: int) -> int:
    """Element `index` of a little-endian bit-packed int32 row: bits `index*bits` to `(index+1)*bits`."""
    start = index * bits
    word = int(words[start // 32]) & 0xFFFFFFFF
    return (word >> (start % 32)) & ((1 << bits) - 1)


def _check_folder_weight(
    tensors: _SafetensorsFolder, config: Mapping[str, Any], weight: ManifestWeight, tolerance: float
) -> WeightCheck:
    module = weight.hf_tensor_name.removesuffix(".weight")
    row, col = weight.row, weight.col
    if f"{module}.weight_packed" in tensors:  # compressed-tensors pack-quantized
        shape = [int(s) for s in tensors.get(f"{module}.weight_shape").tolist()]
        packed = tensors.get(f"{module}.weight_packed")  # (out, in * bits / 32)
        bits = 32 * int(packed.shape[1]) // shape[1]
        scale = tensors.get(f"{module}.weight_scale")  # (out, in / group) or (out, 1)
        group = shape[1] // int(scale.shape[1])
        q = _unpack(packed[row], col, bits) - (1 << (bits - 1))
        zero = 0.0
        if f"{module}.weight_zero_point" in tensors:
            points = tensors.get(f"{module}.weight_zero_point")
            if points.shape != scale.shape:
                raise ArtifactError(f"{module}: packed zero points are not read (asymmetric schemes)")
            zero = float(points[row, col // group])
        value = (q - zero) * float(scale[row, col // group])
        storage = f"int{bits} " + ("per channel" if int(scale.shape[1]) == 1 else f"group {group}")
        return _judge(weight, weight.hf_tensor_name, storage, bits, value, tolerance)
    if f"{module}.qweight" in tensors:  # GPTQ layout
        qweight = tensors.get(f"{module}.qweight")  # (in * bits / 32, out)
        scales = tensors.get(f"{module}.scales")  # (groups, out)
        qzeros = tensors.get(f"{module}.qzeros")  # (groups, out * bits / 32)
        in_features = (
            int(tensors.get(f"{module}.g_idx").shape[0])
            if f"{module}.g_idx" in tensors
            else int(qweight.shape[0]) * 32 // _bits_of(config, module)
        )
        bits = 32 * int(qweight.shape[0]) // in_features
        group_index = (
            int(tensors.get(f"{module}.g_idx")[col])
            if f"{module}.g_idx" in tensors
            else col // (in_features // int(scales.shape[0]))
        )
        q = _unpack(qweight[:, row], col, bits)
        zero = _unpack(qzeros[group_index], row, bits) + (0 if _gptq_v2(config) else 1)
        value = float(scales[group_index, row]) * (q - zero)
        group = in_features // int(scales.shape[0])
        return _judge(weight, weight.hf_tensor_name, f"int{bits} group {group}", bits, value, tolerance)
    if weight.hf_tensor_name in tensors:  # kept unquantized (ignored or skipped module)
        stored = tensors.get(weight.hf_tensor_name)
        if stored.dtype in (torch.int8, torch.uint8) and f"{module}.weight_scale" in tensors:
            scale = tensors.get(f"{module}.weight_scale")
            group = int(stored.shape[1]) // int(scale.shape[1])
            value = float(stored[row, col]) * float(scale[row, col // group])
            return _judge(weight, weight.hf_tensor_name, "int8", 8, value, tolerance)
        value = float(stored[row, col])
        return _judge(
            weight, weight.hf_tensor_name, str(stored.dtype).removeprefix("torch."),
            stored.element_size() * 8, value, tolerance,
        )  # fmt: skip
    raise ArtifactError(f"the artifact has no {weight.hf_tensor_name} (nor its packed form)")


def _bits_of(config: Mapping[str, Any], module: str) -> int:
    """The module's bits: its override (AutoRound `extra_config`, GPTQModel `dynamic`), else the config's."""
    bits = config.get("bits")
    extra = config.get("extra_config")
    if isinstance(extra, Mapping) and isinstance(extra.get(module), Mapping):
        bits = extra[module].get("bits", bits)
    dynamic = config.get("dynamic")
    for pattern, override in dynamic.items() if isinstance(dynamic, Mapping) else ():
        positive = not pattern.startswith("-:") and isinstance(override, Mapping)
        if positive and re.match(pattern.removeprefix("+:"), module):
            bits = override.get("bits", bits)
            break
    if not isinstance(bits, int):
        raise ArtifactError(f"{module}: no g_idx and no bits in the quantization config")
    return bits


def _gptq_v2(config: Mapping[str, Any]) -> bool:
    """True when zero points are stored as they are (GPTQ v2); v1 (the default) stores them minus one."""
    fields = (config.get("checkpoint_format"), config.get("format"), config.get("packing_format"))
    return any(isinstance(f, str) and f.endswith("gptq_v2") for f in fields)


# ---- torchao ----


def _check_torchao(path: Path, bundle: Bundle, tolerance: float) -> tuple[WeightCheck, ...]:
    try:
        import torchao  # noqa: F401  (registers its tensor subclasses as safe to load)
    except ImportError:
        raise ArtifactError("reading a torchao state dict needs torchao installed in this Python") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    checks = []
    for weight in bundle.weights:
        tensor = state.get(weight.hf_tensor_name)
        if tensor is None:
            raise ArtifactError(f"{path.name} has no {weight.hf_tensor_name}")
        kind = type(tensor).__name__
        if hasattr(tensor, "dequantize") and kind not in ("Tensor", "Parameter"):
            dense = tensor.dequantize()
            qdata = getattr(tensor, "qdata", None)
            target = getattr(tensor, "target_dtype", None) or getattr(qdata, "dtype", tensor.dtype)
            bits = _dtype_bits(target)
            storage = f"{kind} {str(target).removeprefix('torch.')}"
        else:
            dense, storage, bits = tensor, str(tensor.dtype).removeprefix("torch."), tensor.element_size() * 8
        value = float(dense[weight.row, weight.col])
        checks.append(_judge(weight, weight.hf_tensor_name, storage, bits, value, tolerance))
    return tuple(checks)


def _dtype_bits(dtype: Any) -> float:
    name = str(dtype).removeprefix("torch.")
    digits = "".join(ch for ch in name if ch.isdigit())
    return float(digits) if digits else math.nan
