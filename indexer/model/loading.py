"""Load a model from the hub (pinned to a commit sha), a local safetensors folder or a GGUF file.

Safe by construction: only safetensors or GGUF weights are read, never pickle files, and
`trust_remote_code` is never enabled.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch
from torch import nn

from contracts.identifiers import is_commit_sha, is_model_id
from contracts.results import SourceKind
from indexer.errors import (
    GatedModelError,
    HubUnavailableError,
    InsufficientMemoryError,
    InvalidInputError,
    ModelNotFoundError,
    RemoteCodeRequiredError,
    UnsafeWeightsError,
)
from indexer.model.adapters import ArchitectureAdapter, adapter_for

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
#: files fetched from the hub: configs, tokenizers and safetensors; never pickle weights
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
#: headroom over the bare weights (activations, allocator slack, buffers)
MEMORY_HEADROOM = 1.15
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from, as the user named it."""

    kind: SourceKind
    reference: str  # hub id, or the absolute path of a folder or .gguf file
    revision: str | None = None  # requested branch, tag or sha (hub only)

    @property
    def display_name(self) -> str:
        """The id shown to users and stored in the catalog."""
        return self.reference if self.kind == "hub" else Path(self.reference).name


@dataclass(frozen=True)
class LoadOptions:
    """How to load: dtype and device (`auto` picks bfloat16/GPU or float32/CPU), hub settings, limits."""

    dtype: str = "auto"
    device: str = "auto"
    cache_dir: str | None = None
    offline: bool | None = None  # None: follow HF_HUB_OFFLINE
    token: str | None = None  # None: follow HF_TOKEN
    endpoint: str | None = None  # a hub mirror; None: follow HF_ENDPOINT
    memory_limit_bytes: int | None = None  # refuse to load above this, even if the machine has more
    #: keep a safetensors copy of a dequantized GGUF file in the model cache (loads in seconds next time)
    gguf_cache: bool = True


@dataclass
class LoadedModel:
    """A model ready for detection, with what is known of where it came from."""

    model: nn.Module
    tokenizer: Any
    adapter: ArchitectureAdapter
    source: ModelSource
    revision_sha: str | None
    quantization: str | None
    dtype: torch.dtype
    device: torch.device
    parameter_count: int
    load_time_s: float
    config: Any = field(repr=False, default=None)

    @property
    def model_id(self) -> str:
        """The id shown to users and stored in the catalog."""
        return self.source.display_name


def parse_source(spec: str, revision: str | None = None) -> ModelSource:
    """Classify `spec` as a GGUF file, a local folder or a hub id."""
    if not spec or not spec.strip():
        raise InvalidInputError("empty model name")
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {spec}")
        return ModelSource("gguf", str(path.resolve()))
    if path.is_dir():
        return ModelSource("local", str(path.resolve()), None)
    if path.exists():
        raise InvalidInputError(
            f"{spec} is a file but not a .gguf file; pass a folder, a .gguf file or a hub id"
        )
    if spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1):
        raise ModelNotFoundError(f"no such folder or file: {spec}")
    if not is_model_id(spec):
        raise ModelNotFoundError(f"{spec!r} is neither an existing path nor a hub id of the form org/name")
    return ModelSource("hub", spec, revision)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 on a GPU and float32 on the CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return DTYPES[name]
    except KeyError:
        raise InvalidInputError(f"unknown dtype {name!r}; choose auto, {', '.join(DTYPES)}") from None


def resolve_device(name: str) -> torch.device:
    """`auto` is the first GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InvalidInputError(f"unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {name!r} asked for, but no CUDA device is available")
    return device


def snapshot_hub_model(source: ModelSource, options: LoadOptions) -> tuple[Path, str]:
    """Download (or find in the cache) a hub snapshot without pickle files; return (folder, commit sha)."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import snapshot_download

    offline = options.offline if options.offline is not None else _env_flag("HF_HUB_OFFLINE")
    token = options.token or os.environ.get("HF_TOKEN") or None
    try:
        folder = snapshot_download(
            source.reference,
            revision=source.revision,
            cache_dir=options.cache_dir,
            allow_patterns=HUB_ALLOW_PATTERNS,
            local_files_only=offline,
            token=token,
            endpoint=options.endpoint,
        )
    except hf_errors.GatedRepoError:
        raise GatedModelError(
            f"{source.reference} is gated: accept its licence on the hub and set HF_TOKEN"
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise ModelNotFoundError(f"{source.reference}: revision {source.revision!r} not found") from None
    except hf_errors.RepositoryNotFoundError:
        raise ModelNotFoundError(
            f"{source.reference}: model not found on the hub (or private: set HF_TOKEN)"
        ) from None
    except hf_errors.LocalEntryNotFoundError:
        wanted = f"{source.reference}@{source.revision or 'main'}"
        if offline:
            raise ModelNotFoundError(f"{wanted} is not in the local cache (offline mode)") from None
        raise HubUnavailableError(f"{wanted}: the hub could not be reached and it is not cached") from None
    except (OSError, hf_errors.HfHubHTTPError) as exc:
        raise HubUnavailableError(f"{source.reference}: hub request failed: {exc}") from None
    path = Path(str(folder))
    sha = path.name
    if not is_commit_sha(sha):
        raise ModelNotFoundError(f"{source.reference}: could not resolve a commit sha (got {sha!r})")
    return path, sha


def check_folder(folder: Path, name: str) -> dict[str, Any]:
    """Refuse folders without config.json, with only pickle weights, or that need remote code."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelNotFoundError(f"{name}: no config.json in the model folder")
    if not any(folder.glob("*.safetensors")):
        pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles or _hub_lists_pickles(folder):
            raise UnsafeWeightsError(
                f"{name} ships only pickle weights ({', '.join(pickles) or '.bin'}); "
                "only safetensors or GGUF weights are loaded, since pickle files can run code"
            )
        raise ModelNotFoundError(f"{name}: no .safetensors weights in the model folder")
    config: dict[str, Any] = json.loads(config_path.read_text())
    _check_no_remote_code(config, name)
    return config


def _hub_lists_pickles(folder: Path) -> bool:
    # a hub snapshot never contains the pickles we refused to download; the index file names them
    index = folder / "pytorch_model.bin.index.json"
    return index.is_file()


def _check_no_remote_code(config: dict[str, Any], name: str) -> None:
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING and "auto_map" in config:
        raise RemoteCodeRequiredError(
            f"{name} (model_type {model_type!r}) needs trust_remote_code, which is never enabled: "
            "its code would run on this machine"
        )


def count_parameters(config: Any) -> int:
    """Exact parameter count from a config, by building the model on the meta device (no memory)."""
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    with torch.device("meta"), no_init_weights():
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)  # type: ignore[no-untyped-call]
    model.tie_weights()  # skipped with the initialisation; a tied head is not a parameter of its own
    return sum(p.numel() for p in model.parameters())


def available_memory(device: torch.device) -> int:
    """Bytes free on `device` (all GPUs together for CUDA when several are visible)."""
    if device.type == "cuda":
        if device.index is not None:
            return int(torch.cuda.mem_get_info(device.index)[0])
        return sum(int(torch.cuda.mem_get_info(i)[0]) for i in range(torch.cuda.device_count()))
    return int(psutil.virtual_memory().available)


def check_memory(parameter_count: int, dtype: torch.dtype, device: torch.device, limit: int | None) -> int:
    """Refuse when the weights cannot be held; returns the estimated bytes."""
    need = int(parameter_count * torch.finfo(dtype).bits / 8 * MEMORY_HEADROOM)
    have = available_memory(device)
    if limit is not None:
        have = min(have, limit)
    if need > have:
        raise InsufficientMemoryError(
            f"the weights need about {_gib(need)} on {device.type} ({parameter_count:,} parameters in "
            f"{str(dtype).removeprefix('torch.')}) but only {_gib(have)} is available"
        )
    return need


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's config, tokenizer and weights are, before anything heavy is read."""

    source: ModelSource
    folder: Path
    #: extra `from_pretrained` arguments: `gguf_file` when the weights are read from a GGUF file
    load_args: dict[str, Any]
    config: Any
    revision_sha: str | None
    quantization: str | None
    device: torch.device
    dtype: torch.dtype
    parameter_count: int

    @property
    def gguf_file(self) -> Path | None:
        """The GGUF file the weights come from, when they are not read from safetensors."""
        name = self.load_args.get("gguf_file")
        return self.folder / name if name else None

    @property
    def weight_bytes(self) -> int:
        """Bytes of the weights in the dtype they are loaded in."""
        return int(self.parameter_count * torch.finfo(self.dtype).bits / 8)


def resolve_model(
    spec: str | ModelSource,
    revision: str | None = None,
    options: LoadOptions | None = None,
    progress: ProgressCallback | None = None,
) -> ResolvedModel:
    """Find `spec`'s files, read its config and count its parameters; every refusal is an `IndexerError`.

    A `ModelSource` is used as classified (a hub id given as one never touches the local file system).
    """
    options = options or LoadOptions()
    say = progress or (lambda _msg: None)
    source = spec if isinstance(spec, ModelSource) else parse_source(spec, revision)
    if source.kind != "hub" and revision is not None:
        raise InvalidInputError("--revision only applies to hub models")
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)

    from transformers import AutoConfig

    sha: str | None = None
    quantization: str | None = None
    load_args: dict[str, Any] = {}
    if source.kind == "gguf":
        quantization = gguf_file_type(Path(source.reference))
        cached = dequantized_cache_folder(Path(source.reference)) if options.gguf_cache else None
        if cached is not None and (cached / "config.json").is_file():
            folder = cached
            config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        else:
            folder = Path(source.reference).parent
            load_args = {"gguf_file": Path(source.reference).name}
            config = AutoConfig.from_pretrained(folder, **load_args)
    else:
        if source.kind == "hub":
            say(f"resolving {source.reference}@{source.revision or 'main'}")
            folder, sha = snapshot_hub_model(source, options)
        else:
            folder = Path(source.reference)
        check_folder(folder, source.display_name)
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    adapter_for(config.model_type)  # refuse an unknown family before anything is read
    return ResolvedModel(
        source, folder, load_args, config, sha, quantization, device, dtype, count_parameters(config)
    )


def load_model(
    spec: str | ModelSource,
    revision: str | None = None,
    options: LoadOptions | None = None,
    progress: ProgressCallback | None = None,
) -> LoadedModel:
    """Load `spec` (hub id, folder, .gguf file or a classified `ModelSource`); refusals: `IndexerError`."""
    options = options or LoadOptions()
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    resolved = resolve_model(spec, revision, options, progress)
    return load_resolved(resolved, options, say, started)


def load_resolved(
    resolved: ResolvedModel, options: LoadOptions, say: ProgressCallback, started: float
) -> LoadedModel:
    """Load a resolved model's weights into memory (refused when they do not fit)."""
    from transformers import AutoModelForCausalLM

    source, folder, config = resolved.source, resolved.folder, resolved.config
    device, dtype, parameter_count = resolved.device, resolved.dtype, resolved.parameter_count
    load_args: dict[str, Any] = {"use_safetensors": True} if not resolved.load_args else resolved.load_args
    adapter = adapter_for(config.model_type)
    need = check_memory(parameter_count, dtype, device, options.memory_limit_bytes)

    device_map: Any = None
    several_gpus = device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1
    if several_gpus and need > int(torch.cuda.mem_get_info(0)[0]):
        device_map = "auto"  # split across GPUs only when one cannot hold the weights
    say(f"loading {parameter_count / 1e6:.0f}M parameters as {str(dtype).removeprefix('torch.')}")
    # the tokenizer is read while the weights are: its JSON parsing overlaps the weights' reads
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenizer") as pool:
        tokenizer_future = pool.submit(load_tokenizer, resolved, load_args)
        try:
            model = None
            if device_map is None and not resolved.load_args:
                model = read_safetensors_model(folder, config, dtype, device)
            if model is None:
                model = AutoModelForCausalLM.from_pretrained(
                    folder, dtype=dtype, trust_remote_code=False, device_map=device_map, **load_args
                )
            tokenizer = tokenizer_future.result()
        except (ValueError, OSError) as exc:
            raise ModelNotFoundError(f"{source.display_name}: could not load: {exc}") from None
    if "gguf_file" in load_args and options.gguf_cache:
        say("caching the dequantized weights as safetensors")
        save_dequantized(model, tokenizer, dequantized_cache_folder(Path(source.reference)))
    if device_map is None:
        model.to(device)  # type: ignore[arg-type]
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        adapter=adapter,
        source=source,
        revision_sha=resolved.revision_sha,
        quantization=resolved.quantization,
        dtype=dtype,
        device=device,
        parameter_count=parameter_count,
        load_time_s=time.perf_counter() - started,
        config=config,
    )


def load_tokenizer(resolved: ResolvedModel, load_args: dict[str, Any] | None = None) -> Any:
    """The model's tokenizer. In a dequantized cache (ours), its added tokens are recorded in
    `tokenizer_config.json` after the first load, so later loads skip transformers' parse of the whole
    `tokenizer.json` in Python (half the load's tokenizer time, 25 MB of transient objects for SmolLM2)."""
    from transformers import AutoTokenizer

    args = resolved.load_args if load_args is None else load_args
    tokenizer = AutoTokenizer.from_pretrained(resolved.folder, trust_remote_code=False, **args)
    if resolved.source.kind == "gguf" and not resolved.load_args:  # the folder is the dequantized cache
        record_added_tokens(resolved.folder, tokenizer)
    return tokenizer


def record_added_tokens(folder: Path, tokenizer: Any) -> None:
    """Write the tokenizer's added tokens into `folder`'s `tokenizer_config.json` when it lacks them.

    transformers drops them when it saves a tokenizers-backed tokenizer, then re-reads every token of
    `tokenizer.json` in Python at each load to find them again; with them recorded it builds the same
    tokenizer (the same added and special tokens, the same ids) from the config alone.
    """
    path = folder / "tokenizer_config.json"
    decoder = getattr(tokenizer, "added_tokens_decoder", None)
    if not path.is_file() or not decoder:
        return
    with contextlib.suppress(OSError, ValueError):  # a read-only or odd cache is only slower
        settings = json.loads(path.read_text())
        if "added_tokens_decoder" in settings:
            return
        settings["added_tokens_decoder"] = {str(i): token.__getstate__() for i, token in decoder.items()}
        staging = path.with_name(f".{path.name}.{os.getpid()}.partial")
        staging.write_text(json.dumps(settings, indent=2, ensure_ascii=False))
        os.replace(staging, path)


def read_safetensors_model(folder: Path, config: Any, dtype: torch.dtype, device: torch.device) -> Any:
    """The model of `folder`'s safetensors read tensor by tensor into a skeleton, or None when it cannot be.

    `from_pretrained` first builds and randomly initialises every weight its checkpoint lacks (a tied
    embedding saved as the head only: half a second for SmolLM2); here each tensor is mapped from the file
    (on the CPU, stored in the dtype asked for: copy-on-write, its pages read when first touched) or read
    once and converted (`indexer.model.skeleton.read_into`). A checkpoint whose
    tensors do not map one to one onto the model's (renamed beyond transformers' rules, fused, missing)
    returns None, and `from_pretrained` loads it as before.
    """
    from indexer.model.checkpoint import SafetensorsCheckpoint
    from indexer.model.skeleton import build_skeleton, finish, plan_weights, read_into, tied_keys

    checkpoint = SafetensorsCheckpoint(folder)
    skeleton = build_skeleton(config, dtype)
    plan = plan_weights(skeleton, checkpoint, "", 0)
    covered = {key for key, _ in plan.resident} | set(tied_keys(skeleton))
    if any(key not in covered for key in skeleton.state_dict(keep_vars=True)):
        return None  # before reading anything: the fallback must not hold two copies
    read_into(skeleton, checkpoint, plan.resident, dtype, device)
    if finish(skeleton, device, set()):
        return None
    return skeleton


def wrap_model(model: nn.Module, tokenizer: Any = None, name: str = "in-memory") -> LoadedModel:
    """A model already in memory as a `LoadedModel` (eval mode, no gradients), named `name`."""
    config = getattr(model, "config", None)
    adapter = adapter_for(str(getattr(config, "model_type", "")))
    parameter = next(model.parameters())
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        adapter=adapter,
        source=ModelSource("local", name),
        revision_sha=None,
        quantization=None,
        dtype=parameter.dtype,
        device=parameter.device,
        parameter_count=sum(p.numel() for p in model.parameters()),
        load_time_s=0.0,
        config=config,
    )


def dequantized_cache_folder(gguf_path: Path) -> Path:
    """Cache folder of a GGUF file's dequantized weights, keyed by the file's sha256."""
    from indexer.model.demo_model import model_cache_dir

    stat = gguf_path.stat()
    digest = _file_sha256(str(gguf_path.resolve()), stat.st_size, stat.st_mtime_ns)
    return model_cache_dir() / "gguf-dequantized" / f"{gguf_path.stem}-{digest[:16]}"


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, _size: int, _mtime_ns: int) -> str:
    # keyed by size and modification time too: a file rewritten in place is hashed again
    from indexer.model.demo_model import sha256_of

    return sha256_of(Path(path))


def save_dequantized(model: nn.Module, tokenizer: Any, folder: Path) -> None:
    """Write model (safetensors), config and tokenizer atomically into `folder`."""
    import safetensors.torch

    config = getattr(model, "config")  # noqa: B009 (nn.Module types attributes as tensors)
    write_model_folder(folder, config, tokenizer, lambda path: safetensors.torch.save_model(model, str(path)))


def write_model_folder(
    folder: Path, config: Any, tokenizer: Any, write_weights: Callable[[Path], None]
) -> None:
    """Write `model.safetensors` (by `write_weights`), tokenizer and config atomically into `folder`."""
    import shutil
    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".partial-"))
    try:
        settings = config.to_dict()
        settings.pop("quantization_config", None)  # the copy is plain safetensors, not GGUF
        write_weights(staging / "model.safetensors")
        tokenizer.save_pretrained(staging)
        record_added_tokens(staging, tokenizer)
        (staging / "config.json").write_text(json.dumps(settings, indent=2))  # written last: marks completion
        with contextlib.suppress(OSError):  # another process finished the same copy first
            os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def gguf_file_type(path: Path) -> str:
    """The GGUF file's quantization type, e.g. `Q4_1` (from `general.file_type`)."""
    import gguf

    value = gguf_header_field(path, "general.file_type")
    if value is None:
        # no declared type: name the tensor types (this parses the whole file, as it must)
        reader = gguf.GGUFReader(path)
        types = {t.tensor_type.name for t in reader.tensors}
        return "+".join(sorted(types))
    try:
        return gguf.LlamaFileType(int(value)).name.removeprefix("MOSTLY_")
    except ValueError:
        return f"file_type_{value}"


@dataclass(frozen=True)
class GgufLineage:
    """What a GGUF file's `general.*` metadata says about the model it was built from."""

    organization: str | None
    basename: str | None
    size_label: str | None
    finetune: str | None
    base_models: tuple[str, ...]  # `general.base_model.N.*`: hub ids where a repo URL names one, else names

    @property
    def suggestion(self) -> str | None:
        """A hub id to propose (shown to the user, never used without their confirmation)."""
        for base in self.base_models:
            if base.count("/") == 1:
                return base
        if self.organization and self.basename:
            name = "-".join(p for p in (self.basename, self.size_label, self.finetune) if p)
            return f"{self.organization}/{name}"
        return None


def gguf_lineage(path: Path) -> GgufLineage:
    """Read the organization, basename, size label, finetune and base models of a GGUF file."""
    import gguf

    reader = gguf.GGUFReader(path)

    def text(key: str) -> str | None:
        field_ = reader.fields.get(key)
        if field_ is None or not field_.types or field_.types[0] != gguf.GGUFValueType.STRING:
            return None
        value = bytes(field_.parts[field_.data[0]]).decode("utf-8", errors="replace").strip()
        return value or None

    bases: list[str] = []
    count_field = reader.fields.get("general.base_model.count")
    count = int(count_field.parts[count_field.data[0]][0]) if count_field is not None else 0
    hub = "https://huggingface.co/"
    for i in range(min(count, 8)):
        url = text(f"general.base_model.{i}.repo_url") or ""
        name = text(f"general.base_model.{i}.name")
        if url.startswith(hub) and url[len(hub) :].count("/") == 1:
            bases.append(url[len(hub) :])
        elif name:
            bases.append(name)
    return GgufLineage(
        organization=text("general.organization"),
        basename=text("general.basename"),
        size_label=text("general.size_label"),
        finetune=text("general.finetune"),
        base_models=tuple(bases),
    )


#: struct formats of GGUF's scalar value types (by type id); 8 is a string, 9 an array
_GGUF_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}


def gguf_header_field(path: Path, key: str) -> int | float | bool | str | None:
    """One scalar metadata field of a GGUF file, read from the header up to that key only.

    `gguf.GGUFReader` parses every field (the tokenizer's vocabulary arrays: seconds); the type of a
    file is one integer near the start.
    """
    import struct

    def unpack(fmt: str) -> Any:
        return struct.unpack(fmt, handle.read(struct.calcsize(fmt)))[0]

    def string() -> str:
        return str(handle.read(unpack("<Q")), encoding="utf-8", errors="replace")

    def skip(value_type: int) -> None:
        if value_type in _GGUF_SCALARS:
            handle.seek(struct.calcsize(_GGUF_SCALARS[value_type]), os.SEEK_CUR)
        elif value_type == 8:
            handle.seek(unpack("<Q"), os.SEEK_CUR)
        elif value_type == 9:
            item_type, count = unpack("<I"), unpack("<Q")
            if item_type in _GGUF_SCALARS:
                handle.seek(count * struct.calcsize(_GGUF_SCALARS[item_type]), os.SEEK_CUR)
            else:
                for _ in range(count):
                    skip(item_type)
        else:
            raise ValueError(f"unknown GGUF value type {value_type}")

    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise InvalidInputError(f"{path.name} is not a GGUF file")
        version = unpack("<I")
        if version < 2:
            raise InvalidInputError(f"{path.name}: GGUF version {version} is not supported")
        _tensor_count, field_count = unpack("<Q"), unpack("<Q")
        for _ in range(field_count):
            name = string()
            value_type = unpack("<I")
            if name != key:
                skip(value_type)
            elif value_type == 8:
                return string()
            elif value_type in _GGUF_SCALARS:
                value: int | float | bool = unpack(_GGUF_SCALARS[value_type])
                return value
            else:
                return None
    return None


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"
