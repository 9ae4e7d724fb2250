"""The published data set as `reported` entries with all their sources (`swi catalog seed`, idempotent).

The loader is written against the few columns it writes (not the ORM models) because the data migration
`0004` calls it too, on a catalog at that revision: a later nullable column does not change what it does.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from catalog.models import utcnow
from catalog.published import PublishedModel, primary_source, published_models
from contracts.identifiers import split_model_id
from contracts.manifest import down_proj_module, gguf_down_tensor
from contracts.status import SuperWeightStatus

_MODELS = sa.table(
    "models",
    sa.column("id", sa.Integer()),
    sa.column("hub_id", sa.String()),
    sa.column("org", sa.String()),
    sa.column("name", sa.String()),
    sa.column("model_type", sa.String()),
    sa.column("family", sa.String()),
    sa.column("source_kind", sa.String()),
    sa.column("base_model_id", sa.Integer()),
    sa.column("relation", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
_WEIGHTS = sa.table(
    "super_weights",
    sa.column("id", sa.Integer()),
    sa.column("model_id", sa.Integer()),
    sa.column("run_id", sa.Integer()),
    sa.column("layer", sa.Integer()),
    sa.column("row", sa.Integer()),
    sa.column("col", sa.Integer()),
    sa.column("status", sa.String()),
    sa.column("hf_tensor", sa.String()),
    sa.column("gguf_tensor", sa.String()),
    sa.column("gguf_index", sa.JSON()),
    sa.column("citation", sa.Text()),
    sa.column("citation_source", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
_SOURCES = sa.table(
    "reported_sources",
    sa.column("super_weight_id", sa.Integer()),
    sa.column("kind", sa.String()),
    sa.column("locator", sa.String()),
    sa.column("citation", sa.Text()),
    sa.column("source_file", sa.String()),
    sa.column("commit", sa.String()),
    sa.column("evidence", sa.Text()),
    sa.column("doubtful", sa.Boolean()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


@dataclass(frozen=True)
class SeedReport:
    """What the seed added or corrected (all 0 when it was already loaded)."""

    models_added: int
    coordinates_added: int
    sources_added: int = 0
    labels_fixed: int = 0


def load_seed(session: Session) -> SeedReport:
    """Insert the published models, coordinates and sources that are missing; the caller commits."""
    report = apply_published(session.connection())
    session.expire_all()
    return report


def apply_published(connection: Connection) -> SeedReport:
    """Bring the catalog's reported entries up to the shipped data set (idempotent; no commit)."""
    models_added = coordinates_added = sources_added = labels_fixed = 0
    published = published_models()
    ids = dict(connection.execute(sa.select(_MODELS.c.hub_id, _MODELS.c.id)).all())
    for entry in published:
        if entry.hub_id not in ids:
            ids[entry.hub_id] = _insert_model(connection, entry)
            models_added += 1
    for entry in published:
        model_id = ids[entry.hub_id]
        changed = _link_base(connection, entry, model_id, ids)
        for (layer, row, col), records in entry.coordinates.items():
            primary = primary_source(records)
            found = connection.execute(
                sa.select(_WEIGHTS.c.id, _WEIGHTS.c.citation_source).where(
                    _WEIGHTS.c.model_id == model_id,
                    _WEIGHTS.c.run_id.is_(None),
                    _WEIGHTS.c.layer == layer,
                    _WEIGHTS.c.row == row,
                    _WEIGHTS.c.col == col,
                )
            ).first()
            if found is None:
                weight_id = connection.execute(
                    _WEIGHTS.insert()
                    .values(
                        model_id=model_id,
                        run_id=None,
                        layer=layer,
                        row=row,
                        col=col,
                        status=SuperWeightStatus.REPORTED.value,
                        hf_tensor=f"{down_proj_module(layer)}.weight",
                        gguf_tensor=gguf_down_tensor(layer),
                        gguf_index=[col, row],
                        citation=primary.citation,
                        citation_source=primary.kind.value,
                        created_at=utcnow(),
                    )
                    .returning(_WEIGHTS.c.id)
                ).scalar_one()
                coordinates_added += 1
                changed = True
            else:
                weight_id = found.id
                if found.citation_source != primary.kind.value:
                    # e.g. OLMo-1B-0724's (2, 1764, 8041): the paper's table says layer 1, its code layer 2
                    connection.execute(
                        _WEIGHTS.update()
                        .where(_WEIGHTS.c.id == weight_id)
                        .values(citation=primary.citation, citation_source=primary.kind.value)
                    )
                    labels_fixed += 1
                    changed = True
            present = set(
                connection.execute(
                    sa.select(_SOURCES.c.locator).where(_SOURCES.c.super_weight_id == weight_id)
                ).scalars()
            )
            for record in records:
                if record.locator in present:
                    continue
                connection.execute(
                    _SOURCES.insert().values(
                        super_weight_id=weight_id,
                        kind=record.kind.value,
                        locator=record.locator,
                        citation=record.citation,
                        source_file=record.source_file,
                        commit=record.commit,
                        evidence=record.evidence,
                        doubtful=record.doubtful,
                        created_at=utcnow(),
                    )
                )
                sources_added += 1
                changed = True
        if changed:
            # cached API pages of a model are validated against this stamp
            connection.execute(_MODELS.update().where(_MODELS.c.id == model_id).values(updated_at=utcnow()))
    return SeedReport(models_added, coordinates_added, sources_added, labels_fixed)


def _insert_model(connection: Connection, entry: PublishedModel) -> int:
    org, name = split_model_id(entry.hub_id)
    now = utcnow()
    return int(
        connection.execute(
            _MODELS.insert()
            .values(
                hub_id=entry.hub_id,
                org=org,
                name=name,
                model_type=entry.model_type,
                family=entry.family,
                source_kind="hub",
                created_at=now,
                updated_at=now,
            )
            .returning(_MODELS.c.id)
        ).scalar_one()
    )


def _link_base(connection: Connection, entry: PublishedModel, model_id: int, ids: dict[str, int]) -> bool:
    """Fill in a missing architecture, family and base model (never overwrite what a run recorded)."""
    row = connection.execute(
        sa.select(_MODELS.c.model_type, _MODELS.c.family, _MODELS.c.base_model_id).where(
            _MODELS.c.id == model_id
        )
    ).one()
    values: dict[str, object] = {}
    if row.model_type is None:
        values["model_type"] = entry.model_type
    if row.family is None:
        values["family"] = entry.family
    if entry.base_model is not None and entry.relation is not None and row.base_model_id is None:
        values.update(base_model_id=ids[entry.base_model], relation=entry.relation.value)
    if values:
        connection.execute(_MODELS.update().where(_MODELS.c.id == model_id).values(**values))
    return bool(values)
