"""The local catalog as a coordinate source: the manifests the API serves, read without a server.

    from indexer.bundles.protect import protect_super_weights
    from swi.catalog_source import LocalCatalog

    with protect_super_weights(model, "meta-llama/Llama-2-7b-hf", client=LocalCatalog()):
        quantize(model)

`swi.client.Client` is the same kind of source for a running service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from catalog.models import CatalogModel


def catalog_manifest(session: Session, entry: CatalogModel, revision: str | None = None) -> dict[str, Any]:
    """The schema-1 manifest of a catalog model at `revision` (default: the newest measured one)."""
    from api import views
    from catalog.repositories import CoordinateRepository

    return views.bundle_manifest(CoordinateRepository(session).coordinates(entry, revision))


class LocalCatalog:
    """Coordinates by model id from the configured catalog (`SWI_DATABASE_URL`, default the SQLite file)."""

    def bundle_manifest(self, model_id: str, revision: str | None = None) -> dict[str, Any]:
        """The model's manifest; `catalog.errors.NotFoundError` when the catalog does not know it."""
        from catalog.repositories import ModelRepository
        from contracts.identifiers import validate_model_id
        from swi.catalog_cmd import catalog_session

        with catalog_session() as session:
            entry = ModelRepository(session).get(validate_model_id(model_id))
            return catalog_manifest(session, entry, revision)
