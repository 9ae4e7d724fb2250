"""Recording an index run: a detection (and its validation) stored exactly once, keyed by job and run key."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from catalog.errors import InvalidInputError
from catalog.models import (
    CatalogModel,
    IndexRun,
    LayerProfile,
    QualityResult,
    Revision,
    SuperActivation,
    SuperWeight,
    utcnow,
)
from catalog.repositories.coordinates import Coordinates
from catalog.repositories.jobs import JobRepository
from catalog.repositories.models import ModelRepository
from catalog.repositories.runs import RunRepository
from contracts.identifiers import config_hash, validate_model_id, validate_revision_digest
from contracts.jobs import RunSettings
from contracts.lineage import RelationKind
from contracts.results import DetectionResult, Provenance
from contracts.status import RunStatus, SuperWeightStatus
from contracts.validation import ValidationDocument


@dataclass(frozen=True)
class RecordedRun:
    """The outcome of `record_run`: the run id, and whether this call created it."""

    run_id: int
    created: bool


def record_run(
    session: Session,
    job_id: uuid.UUID | str | None,
    model_id: str,
    revision_sha: str,
    resolved_from: str | None,
    config: Mapping[str, Any],
    detection: DetectionResult | Mapping[str, Any],
    validation: ValidationDocument | Mapping[str, Any] | None = None,
    **details: Any,
) -> RecordedRun:
    """Store one run (see `RunRecorder.record_run`); the caller commits."""
    return RunRecorder(session).record_run(
        job_id=job_id,
        model_id=model_id,
        revision_sha=revision_sha,
        resolved_from=resolved_from,
        config=config,
        detection=detection,
        validation=validation,
        **details,
    )


class RunRecorder:
    """The write path of index runs; the job a run completes moves to `succeeded` through `JobRepository`."""

    def __init__(self, session: Session):
        self.session = session
        self.models = ModelRepository(session)
        self.jobs = JobRepository(session)

    def record_run(
        self,
        *,
        model_id: str,
        revision_sha: str,
        config: Mapping[str, Any],
        detection: DetectionResult | Mapping[str, Any],
        validation: ValidationDocument | Mapping[str, Any] | None = None,
        job_id: uuid.UUID | str | None = None,
        resolved_from: str | None = None,
        timings: Mapping[str, float] | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        family: str | None = None,
        base_model: str | None = None,
        relation: RelationKind | None = None,
        quantization: str | None = None,
        settings: RunSettings | None = None,
    ) -> RecordedRun:
        """Store a detection (and its validation) once, keyed by the job and by (model, sha, run key).

        - `model_id`: the catalog id `org/name` (hub id; local sources use `local/<file or folder name>`).
        - `revision_sha`: the 40-hex commit sha, or `sha256:<hex>` of a local file's content.
        - `config`: the request configuration (`contracts.jobs.versioned_run_config`); its hash is the
          run's request key.
        - `settings`: the effective settings the worker used (`contracts.jobs.RunSettings`); their hash is the
          run key. Without them (a run recorded from documents alone) the request key is the run key too.
        - `detection`: a `contracts.results.DetectionResult` (or its JSON); `validation`: a
          `contracts.validation.ValidationDocument` (or its JSON), or None.
        - `job_id`: the job this run completes; it is marked `succeeded` and linked to the run.
        - `base_model`, `relation`, `quantization`: the model derives from `base_model` (created if missing)
          as a fine-tune, merge or quantized build (of that quantization type, e.g. `Q4_1`).
        A repeated call (same job, or same model + sha + run key) returns the existing run and writes nothing
        else. Everything happens in the caller's transaction: the caller commits.
        """
        validate_model_id(model_id)
        validate_revision_digest(revision_sha)
        try:
            parsed = (
                detection
                if isinstance(detection, DetectionResult)
                else DetectionResult.model_validate(dict(detection))
            )
            checked = (
                validation
                if isinstance(validation, ValidationDocument) or validation is None
                else ValidationDocument.model_validate(dict(validation))
            )
        except ValidationError as exc:
            raise InvalidInputError(f"invalid result document: {exc.errors()[0]['msg']}") from exc
        request = config_hash(config)
        digest = settings.key() if settings is not None else request
        job = self.jobs.lock(job_id) if job_id is not None else None
        if job is not None and job.run_id is not None:
            return RecordedRun(run_id=job.run_id, created=False)

        provenance = parsed.provenance
        model = self.models.get_or_create(model_id, source_kind=provenance.source_kind)
        self._update_model(model, provenance, family=family)
        if base_model is not None:
            relation = relation or RelationKind.FINE_TUNE
            if relation == RelationKind.QUANTIZED_BUILD and quantization is None:
                quantization = provenance.quantization
            self.models.link_base(model, base_model, relation, quantization)
        revision = self._revision(model, revision_sha, resolved_from or provenance.resolved_from)

        existing = self._run_for(revision, digest)
        if existing is None:
            try:
                with self.session.begin_nested():
                    run = self._insert_run(
                        model,
                        revision,
                        dict(config),
                        (digest, request),
                        settings,
                        parsed,
                        checked,
                        timings,
                        started_at,
                        finished_at,
                    )
                created = True
            except IntegrityError:
                # A concurrent writer recorded the same (revision, config) first: use its run.
                existing = self._run_for(revision, digest)
                if existing is None:
                    raise
        if existing is not None:
            run, created = existing, False
        if job is not None:
            self.jobs.succeed(job, run.id, revision_sha)
        return RecordedRun(run_id=run.id, created=created)

    def link_build(self, run_id: int, base_model: str) -> None:
        """Record the model of an existing run as a quantized build of `base_model` (its file's type)."""
        run = RunRepository(self.session).get(run_id)
        found = run.provenance.get("quantization")
        self.models.link_base(
            run.model, base_model, RelationKind.QUANTIZED_BUILD, str(found) if found else None
        )

    def _update_model(
        self,
        model: CatalogModel,
        provenance: Provenance,
        *,
        family: str | None,
    ) -> None:
        model.model_type = provenance.model_type[:64]
        if provenance.parameter_count > 0:
            model.parameter_count = provenance.parameter_count
        if family:
            model.family = family[:64]
        model.updated_at = utcnow()

    def _revision(self, model: CatalogModel, sha: str, resolved_from: Any) -> Revision:
        found = self.session.scalars(
            select(Revision).where(Revision.model_id == model.id, Revision.sha == sha)
        ).one_or_none()
        if found is not None:
            return found
        ref = str(resolved_from)[:255] if resolved_from else None
        try:
            with self.session.begin_nested():
                revision = Revision(model_id=model.id, sha=sha, resolved_from=ref)
                self.session.add(revision)
        except IntegrityError:
            return self.session.scalars(
                select(Revision).where(Revision.model_id == model.id, Revision.sha == sha)
            ).one()
        return revision

    def _run_for(self, revision: Revision, digest: str) -> IndexRun | None:
        return self.session.scalars(
            select(IndexRun).where(IndexRun.revision_id == revision.id, IndexRun.config_hash == digest)
        ).one_or_none()

    def _insert_run(
        self,
        model: CatalogModel,
        revision: Revision,
        config: dict[str, Any],
        keys: tuple[str, str],
        settings: RunSettings | None,
        detection: DetectionResult,
        validation: ValidationDocument | None,
        timings: Mapping[str, float] | None,
        started_at: datetime | None,
        finished_at: datetime | None,
    ) -> IndexRun:
        provenance = detection.provenance
        run = IndexRun(
            model_id=model.id,
            revision_id=revision.id,
            status=RunStatus.SUCCEEDED,
            config=config,
            config_hash=keys[0],
            request_key=keys[1],
            settings=settings.model_dump(mode="json") if settings is not None else None,
            provenance=provenance.model_dump(mode="json"),
            detector_version=provenance.detector_version[:32] or None,
            model_verdict=validation.model_verdict if validation else None,
            profile_removed=[[list(c) for c in it.removed] for it in detection.layer_profile],
            timings=dict(timings or {}),
            wall_time_s=provenance.wall_time_s,
            started_at=started_at,
            finished_at=finished_at or utcnow(),
        )
        self.session.add(run)
        self.session.flush()
        verdicts = {(v.layer, v.row, v.col): v for v in (validation.verdicts if validation else [])}
        weights: dict[Coordinates, SuperWeight] = {}
        for found in detection.super_weights:
            coordinates = (found.layer, found.row, found.col)
            if coordinates in weights:
                continue
            verdict = verdicts.get(coordinates)
            weight = SuperWeight(
                model_id=model.id,
                run_id=run.id,
                status=verdict.status if verdict else SuperWeightStatus.CANDIDATE,
                verdict_reason=verdict.reason if verdict else None,
                member_of_confirmed_set=verdict.member_of_confirmed_set if verdict else False,
                **found.model_dump(mode="json"),
            )
            weights[coordinates] = weight
            self.session.add(weight)
        if detection.super_activation is not None:
            self.session.add(
                SuperActivation(
                    run_id=run.id,
                    **detection.super_activation.model_dump(mode="json"),
                )
            )
        for iteration in detection.layer_profile:
            for stats in iteration.layers:
                self.session.add(
                    LayerProfile(
                        run_id=run.id, iteration=iteration.iteration, **stats.model_dump(mode="json")
                    )
                )
        self.session.flush()
        for measurement in validation.results if validation else []:
            weight_row = weights.get(measurement.coordinates) if measurement.coordinates else None
            parameters = dict(measurement.parameters)
            if measurement.key is not None:
                parameters.setdefault("key", str(measurement.key))
            if measurement.coordinates and weight_row is None:
                parameters.setdefault("coordinates", list(measurement.coordinates))
            self.session.add(
                QualityResult(
                    run_id=run.id,
                    super_weight_id=weight_row.id if weight_row else None,
                    experiment=measurement.experiment,
                    parameters=parameters,
                    metric=measurement.metric,
                    value=measurement.value,
                    baseline=measurement.baseline,
                    ratio=measurement.ratio,
                    corpus=measurement.corpus.model_dump() if measurement.corpus else None,
                )
            )
        self.session.flush()
        return run
