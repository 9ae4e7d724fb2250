"""`protect_super_weights(model, "org/name", client=...)`: coordinates by model id from a live server or the
local catalog, checked (manifest sha256, revision, tensor shapes, stored values) before any write."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from contracts.errors import BundleError
from indexer.bundles.bundle import BundleMismatchError
from indexer.bundles.load import load_bundle
from indexer.bundles.protect import protect_super_weights
from indexer.model.loading import LoadOptions, load_model
from swi.catalog_source import LocalCatalog
from swi.client import Client
from tests.swi.client.conftest import DETECT_ONLY, TINY_REPO, TINY_SHA, Live
from tests.tiny import tiny_model


def _indexed(live: Live, tmp_path: Path) -> Client:
    client = Client(live.url, api_key=live.key, cache_dir=tmp_path / "cache")
    submitted = client.submit(TINY_REPO, options=DETECT_ONLY)
    assert submitted.job is not None
    assert client.wait(submitted.job.id, progress=False, poll_s=0.2, timeout_s=120).status == "succeeded"
    return client


def test_protect_by_model_id_from_a_server_or_the_local_catalog(
    live: Live, tmp_path: Path, tiny_hub_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = load_model(TINY_REPO, TINY_SHA, LoadOptions(cache_dir=str(tiny_hub_cache), offline=True))
    weight = loaded.model.model.layers[1].mlp.down_proj.weight
    before = weight.detach().clone()
    with _indexed(live, tmp_path) as client:
        for source in (client, LocalCatalog()):  # the local catalog is the server's database here
            caplog.clear()
            with (
                caplog.at_level(logging.INFO, logger="indexer.bundles"),
                protect_super_weights(loaded, TINY_REPO, client=source) as protected,
            ):
                assert protected.measured_revision == TINY_SHA
                assert (1, 10, 20) in [r.weight.coordinates for r in protected.weights]
                assert float(weight[10, 20]) == 0.0  # held out while the quantizer runs
                weight.data.mul_(0.5)  # a "quantizer" that changes every weight
            assert torch.equal(weight[10, 20], before[10, 20])  # the exact original is back
            weight.data.copy_(before)
            assert f"measured at revision {TINY_SHA}" in caplog.text
        assert load_bundle(TINY_REPO, source=client).revision == TINY_SHA


def test_a_model_of_other_shapes_is_refused(live: Live, tmp_path: Path) -> None:
    other = tiny_model("llama", num_layers=2, seed=3)  # fewer layers than acme/tiny
    with (
        _indexed(live, tmp_path) as client,
        pytest.raises(BundleMismatchError, match="the bundle's model has 6 layers, this one 2"),
        protect_super_weights(other, TINY_REPO, client=client, check_revision=False),
    ):
        pass
    with pytest.raises(BundleError, match="needs client="), protect_super_weights(other, TINY_REPO):
        pass
