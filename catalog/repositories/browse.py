"""Queries of the web pages that the API does not need: filter choices and the layers of a page of models."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import CatalogModel, SuperWeight
from contracts.status import UNNEEDED_STATUSES


@dataclass(frozen=True)
class Facets:
    """The values the catalog can be filtered by (sorted, without empty ones)."""

    architectures: list[str]
    families: list[str]


class BrowseRepository:
    """Read-only helpers of the catalog's web pages."""

    def __init__(self, session: Session):
        self.session = session

    def facets(self) -> Facets:
        """Distinct architectures (`model_type`) and families (both columns are indexed)."""
        architectures = self.session.scalars(
            select(CatalogModel.model_type)
            .where(CatalogModel.model_type.is_not(None))
            .distinct()
            .order_by(CatalogModel.model_type)
        )
        families = self.session.scalars(
            select(CatalogModel.family)
            .where(CatalogModel.family.is_not(None))
            .distinct()
            .order_by(CatalogModel.family)
        )
        return Facets(architectures=[a for a in architectures if a], families=[f for f in families if f])

    def layers_by_model(self, model_ids: list[int]) -> dict[int, list[int]]:
        """The layers each model's super weights sit in (reported or measured, not inert ones)."""
        layers: dict[int, set[int]] = defaultdict(set)
        if not model_ids:
            return {}
        rows = self.session.execute(
            select(SuperWeight.model_id, SuperWeight.layer)
            .where(SuperWeight.model_id.in_(model_ids), SuperWeight.status.not_in(UNNEEDED_STATUSES))
            .distinct()
        )
        for model_id, layer in rows:
            layers[model_id].add(layer)
        return {model_id: sorted(found) for model_id, found in layers.items()}
