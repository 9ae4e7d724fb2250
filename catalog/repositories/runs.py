"""Reading index runs: one run, a model's newest (or its builds'), its rows, and runs by key."""

from __future__ import annotations

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from catalog.errors import NotFoundError
from catalog.models import (
    CatalogModel,
    IndexRun,
    Job,
    LayerProfile,
    QualityResult,
    Revision,
    SuperActivation,
    SuperWeight,
)
from catalog.repositories.models import ModelRepository
from contracts.identifiers import is_commit_sha, is_local_revision
from contracts.jobs import RequestKey, RunKey
from contracts.lineage import RelationKind
from contracts.status import RunStatus


def successful_run_id(session: Session, model: str, sha: str, run_key: RunKey) -> int | None:
    """The id of the successful run of `model` at `sha` with this run key (effective settings), if any: the
    run a job the workers picked up completes with instead of indexing again."""
    return _newest_successful_run(session, model, sha, IndexRun.config_hash == run_key)


def run_for_request(session: Session, model: str, sha: str, request_key: RequestKey) -> int | None:
    """The id of the newest successful run of `model` at `sha` made for this request, if any: the run a
    submission is answered with. Several runs may share a request (workers resolved it differently)."""
    return _newest_successful_run(session, model, sha, IndexRun.request_key == request_key)


def _newest_successful_run(session: Session, model: str, sha: str, key: ColumnElement[bool]) -> int | None:
    return session.scalars(
        select(IndexRun.id)
        .join(Revision, IndexRun.revision_id == Revision.id)
        .join(CatalogModel, IndexRun.model_id == CatalogModel.id)
        .where(CatalogModel.hub_id == model, Revision.sha == sha, IndexRun.status == RunStatus.SUCCEEDED)
        .where(key)
        .order_by(IndexRun.created_at.desc(), IndexRun.id.desc())
        .limit(1)
    ).first()


class RunRepository:
    """Read index runs and their rows."""

    def __init__(self, session: Session):
        self.session = session
        self.models = ModelRepository(session)

    def get(self, run_id: int) -> IndexRun:
        """The run, else `NotFoundError`."""
        run = self.session.get(IndexRun, run_id)
        if run is None:
            raise NotFoundError(f"no index run with id {run_id}")
        return run

    def latest_run(
        self, model: CatalogModel, revision: str | None = None
    ) -> tuple[IndexRun | None, Revision | None]:
        """The newest successful run of the model (at `revision`: a sha, or the ref it was resolved from)."""
        query = (
            select(IndexRun, Revision)
            .join(Revision, IndexRun.revision_id == Revision.id)
            .where(IndexRun.model_id == model.id, IndexRun.status == RunStatus.SUCCEEDED)
            .order_by(IndexRun.created_at.desc(), IndexRun.id.desc())
            .limit(1)
        )
        if revision is not None:
            query = query.where(
                Revision.sha == revision
                if is_commit_sha(revision) or is_local_revision(revision)
                else Revision.resolved_from == revision
            )
        row = self.session.execute(query).first()
        if row is None:
            if revision is not None:
                raise NotFoundError(f"model {model.hub_id!r} has no index run at revision {revision!r}")
            return None, None
        return row[0], row[1]

    def latest_build_run(self, model: CatalogModel) -> IndexRun | None:
        """The newest successful run of one of the model's quantized builds."""
        return self.session.scalars(
            select(IndexRun)
            .join(CatalogModel, IndexRun.model_id == CatalogModel.id)
            .where(
                CatalogModel.base_model_id == model.id,
                CatalogModel.relation == RelationKind.QUANTIZED_BUILD,
                IndexRun.status == RunStatus.SUCCEEDED,
            )
            .order_by(IndexRun.created_at.desc(), IndexRun.id.desc())
            .limit(1)
        ).first()

    def runs_with_builds(self, model: CatalogModel, limit: int = 100) -> list[IndexRun]:
        """The successful runs of the model and of its quantized builds, newest first."""
        builds = select(CatalogModel.id).where(
            CatalogModel.base_model_id == model.id, CatalogModel.relation == RelationKind.QUANTIZED_BUILD
        )
        return list(
            self.session.scalars(
                select(IndexRun)
                .where(
                    (IndexRun.model_id == model.id) | IndexRun.model_id.in_(builds),
                    IndexRun.status == RunStatus.SUCCEEDED,
                )
                .order_by(IndexRun.created_at.desc(), IndexRun.id.desc())
                .limit(limit)
            )
        )

    def listed_runs(self, model: CatalogModel, limit: int = 100) -> list[IndexRun]:
        """The runs a model page lists: its own (failed too) and its builds' successful ones, newest first."""
        own = self.models.runs(model, limit)
        merged = {run.id: run for run in [*own, *self.runs_with_builds(model, limit)]}
        return sorted(merged.values(), key=lambda r: (r.created_at, r.id), reverse=True)[:limit]

    def weights(self, run: IndexRun) -> list[SuperWeight]:
        """The run's super weights in coordinate order."""
        return list(
            self.session.scalars(
                select(SuperWeight)
                .where(SuperWeight.run_id == run.id)
                .order_by(SuperWeight.layer, SuperWeight.row, SuperWeight.col)
            )
        )

    def quality_results(self, run: IndexRun) -> list[QualityResult]:
        """All measurements of the run."""
        return list(
            self.session.scalars(
                select(QualityResult).where(QualityResult.run_id == run.id).order_by(QualityResult.id)
            )
        )

    def super_activation(self, run: IndexRun) -> SuperActivation | None:
        """The run's super activation, if one was found."""
        return self.session.scalars(
            select(SuperActivation).where(SuperActivation.run_id == run.id)
        ).one_or_none()

    def layer_profile(self, run: IndexRun) -> list[LayerProfile]:
        """The per-layer profile rows, by iteration then layer."""
        return list(
            self.session.scalars(
                select(LayerProfile)
                .where(LayerProfile.run_id == run.id)
                .order_by(LayerProfile.iteration, LayerProfile.layer)
            )
        )

    def job_of(self, run: IndexRun) -> Job | None:
        """The first job that produced the run, if any."""
        return self.session.scalars(
            select(Job).where(Job.run_id == run.id).order_by(Job.created_at).limit(1)
        ).first()

    def find_run(self, model: str, sha: str, run_key: RunKey) -> int | None:
        """The id of the successful run of `model` at `sha` with these effective settings, if any."""
        return successful_run_id(self.session, model, sha, run_key)

    def find_run_for_request(self, model: str, sha: str, request_key: RequestKey) -> int | None:
        """The id of the newest successful run of `model` at `sha` made for this request, if any."""
        return run_for_request(self.session, model, sha, request_key)
