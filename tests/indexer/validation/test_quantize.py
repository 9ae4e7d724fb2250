"""RTN fake quantization: values, block and group shapes, hold-out, clipping, in-place restore."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from indexer.errors import InvalidInputError
from indexer.model.hooks import forward_hooks
from indexer.validation.quantize import (
    ClipSpec,
    Granularity,
    ScratchBuffers,
    _kth_from_end,
    block_partition,
    clip_thresholds,
    fake_quantize_activation,
    fake_quantize_rows_,
    fake_quantized_activations,
    fake_quantized_weights,
    linear_targets,
    parse_granularity,
    rtn_quantize_,
    rtn_quantize_model_,
    rtn_weight_quantizer,
)
from tests.tiny import tiny_model


def reference_rtn(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Asymmetric min-max RTN of one block, written out plainly."""
    low, high = float(values.min()), float(values.max())
    if high == low:
        return values.clone()
    scale = (high - low) / (2**bits - 1)
    return torch.tensor([low + round((float(v) - low) / scale) * scale for v in values], dtype=values.dtype)


def test_two_bit_values_are_exact() -> None:
    weight = torch.tensor([[0.0, 0.9, 1.6, 3.0]])
    rtn_quantize_(weight, 2)
    assert weight.tolist() == [[0.0, 1.0, 2.0, 3.0]]


def test_constant_block_is_unchanged() -> None:
    weight = torch.full((4, 4), 0.37)
    rtn_quantize_(weight, 3)
    assert torch.equal(weight, torch.full((4, 4), 0.37))


@pytest.mark.parametrize("bits", [3, 4])
def test_error_is_at_most_half_a_step_and_levels_are_bounded(bits: int) -> None:
    torch.manual_seed(0)
    original = torch.randn(16, 64)
    weight = original.clone()
    rtn_quantize_(weight, bits, Granularity(block_size=256))
    for block, quantized in zip(original.reshape(-1, 256), weight.reshape(-1, 256), strict=True):
        step = float(block.max() - block.min()) / (2**bits - 1)
        assert float((quantized - block).abs().max()) <= step / 2 + 1e-6
        assert quantized.unique().numel() <= 2**bits


def test_flat_blocks_run_over_the_row_major_weight_with_a_tail() -> None:
    torch.manual_seed(1)
    original = torch.randn(5, 7)  # 35 elements: blocks of 16, 16 and a tail of 3
    weight = original.clone()
    rtn_quantize_(weight, 3, Granularity(block_size=16))
    flat = original.reshape(-1)
    expected = torch.cat(
        [reference_rtn(flat[0:16], 3), reference_rtn(flat[16:32], 3), reference_rtn(flat[32:], 3)]
    )
    torch.testing.assert_close(weight.reshape(-1), expected)


def test_whole_tensor_is_one_block() -> None:
    torch.manual_seed(2)
    original = torch.randn(6, 10)
    weight = original.clone()
    rtn_quantize_(weight, 4)
    torch.testing.assert_close(weight.reshape(-1), reference_rtn(original.reshape(-1), 4))


def test_groups_run_along_the_input_dimension_with_a_tail() -> None:
    torch.manual_seed(3)
    original = torch.randn(3, 10)  # groups of 4: columns 0-3, 4-7 and a tail 8-9 per row
    weight = original.clone()
    rtn_quantize_(weight, 3, Granularity(group_size=4))
    for row in range(3):
        for start, stop in ((0, 4), (4, 8), (8, 10)):
            torch.testing.assert_close(weight[row, start:stop], reference_rtn(original[row, start:stop], 3))


def test_in_out_layout_quantizes_the_transposed_view() -> None:
    torch.manual_seed(4)
    out_in = torch.randn(4, 12)
    in_out = out_in.t().contiguous()
    rtn_quantize_(out_in, 3, Granularity(group_size=4))
    rtn_quantize_(in_out, 3, Granularity(group_size=4), layout="in_out")
    torch.testing.assert_close(in_out.t(), out_in)


def test_bfloat16_weight_is_quantized_through_a_float_copy() -> None:
    torch.manual_seed(5)
    original = torch.randn(4, 8)
    weight = original.to(torch.bfloat16)
    rtn_quantize_(weight, 4)
    assert weight.dtype == torch.bfloat16
    expected = reference_rtn(original.to(torch.bfloat16).float().reshape(-1), 4).to(torch.bfloat16)
    torch.testing.assert_close(weight.reshape(-1), expected)


def test_hold_out_keeps_the_value_exact_and_out_of_the_range() -> None:
    torch.manual_seed(6)
    original = torch.randn(4, 8)
    original[2, 5] = 50.0
    held = original.clone()
    rtn_quantize_(held, 3, Granularity(block_size=8), hold_out=[(2, 5)])
    assert held[2, 5].item() == 50.0
    row = original[2].clone()
    row[5] = row[0]  # any other value of the block: the super weight no longer sets the range
    expected = reference_rtn(row, 3)
    expected[5] = 50.0
    torch.testing.assert_close(held[2], expected)
    plain = original.clone()
    rtn_quantize_(plain, 3, Granularity(block_size=8))
    assert float((plain[2] - original[2]).abs().max()) > float((held[2] - original[2]).abs().max())


def test_restore_writes_back_after_quantizing_with_the_value_in_range() -> None:
    torch.manual_seed(7)
    original = torch.randn(2, 8)
    original[0, 3] = 9.0
    weight = original.clone()
    rtn_quantize_(weight, 3, Granularity(block_size=8), restore=[(0, 3)])
    expected = reference_rtn(original[0], 3)
    expected[3] = 9.0
    torch.testing.assert_close(weight[0], expected)


def test_hold_out_coordinate_outside_the_weight_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="outside"):
        rtn_quantize_(torch.zeros(2, 2), 4, hold_out=[(2, 0)])


def test_zscore_and_percentile_clipping() -> None:
    values = torch.cat([torch.linspace(-1, 1, 999), torch.tensor([100.0])])
    low, high = clip_thresholds(values, ClipSpec("zscore", 2.0))
    std, mean = torch.std_mean(values)
    assert high == pytest.approx(float(mean + 2 * std), rel=1e-5)
    assert low == pytest.approx(float(mean - 2 * std), rel=1e-5)
    low, high = clip_thresholds(values, ClipSpec("percentile", 99.0))
    assert high < 100.0 and low == pytest.approx(-0.98, abs=0.01)
    weight = values.view(1, -1).clone()
    rtn_quantize_(weight, 8, clip=ClipSpec("percentile", 99.0))
    assert float(weight.max()) <= high + 1e-6


@pytest.mark.parametrize(
    ("count", "k"),
    [(884_736, 88), (884_736 + 123, 1), (8_192, 512), (200_000, 600), (300_000, 40_000), (3_000, 5)],
)
@pytest.mark.parametrize("largest", [True, False])
def test_bounded_selection_is_the_whole_tensors_top_k(count: int, k: int, largest: bool) -> None:
    # every path (rows of SELECTION_ROW, slices of SELECTION_SLICE, one call) picks the very same value
    generator = torch.Generator().manual_seed(count + k)
    flat = torch.randn(count, generator=generator).mul_(100).round_()  # ties on purpose
    expected = float(flat.topk(k, largest=largest).values[-1])
    assert _kth_from_end(flat, k, largest=largest) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tensor", Granularity()),
        ("65536", Granularity(block_size=65536)),
        ("g128", Granularity(group_size=128)),
    ],
)
def test_granularity_parsing(text: str, expected: Granularity) -> None:
    assert parse_granularity(text) == expected
    assert parse_granularity(expected.label) == expected


@pytest.mark.parametrize("text", ["", "g0", "-5", "blocks", "0"])
def test_bad_granularity_is_refused(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_granularity(text)


def test_linear_targets_skip_embeddings_and_head() -> None:
    loaded = tiny_model("llama", num_layers=2)
    names = {t.name for t in linear_targets(loaded.model)}
    assert "lm_head" not in names
    assert len(names) == 2 * 7
    gpt2 = tiny_model("gpt2", num_layers=2)
    targets = linear_targets(gpt2.model)
    assert {t.layout for t in targets} == {"in_out"}
    assert len(targets) == 2 * 4


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _assert_bit_identical(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), f"{name} changed"


def _assert_no_hooks(model: nn.Module) -> None:
    for name, module in model.named_modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, f"hook left on {name}"


def test_weights_are_quantized_during_the_pass_and_restored_bit_exactly() -> None:
    loaded = tiny_model("llama", num_layers=2)
    model = loaded.model
    before = _snapshot(model)
    storage = {n: p.data_ptr() for n, p in model.named_parameters()}
    targets = linear_targets(model)
    name = targets[3].name
    seen: list[torch.Tensor] = []

    def grab(module: nn.Module, _args: tuple[object, ...]) -> None:
        seen.append(module.weight.detach().clone())

    ids = torch.arange(4, 40).view(1, -1)
    quantizer = rtn_weight_quantizer(3, Granularity(group_size=16))
    # the grab hook is registered after the quantizer's: it sees the weight the module uses
    with (
        fake_quantized_weights(model, targets, quantizer) as memory,
        torch.inference_mode(),
        forward_hooks(model, {}, {name: grab}),
    ):
        model(input_ids=ids, use_cache=False)
    _assert_bit_identical(model, before)
    # the very tensors come back, not copies of them
    assert {n: p.data_ptr() for n, p in model.named_parameters()} == storage
    _assert_no_hooks(model)
    expected = before[f"{name}.weight"].clone()
    rtn_quantize_(expected, 3, Granularity(group_size=16))
    assert torch.equal(seen[0], expected)
    assert not torch.equal(expected, before[f"{name}.weight"])
    assert memory.peak_ratio <= 1.3
    assert memory.peak_extra_bytes == max(t.weight.numel() * 4 for t in targets)
    # the permanent in-place variant gives the weights the pass used
    rtn_quantize_model_(model, 3, Granularity(group_size=16))
    assert torch.equal(dict(model.named_parameters())[f"{name}.weight"], expected)


def test_quantized_copies_in_a_shared_scratch_buffer_give_the_same_logits() -> None:
    loaded = tiny_model("llama", num_layers=2)
    model = loaded.model
    before = _snapshot(model)
    targets = linear_targets(model)
    quantizer = rtn_weight_quantizer(3, Granularity(group_size=16))
    ids = torch.arange(4, 40).view(1, -1)
    with fake_quantized_weights(model, targets, quantizer), torch.inference_mode():
        expected = model(input_ids=ids, use_cache=False).logits
    scratch: ScratchBuffers = {}
    for _ in range(2):  # the second pass reuses the buffer the first one made
        with (
            fake_quantized_weights(model, targets, quantizer, scratch=scratch) as memory,
            torch.inference_mode(),
        ):
            got = model(input_ids=ids, use_cache=False).logits
        assert torch.equal(got, expected)
    _assert_bit_identical(model, before)
    _assert_no_hooks(model)
    (buffer,) = scratch.values()
    assert buffer.numel() == max(t.weight.numel() for t in targets)
    assert memory.peak_extra_bytes == buffer.numel() * 4


def test_weights_are_restored_when_the_forward_pass_fails() -> None:
    loaded = tiny_model("llama", num_layers=2)
    model = loaded.model
    before = _snapshot(model)
    targets = linear_targets(model)

    def boom(_module: nn.Module, _args: tuple[object, ...], _output: object) -> None:
        raise RuntimeError("boom")

    with (
        pytest.raises(RuntimeError, match="boom"),
        fake_quantized_weights(model, targets, rtn_weight_quantizer(2, Granularity())),
        forward_hooks(model, {"model.layers.0.mlp.gate_proj": boom}),
    ):
        model(input_ids=torch.arange(4, 20).view(1, -1), use_cache=False)
    _assert_bit_identical(model, before)
    _assert_no_hooks(model)


def test_activation_hold_out_keeps_the_exact_value_and_frees_the_range() -> None:
    torch.manual_seed(8)
    x = torch.randn(2, 5, 6)
    x[1, 0, 3] = 1000.0
    naive = fake_quantize_activation(x, 8)
    held = fake_quantize_activation(x, 8, positions=[(1, 0)], channels=[3])
    assert held[1, 0, 3].item() == 1000.0
    others = torch.ones_like(x, dtype=torch.bool)
    others[1, 0, 3] = False
    assert float((held - x)[others].abs().max()) < float((naive - x)[others].abs().max()) / 20
    assert not torch.equal(x, naive) and x[1, 0, 3].item() == 1000.0  # the input itself is never edited


def test_activation_quantization_hooks_are_removed() -> None:
    loaded = tiny_model("llama", num_layers=2)
    targets = linear_targets(loaded.model)
    ids = torch.arange(4, 40).view(1, -1)
    with torch.inference_mode():
        plain = loaded.model(input_ids=ids, use_cache=False).logits
        with fake_quantized_activations(loaded.model, targets, 4):
            quantized = loaded.model(input_ids=ids, use_cache=False).logits
    assert not torch.equal(plain, quantized)
    _assert_no_hooks(loaded.model)


def test_block_partitions_tell_which_granularities_quantize_alike() -> None:
    loaded = tiny_model("llama", num_layers=1)
    targets = linear_targets(loaded.model)  # weights of 64x64, 128x64 and 64x128 ([out, in])
    tensor = block_partition(Granularity(), targets)
    assert block_partition(Granularity(block_size=8192), targets) == tensor
    assert block_partition(Granularity(block_size=1 << 20), targets) == tensor
    assert block_partition(Granularity(block_size=4096), targets) != tensor
    # groups that divide every row are flat blocks of their size; a row-wide group is the row
    assert block_partition(Granularity(group_size=32), targets) == block_partition(
        Granularity(block_size=32), targets
    )
    assert block_partition(Granularity(group_size=48), targets) != block_partition(
        Granularity(block_size=48), targets
    )
    assert block_partition(Granularity(group_size=128), targets) == tuple(
        ("flat", t.in_features) for t in targets
    )
    # and equal partitions really give bit-identical weights
    weight = torch.randn(64, 128)
    by_group, by_block = weight.clone(), weight.clone()
    rtn_quantize_(by_group, 3, Granularity(group_size=32))
    rtn_quantize_(by_block, 3, Granularity(block_size=32))
    assert torch.equal(by_group, by_block)


def test_a_shared_input_is_quantized_once_with_the_same_result() -> None:
    loaded = tiny_model("llama", num_layers=2)
    targets = linear_targets(loaded.model)
    ids = torch.arange(4, 40).view(1, -1)
    calls: list[str] = []

    def separately(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]:
        def pre_hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            calls.append(name)
            return (fake_quantize_activation(args[0], 8), *args[1:])

        return pre_hook

    with torch.inference_mode():
        with forward_hooks(loaded.model, {}, {t.name: separately(t.name) for t in targets}):
            reference = loaded.model(input_ids=ids, use_cache=False).logits
        with fake_quantized_activations(loaded.model, targets, 8):
            shared = loaded.model(input_ids=ids, use_cache=False).logits
    assert len(calls) == len(targets)
    assert torch.equal(reference, shared)
    # the out-of-place path gives the bits of the in-place one
    x = torch.randn(2, 7, 16)
    rows = x.clone().view(1, -1)
    fake_quantize_rows_(rows, 8)
    assert torch.equal(fake_quantize_activation(x, 8), rows.view(x.shape))
