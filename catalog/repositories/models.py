"""Models: lookup, get-or-create, filtered listing with keyset (cursor) pagination."""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, bindparam, exists, func, or_, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from catalog.errors import InvalidInputError, NotFoundError
from catalog.models import CatalogModel, IndexRun, ReportedSource, Revision, SuperWeight, UtcDateTime, utcnow
from contracts.identifiers import split_model_id, validate_model_id
from contracts.lineage import RelationKind, Reproduction, SourceKind
from contracts.status import RunStatus, SuperWeightStatus

ModelSort = Literal["name", "-name", "updated", "-updated"]
MODEL_SORTS: tuple[ModelSort, ...] = ("name", "-name", "updated", "-updated")


@dataclass(frozen=True)
class ModelFilter:
    """Filters of `GET /v1/models` (all optional, combined with AND)."""

    architecture: str | None = None
    family: str | None = None
    status: str | None = None
    layer: int | None = None
    row: int | None = None
    has_super_weights: bool | None = None
    q: str | None = None
    source_kind: SourceKind | None = None  # has a reported entry from a source of this kind
    disputed: bool | None = None  # has (or has no) reported weight whose sources disagree on the layer
    base_model: str | None = None  # derives from this model (its fine-tunes, merges and builds)
    reproduction: Reproduction | None = None  # a reported coordinate some run (or a build's) decided so


@dataclass(frozen=True)
class ModelSummary:
    """A model with the counts of its super-weight entries by status."""

    model: CatalogModel
    status_counts: dict[str, int] = field(default_factory=dict)
    latest_revision: str | None = None

    @property
    def super_weight_count(self) -> int:
        """Number of super-weight entries (reported and measured)."""
        return sum(self.status_counts.values())


@dataclass(frozen=True)
class ModelPage:
    """One page of models and the cursor of the next one."""

    items: list[ModelSummary]
    next_cursor: str | None


def _encode_cursor(sort: ModelSort, value: Any, row_id: int) -> str:
    raw = json.dumps({"s": sort, "v": value, "i": row_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: ModelSort) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("s") != sort or not isinstance(data.get("i"), int):
            raise ValueError("cursor does not match")
        value = data["v"]
        if sort in ("updated", "-updated"):
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError("naive timestamp")
        elif not isinstance(value, str):
            raise ValueError("bad cursor value")
        return value, data["i"]
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            "invalid cursor: pass back the next_cursor of the previous page, with the same sort"
        ) from exc


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class ModelRepository:
    """Queries about models."""

    def __init__(self, session: Session):
        self.session = session

    def find(self, hub_id: str) -> CatalogModel | None:
        """The model with this id, or None."""
        return self.session.scalars(select(CatalogModel).where(CatalogModel.hub_id == hub_id)).one_or_none()

    def get(self, hub_id: str) -> CatalogModel:
        """The model with this id, else `NotFoundError`."""
        model = self.find(hub_id)
        if model is None:
            raise NotFoundError(f"model {hub_id!r} is not in the catalog")
        return model

    def get_or_create(self, hub_id: str, **attributes: Any) -> CatalogModel:
        """The model with this id, created if missing (safe against a concurrent creation)."""
        existing = self.find(hub_id)
        if existing is not None:
            return existing
        org, name = split_model_id(hub_id)
        try:
            with self.session.begin_nested():
                model = CatalogModel(hub_id=hub_id, org=org, name=name, **attributes)
                self.session.add(model)
        except IntegrityError:
            return self.get(hub_id)
        return model

    def link_base(
        self, model: CatalogModel, base_hub_id: str, relation: RelationKind, quantization: str | None = None
    ) -> CatalogModel:
        """Record that `model` derives from `base_hub_id` (created if missing) as `relation`."""
        if validate_model_id(base_hub_id) == model.hub_id:
            raise InvalidInputError(f"{model.hub_id} cannot be a build or fine-tune of itself")
        base = self.get_or_create(base_hub_id)
        if base.base_model_id == model.id:
            raise InvalidInputError(f"{base_hub_id} already derives from {model.hub_id}")
        self.session.flush()
        model.base = base
        model.base_model_id = base.id
        model.relation = RelationKind(relation).value
        model.quantization = quantization[:16] if quantization else None
        base.updated_at = utcnow()  # the base model's page lists its builds and fine-tunes
        return base

    def derived(self, model: CatalogModel) -> list[CatalogModel]:
        """The models that derive from `model` (its fine-tunes, merges and builds), by id."""
        return list(
            self.session.scalars(
                select(CatalogModel)
                .where(CatalogModel.base_model_id == model.id)
                .order_by(CatalogModel.hub_id)
            )
        )

    def latest_revision(self, model: CatalogModel) -> Revision | None:
        """The revision of the model's newest successful run, else its newest revision."""
        run_revision = self.session.scalars(
            select(Revision)
            .join(IndexRun, IndexRun.revision_id == Revision.id)
            .where(Revision.model_id == model.id, IndexRun.status == RunStatus.SUCCEEDED)
            .order_by(IndexRun.created_at.desc(), IndexRun.id.desc())
            .limit(1)
        ).first()
        if run_revision is not None:
            return run_revision
        return self.session.scalars(
            select(Revision)
            .where(Revision.model_id == model.id)
            .order_by(Revision.resolved_at.desc(), Revision.id.desc())
            .limit(1)
        ).first()

    def runs(self, model: CatalogModel, limit: int = 100) -> list[IndexRun]:
        """The model's runs, newest first."""
        return list(
            self.session.scalars(
                select(IndexRun)
                .where(IndexRun.model_id == model.id)
                .order_by(IndexRun.created_at.desc(), IndexRun.id.desc())
                .limit(limit)
            )
        )

    def status_counts(self, model_ids: list[int]) -> dict[int, dict[str, int]]:
        """Super-weight entries per model and status (reported ones and those of each model's runs)."""
        counts: dict[int, dict[str, int]] = defaultdict(dict)
        if not model_ids:
            return counts
        rows = self.session.execute(
            select(SuperWeight.model_id, SuperWeight.status, func.count())
            .where(SuperWeight.model_id.in_(model_ids))
            .group_by(SuperWeight.model_id, SuperWeight.status)
        )
        for model_id, status, count in rows:
            counts[model_id][status] = count
        return counts

    def search(
        self,
        filters: ModelFilter,
        *,
        sort: ModelSort = "name",
        cursor: str | None = None,
        limit: int = 50,
    ) -> ModelPage:
        """One page of models matching `filters`, in `sort` order, after `cursor`."""
        if sort not in MODEL_SORTS:
            raise InvalidInputError(f"sort must be one of {', '.join(MODEL_SORTS)}")
        query = self._filtered(filters)
        descending = sort.startswith("-")
        if sort in ("name", "-name"):
            query = query.order_by(CatalogModel.hub_id.desc() if descending else CatalogModel.hub_id)
            if cursor:
                value, _ = _decode_cursor(cursor, sort)
                query = query.where(
                    CatalogModel.hub_id < value if descending else CatalogModel.hub_id > value
                )
        else:
            order = (CatalogModel.updated_at, CatalogModel.id)
            query = query.order_by(*(c.desc() for c in order) if descending else order)
            if cursor:
                value, row_id = _decode_cursor(cursor, sort)
                key = tuple_(CatalogModel.updated_at, CatalogModel.id)
                bound = tuple_(
                    bindparam("cursor_at", value, type_=UtcDateTime()), bindparam("cursor_id", row_id)
                )
                query = query.where(key < bound if descending else key > bound)
        models = list(self.session.scalars(query.limit(limit + 1)))
        next_cursor = None
        if len(models) > limit:
            models = models[:limit]
            last = models[-1]
            next_cursor = (
                _encode_cursor(sort, last.hub_id, last.id)
                if sort in ("name", "-name")
                else _encode_cursor(sort, last.updated_at.isoformat(), last.id)
            )
        counts = self.status_counts([m.id for m in models])
        return ModelPage(
            items=[ModelSummary(model=m, status_counts=dict(counts.get(m.id, {}))) for m in models],
            next_cursor=next_cursor,
        )

    def _filtered(self, filters: ModelFilter) -> Select[CatalogModel]:
        query = select(CatalogModel)
        if filters.architecture:
            query = query.where(CatalogModel.model_type == filters.architecture)
        if filters.family:
            query = query.where(func.lower(CatalogModel.family) == filters.family.lower())
        if filters.q:
            pattern = f"%{_escape_like(filters.q.lower())}%"
            query = query.where(
                or_(
                    func.lower(CatalogModel.hub_id).like(pattern, escape="\\"),
                    func.lower(func.coalesce(CatalogModel.family, "")).like(pattern, escape="\\"),
                )
            )
        weight_conditions = [SuperWeight.model_id == CatalogModel.id]
        if filters.status:
            weight_conditions.append(SuperWeight.status == filters.status)
        if filters.layer is not None:
            weight_conditions.append(SuperWeight.layer == filters.layer)
        if filters.row is not None:
            weight_conditions.append(SuperWeight.row == filters.row)
        if filters.source_kind is not None:
            weight_conditions.append(
                exists().where(
                    ReportedSource.super_weight_id == SuperWeight.id,
                    ReportedSource.kind == filters.source_kind,
                )
            )
        if len(weight_conditions) > 1 or filters.has_super_weights:
            query = query.where(exists().where(and_(*weight_conditions)))
        if filters.has_super_weights is False:
            query = query.where(~exists().where(SuperWeight.model_id == CatalogModel.id))
        if filters.disputed is not None:
            other = aliased(SuperWeight)
            dispute = exists().where(
                SuperWeight.model_id == CatalogModel.id,
                SuperWeight.run_id.is_(None),
                exists().where(
                    other.model_id == SuperWeight.model_id,
                    other.run_id.is_(None),
                    other.row == SuperWeight.row,
                    other.col == SuperWeight.col,
                    other.layer != SuperWeight.layer,
                ),
            )
            query = query.where(dispute if filters.disputed else ~dispute)
        if filters.reproduction is not None:
            query = query.where(_reproduction_condition(Reproduction(filters.reproduction)))
        if filters.base_model is not None:
            base = aliased(CatalogModel)
            query = query.where(
                exists().where(
                    base.id == CatalogModel.base_model_id,
                    base.hub_id == validate_model_id(filters.base_model),
                )
            )
        return query

    def touch(self, model: CatalogModel) -> None:
        """Mark the model as updated now (its listing order and ETags move)."""
        model.updated_at = utcnow()


def _reproduction_condition(reproduction: Reproduction) -> ColumnElement[bool]:
    """A reported coordinate of the model that its runs, or its builds' runs, mark `reproduction`."""
    reported, measured, build = aliased(SuperWeight), aliased(SuperWeight), aliased(CatalogModel)
    # correlated with the listed model explicitly: these selects sit two levels inside the query
    builds = (
        select(build.id)
        .where(build.base_model_id == CatalogModel.id, build.relation == RelationKind.QUANTIZED_BUILD)
        .correlate(CatalogModel)
    )
    runs = (
        select(IndexRun.id)
        .where(
            IndexRun.status == RunStatus.SUCCEEDED,
            or_(IndexRun.model_id == CatalogModel.id, IndexRun.model_id.in_(builds)),
        )
        .correlate(CatalogModel)
    )
    same_place = and_(
        measured.run_id.in_(runs),
        measured.layer == reported.layer,
        measured.row == reported.row,
        measured.col == reported.col,
    )
    decided: ColumnElement[bool]
    if reproduction == Reproduction.REPRODUCED:
        decided = exists().where(same_place, measured.status != SuperWeightStatus.INERT)
    elif reproduction == Reproduction.CONTRADICTED:
        decided = exists().where(same_place, measured.status == SuperWeightStatus.INERT)
    elif reproduction == Reproduction.NOT_FOUND:
        decided = and_(exists(runs), ~exists().where(same_place))
    else:
        decided = ~exists(runs)
    return exists().where(reported.model_id == CatalogModel.id, reported.run_id.is_(None), decided)
