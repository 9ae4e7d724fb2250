"""Tiny random models of every supported family, and a way to plant a real super weight in them."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import torch
import transformers as tf
from tokenizers import Tokenizer, models, processors
from torch import nn

from indexer.model.hooks import forward_hooks
from indexer.model.loading import LoadedModel, wrap_model

HIDDEN = 64
INTERMEDIATE = 128
VOCAB = 128
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]


def tiny_tokenizer() -> tf.PreTrainedTokenizerFast:
    """A character-level tokenizer that prepends a BOS token."""
    chars = [c for c in string.printable if c not in "\r\x0b\x0c"]
    vocab = {token: i for i, token in enumerate(SPECIALS + chars)}
    assert len(vocab) <= VOCAB
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return tf.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>"
    )


_COMMON = {"vocab_size": VOCAB, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
_DECODER = {
    "hidden_size": HIDDEN,
    "intermediate_size": INTERMEDIATE,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "head_dim": 16,
    "max_position_embeddings": 128,
}

CONFIGS: dict[str, Callable[[int], Any]] = {
    "llama": lambda n: tf.LlamaConfig(num_hidden_layers=n, **_DECODER, **_COMMON),
    "mistral": lambda n: tf.MistralConfig(num_hidden_layers=n, **_DECODER, **_COMMON),
    "qwen2": lambda n: tf.Qwen2Config(num_hidden_layers=n, **_DECODER, **_COMMON),
    "qwen3": lambda n: tf.Qwen3Config(num_hidden_layers=n, **_DECODER, **_COMMON),
    "gemma": lambda n: tf.GemmaConfig(num_hidden_layers=n, **_DECODER, **_COMMON),
    "gemma2": lambda n: tf.Gemma2Config(num_hidden_layers=n, **_DECODER, **_COMMON),
    "gemma3_text": lambda n: tf.Gemma3TextConfig(num_hidden_layers=n, **_DECODER, **_COMMON),
    "phi3": lambda n: tf.Phi3Config(num_hidden_layers=n, **_DECODER, **_COMMON),
    "phi": lambda n: tf.PhiConfig(num_hidden_layers=n, **_DECODER, **_COMMON),
    "olmo": lambda n: tf.OlmoConfig(num_hidden_layers=n, **_DECODER, **_COMMON),
    "olmo2": lambda n: tf.Olmo2Config(num_hidden_layers=n, **_DECODER, **_COMMON),
    "stablelm": lambda n: tf.StableLmConfig(num_hidden_layers=n, **_DECODER, **_COMMON),
    "starcoder2": lambda n: tf.Starcoder2Config(num_hidden_layers=n, **_DECODER, **_COMMON),
    "gpt2": lambda n: tf.GPT2Config(
        n_embd=HIDDEN, n_layer=n, n_head=4, n_inner=INTERMEDIATE, n_positions=128, **_COMMON
    ),
    "gpt_neox": lambda n: tf.GPTNeoXConfig(
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=n,
        num_attention_heads=4,
        max_position_embeddings=128,
        **_COMMON,
    ),
    "falcon": lambda n: tf.FalconConfig(
        hidden_size=HIDDEN,
        ffn_hidden_size=INTERMEDIATE,
        num_hidden_layers=n,
        num_attention_heads=4,
        **_COMMON,
    ),
    "opt": lambda n: tf.OPTConfig(
        hidden_size=HIDDEN,
        ffn_dim=INTERMEDIATE,
        num_hidden_layers=n,
        num_attention_heads=4,
        max_position_embeddings=128,
        word_embed_proj_dim=HIDDEN,
        **_COMMON,
    ),
}


def gemma3_multimodal_config(num_layers: int) -> Any:
    """A tiny Gemma 3 vision-language config (model_type `gemma3`)."""
    text = {"num_hidden_layers": num_layers, **_DECODER, **_COMMON}
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 28,
        "patch_size": 14,
    }
    return tf.Gemma3Config(text_config=text, vision_config=vision)


def tiny_model(model_type: str = "llama", num_layers: int = 6, seed: int = 0) -> LoadedModel:
    """A random tiny model of `model_type` wrapped as a `LoadedModel`."""
    torch.manual_seed(seed)
    if model_type == "gemma3":
        model: nn.Module = tf.Gemma3ForConditionalGeneration(gemma3_multimodal_config(num_layers))
    else:
        model = tf.AutoModelForCausalLM.from_config(CONFIGS[model_type](num_layers))
    return wrap_model(model, tiny_tokenizer(), f"tiny-{model_type}")


def _mlp_input(loaded: LoadedModel, layer: int, prompt: str) -> torch.Tensor:
    """The (seq, hidden) input of layer `layer`'s MLP on `prompt`."""
    adapter = loaded.adapter
    name = f"{adapter.layers_path(loaded.model)}.{layer}.{adapter.mlp_inputs[0]}"
    captured: list[torch.Tensor] = []

    def grab(_module: nn.Module, args: tuple[Any, ...]) -> None:
        hidden = args[0]
        captured.append(hidden.detach().reshape(-1, hidden.shape[-1]).clone())  # (seq, hidden)

    ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with forward_hooks(loaded.model, {}, {name: grab}), torch.inference_mode():
        loaded.model(input_ids=ids, use_cache=False)
    return captured[0]


def plant_input_spike(
    loaded: LoadedModel,
    layer: int,
    col: int,
    *,
    pre_activation: float = 8.0,
    token: int = 0,
    prompt: str = "Apple Inc. is a worldwide tech company.",
) -> None:
    """Make intermediate channel `col` of `layer` spike on `prompt` without an output spike: the
    projections feeding the down projection are aimed as for a super weight, and the down projection's
    column `col` is zeroed, so the spike goes nowhere (published profiles show such input-only spikes)."""
    plant_super_weight(
        loaded, layer, 0, col, weight=0.0, pre_activation=pre_activation, token=token, prompt=prompt
    )
    adapter = loaded.adapter
    down = adapter.down_weight(loaded.model, layer)
    with torch.no_grad():
        adapter.as_out_in(down)[:, col] = 0.0


def plant_super_weight(
    loaded: LoadedModel,
    layer: int,
    row: int,
    col: int,
    *,
    weight: float = 2.0,
    pre_activation: float = 8.0,
    token: int = 0,
    prompt: str = "Apple Inc. is a worldwide tech company.",
) -> None:
    """Make `down_proj[row, col]` of `layer` a real super weight on `prompt`.

    The projections feeding the down projection are aimed at the MLP input of `token`, so that
    intermediate channel `col` spikes there; `weight` at `(row, col)` turns it into a large output.
    """
    adapter = loaded.adapter
    model = loaded.model
    x = _mlp_input(loaded, layer, prompt)[token]  # (hidden,)
    direction = x / x.dot(x)
    prefix = f"{adapter.layers_path(model)}.{layer}"
    with torch.no_grad():
        for path in adapter.mlp_inputs:
            module = model.get_submodule(f"{prefix}.{path}")
            in_out = adapter.layout == "in_out"  # GPT-2's Conv1D stores [in, out] for every MLP matrix
            matrix = module.weight.t() if in_out else module.weight  # (out, in)
            for out_index in range(col, matrix.shape[0], INTERMEDIATE):
                matrix[out_index] = direction * pre_activation
                bias = getattr(module, "bias", None)
                if bias is not None:
                    bias[out_index] = 0.0
        down = adapter.down_weight(model, layer)
        down[adapter.storage_index(row, col)] = weight


#: the planted lineage: the base model's super weights, and where the fine-tune moved the second one
BASE_SUPER_WEIGHTS = ((1, 10, 20), (3, 30, 50))
FINE_TUNE_SUPER_WEIGHTS = ((1, 10, 20), (3, 30, 51))


def planted_base_and_fine_tune(model_type: str = "llama") -> tuple[LoadedModel, LoadedModel]:
    """A tiny base model with two planted super weights, and a fine-tune that kept one and moved the other.

    The fine-tune starts from the base's weights, nudges every weight a little (as training would), scales
    the kept super weight by 1.05, and moves the second one to another column of the same row and layer.
    """
    base = tiny_model(model_type, seed=0)
    for layer, row, col in BASE_SUPER_WEIGHTS:
        plant_super_weight(base, layer, row, col)
    tuned = tiny_model(model_type, seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in tuned.model.parameters():
            parameter.add_(1e-3 * torch.randn(parameter.shape, generator=generator))
    for (layer, row, col), weight in zip(FINE_TUNE_SUPER_WEIGHTS, (2.1, 2.0), strict=True):
        plant_super_weight(tuned, layer, row, col, weight=weight)
    return base, tuned


def plant_joint_super_weights(loaded: LoadedModel) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Two llama super weights that matter only together: each alone is inert, both zeroed wreck the model.

    Every token carries residual channel 5 (an embedding column); `down_proj[10, 20]` of layer 1 and
    `down_proj[10, 30]` of layer 2 turn it into a massive activation at channel 10, which the head reads
    (column 10 favours the corpus's characters, the other columns are scaled up to confident noise). While
    layer 1's activation is there, channel 5 is drowned in layer 2's normalized input and layer 2 stays quiet;
    zeroing layer 1's weight wakes layer 2's, which restores the activation. Returns the two coordinates.
    """
    channel, row = 5, 10
    first, second = (1, row, 20), (2, row, 30)
    with torch.no_grad():
        loaded.model.get_input_embeddings().weight[:, channel] = 1.0
        for layer, _, col in (first, second):
            _spiking_column(loaded, layer, col, channel)[row, col] = 4.0
        _head_reading(loaded, (row,))
    return first, second


def _spiking_column(loaded: LoadedModel, layer: int, col: int, channel: int) -> torch.Tensor:
    """Aim `layer`'s gate and up projections' row `col` at residual `channel` (an input spike at `col`) and
    clear the down projection's column `col`; returns the down projection as (hidden, intermediate)."""
    model, adapter = loaded.model, loaded.adapter
    for path in adapter.mlp_inputs:
        matrix = model.get_submodule(f"{adapter.layers_path(model)}.{layer}.{path}").weight  # (out, in)
        matrix[col] = 0.0
        matrix[col, channel] = 4.0
    down = adapter.as_out_in(adapter.down_weight(model, layer))  # (hidden, intermediate)
    down[:, col] = 0.0
    return down


def _head_reading(loaded: LoadedModel, rows: tuple[int, ...]) -> None:
    """Scale the head up to confident noise, except that each of `rows` favours the corpus's characters."""
    head = loaded.model.get_output_embeddings().weight  # (vocab, hidden)
    head *= 20.0
    corpus_ids = loaded.tokenizer("abcdefghij klmnopqrst.,", add_special_tokens=False)["input_ids"]
    for row in rows:
        head[:, row] = -5.0
        head[sorted(set(corpus_ids)), row] = 5.0


#: the Phi-3-mini-like six: three rows sharing one column in each of two early layers (published for
#: Phi-3-mini-4k: layers 2 and 4 of 32, the same three rows in both), scaled to a 6-layer tiny llama
SIX_ROWS = (10, 30, 50)
SIX_COLUMNS = {1: 20, 3: 40}  # layer -> the column its three super weights share
SIX_SUPER_WEIGHTS = tuple((layer, row, col) for layer, col in SIX_COLUMNS.items() for row in SIX_ROWS)
#: a large weight in layer 1's column at a row the head reads as noise, like every unplanted channel
DECOY = (1, 60, 20)


def plant_six_super_weights(loaded: LoadedModel, *, decoy: bool = False) -> tuple[tuple[int, int, int], ...]:
    """Six llama super weights that matter only as a set: each alone ~1x, all six zeroed wreck the model.

    Every token carries residual channel 5 (an embedding column). Layer 1's and layer 3's gate and up
    projections turn it into an input spike at their column; three weights of that column write it to
    rows 10, 30 and 50, which the head reads in favour of the corpus's characters (every other column of
    the head is scaled up to confident noise). Any one of the six rows carries the activation the head
    needs, so zeroing one weight changes nothing, while keeping any one of them with the other five zeroed
    repairs the model: each is necessary to the set's joint effect. Layer 3 is the backup: while layer 1's
    activation is there, channel 5 is drowned in layer 3's normalized input and it stays quiet. With
    `decoy`, `DECOY` (a large weight of layer 1's column) writes the same input to row 60, which nothing
    reads as the super activation. Returns the planted coordinates (the six, then the decoy).
    """
    channel = 5
    model, adapter = loaded.model, loaded.adapter
    planted = list(SIX_SUPER_WEIGHTS)
    with torch.no_grad():
        model.get_input_embeddings().weight[:, channel] = 1.0
        for layer, col in SIX_COLUMNS.items():
            down = _spiking_column(loaded, layer, col, channel)  # (hidden, intermediate)
            for row, weight in zip(SIX_ROWS, (4.0, 3.5, 3.0), strict=True):
                down[row, col] = weight  # distinct sizes: detection finds one row of the column per pass
        if decoy:
            layer, row, col = DECOY
            adapter.as_out_in(adapter.down_weight(model, layer))[row, col] = 1.0
            planted.append(DECOY)
        _head_reading(loaded, SIX_ROWS)
    return tuple(planted)
