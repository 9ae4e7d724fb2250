"""Helpers for test suites (catalog, API, workers): throw-away PostgreSQL databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from catalog.models import Base


@contextmanager
def temporary_postgres_database(admin_url: str, prefix: str = "swi_test") -> Iterator[str]:
    """Create a uniquely named database next to `admin_url`'s, yield its URL, drop it afterwards."""
    url = make_url(admin_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def truncate_all(connection_url: str) -> None:
    """Empty every catalog table (PostgreSQL: TRUNCATE; SQLite: DELETE), keeping the schema."""
    engine = create_engine(connection_url)
    try:
        with engine.begin() as connection:
            tables = [table.name for table in Base.metadata.sorted_tables]
            if connection.dialect.name == "postgresql":
                connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            else:
                for table in reversed(tables):
                    connection.execute(text(f"DELETE FROM {table}"))
    finally:
        engine.dispose()


def sample_detection(
    coordinates: list[tuple[int, int, int]] | None = None,
    *,
    model_type: str = "llama",
    num_layers: int = 4,
    revision: str | None = None,
) -> dict[str, Any]:
    """A `DetectionResult.to_dict()`-shaped document with planted coordinates (for tests of the catalog)."""
    coordinates = coordinates if coordinates is not None else [(1, 5, 7)]
    weights = [
        {
            "layer": layer,
            "row": row,
            "col": col,
            "value": -1.5 - index,
            "dtype": "float16",
            "hf_tensor": f"model.layers.{layer}.mlp.down_proj.weight",
            "gguf_tensor": f"blk.{layer}.ffn_down.weight",
            "gguf_index": [col, row],
            "input_activation": 40.0,
            "output_activation": -900.0,
            "token": 0,
            "magnitude_rank": 1,
            "iteration": index,
        }
        for index, (layer, row, col) in enumerate(coordinates)
    ]
    stats = [
        {
            "layer": layer,
            "input_max": 1.0 + layer,
            "input_value": 1.0,
            "input_token": 0,
            "input_channel": 3,
            "output_max": 2.0,
            "output_value": -2.0,
            "output_token": 0,
            "output_channel": 5,
            "residual_max": 3.0,
            "residual_token": 0,
            "residual_channel": 5,
        }
        for layer in range(num_layers)
    ]
    first = coordinates[0] if coordinates else None
    return {
        "super_weights": weights,
        "super_activation": (
            {
                "channel": first[1],
                "token": 0,
                "magnitude_by_layer": [1.0] * num_layers,
                "peak_layer": first[0],
                "peak_magnitude": 900.0,
                "first_layer": first[0],
            }
            if first
            else None
        ),
        "layer_profile": [
            {"iteration": 0, "removed": [], "layers": stats},
            {"iteration": 1, "removed": [list(c) for c in coordinates], "layers": stats},
        ],
        "provenance": {
            "model": "test/model",
            "revision": revision,
            "source_kind": "hub",
            "model_type": model_type,
            "num_layers": num_layers,
            "parameter_count": 1234,
            "detector_version": "1.0.0",
            "wall_time_s": 0.5,
        },
    }


def sample_validation(verdicts: dict[tuple[int, int, int], str]) -> dict[str, Any]:
    """A validation document deciding each coordinate (`confirmed` or `inert`), with one result each."""
    corpus = {"name": "pydoc_data.topics", "sha256": "0" * 64, "tokens": 2048, "window": 256}
    return {
        "model_verdict": "confirmed" if "confirmed" in verdicts.values() else "inert",
        "verdicts": [
            {"layer": c[0], "row": c[1], "col": c[2], "verdict": v, "reason": f"ratio for {v}"}
            for c, v in verdicts.items()
        ],
        "results": [
            {
                "experiment": "prune_super_weight",
                "parameters": {"budget_tokens": 2048},
                "metric": "perplexity",
                "value": 500.0 if v == "confirmed" else 10.1,
                "baseline": 10.0,
                "ratio": 50.0 if v == "confirmed" else 1.01,
                "corpus": corpus,
                "coordinates": list(c),
            }
            for c, v in verdicts.items()
        ]
        + [
            {
                "experiment": "rtn_holdout",
                "parameters": {"bits": 4, "block": 128},
                "metric": "perplexity",
                "value": 11.0,
                "baseline": 10.0,
                "ratio": 1.1,
                "corpus": corpus,
                "coordinates": None,
            }
        ],
    }
