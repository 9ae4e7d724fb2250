"""Index runs: recording a detection (and its validation) exactly once, and reading it back."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from catalog.errors import InvalidInputError, NotFoundError
from catalog.models import (
    CatalogModel,
    IndexRun,
    Job,
    LayerProfile,
    QualityResult,
    ReportedSource,
    Revision,
    SuperActivation,
    SuperWeight,
    utcnow,
)
from catalog.repositories.models import ModelRepository
from contracts.identifiers import (
    config_hash,
    is_commit_sha,
    is_local_revision,
    validate_model_id,
    validate_revision_digest,
)
from contracts.jobs import RunSettings
from contracts.lineage import RelationKind, Reproduction, SourceKind
from contracts.results import DetectionResult, Provenance
from contracts.status import UNNEEDED_STATUSES, JobStatus, RunStatus, SuperWeightStatus
from contracts.validation import FigureKey, ValidationDocument

Coordinates = tuple[int, int, int]


@dataclass(frozen=True)
class RecordedRun:
    """The outcome of `record_run`: the run id, and whether this call created it."""

    run_id: int
    created: bool


@dataclass(frozen=True)
class CoordinateEntry:
    """One coordinate as users see it: a measured or reported super weight, with the evidence."""

    weight: SuperWeight
    source: Literal["measured", "reported"]
    reproduction: Reproduction | None  # relation to a reported entry at the same coordinates, if any
    citation: str | None
    citation_source: str | None
    decided_by: list[QualityResult] = field(default_factory=list)
    sources: list[ReportedSource] = field(default_factory=list)  # every source that reports it
    readings: list[Coordinates] = field(default_factory=list)  # the other readings of a disputed weight

    @property
    def disputed(self) -> bool:
        """Whether sources disagree on where this weight is (the same row and col at another layer)."""
        return bool(self.readings)

    @property
    def doubtful(self) -> bool:
        """Whether every source that reports it marks it doubtful (e.g. a transfer to another model)."""
        return bool(self.sources) and all(s.doubtful for s in self.sources)


@dataclass(frozen=True)
class CoordinateView:
    """A model's super weights at one revision (or its reported ones when nothing is measured)."""

    model: CatalogModel
    run: IndexRun | None
    revision: Revision | None
    entries: list[CoordinateEntry]
    super_activation: SuperActivation | None
    measured_on: CatalogModel | None = None  # the build (or the model itself) the run measured


@dataclass(frozen=True)
class RunVerdict:
    """What one run says about one coordinate, and the figure that decided it."""

    run: IndexRun
    reproduction: Reproduction
    status: str | None  # the coordinate's status in that run; None when the run did not detect it
    figure: float | None  # the prune ratio that decided it, else the detected output activation
    prompt_agreement: float | None = None  # the share of the run's detection prompts that point at it


@dataclass(frozen=True)
class CoordinateHistory:
    """One coordinate across a model's runs (and its builds' runs), and whether a source reports it."""

    coordinates: Coordinates
    reported: bool
    verdicts: list[RunVerdict]

    @property
    def latest(self) -> Reproduction:
        """The newest run's verdict (`unverified` when nothing ran)."""
        return self.verdicts[0].reproduction if self.verdicts else Reproduction.UNVERIFIED


@dataclass(frozen=True)
class Moved:
    """A super weight of model a whose counterpart in b sits at other coordinates."""

    a: Coordinates
    b: Coordinates
    shared: Literal["row", "layer_col"]


@dataclass(frozen=True)
class Comparison:
    """Which coordinates two models share, which moved, which vanished and which appeared."""

    a: CoordinateView
    b: CoordinateView
    shared: list[Coordinates]
    moved: list[Moved]
    vanished: list[Coordinates]
    appeared: list[Coordinates]
    drift: list[Drift] = field(default_factory=list)  # the value of each kept (or moved) weight on both sides
    relation: str | None = None  # how b derives from a (or a from b), when the catalog knows
    build: bool = False  # one side is a quantized build of the other: the drift is the dequantization error

    @property
    def channels(self) -> tuple[int | None, int | None]:
        """The super-activation channel (hidden dimension) of each side's run."""
        sides = (self.a.super_activation, self.b.super_activation)
        return (sides[0].channel if sides[0] else None, sides[1].channel if sides[1] else None)


@dataclass(frozen=True)
class Drift:
    """A super weight's value in a and in b (a moved weight pairs its two coordinates)."""

    a: Coordinates
    b: Coordinates
    value_a: float | None
    value_b: float | None

    @property
    def difference(self) -> float | None:
        """value_b - value_a."""
        if self.value_a is None or self.value_b is None:
            return None
        return self.value_b - self.value_a

    @property
    def relative(self) -> float | None:
        """|value_b - value_a| / |value_a|."""
        difference = self.difference
        if difference is None or not self.value_a:
            return None
        return abs(difference) / abs(self.value_a)


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
    """Store one run (see `RunRepository.record_run`); the caller commits."""
    return RunRepository(session).record_run(
        job_id=job_id,
        model_id=model_id,
        revision_sha=revision_sha,
        resolved_from=resolved_from,
        config=config,
        detection=detection,
        validation=validation,
        **details,
    )


class RunRepository:
    """Write and read index runs."""

    def __init__(self, session: Session):
        self.session = session
        self.models = ModelRepository(session)

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
        job = self._job(job_id) if job_id is not None else None
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
            now = utcnow()
            job.run_id = run.id
            job.status = JobStatus.SUCCEEDED
            job.last_error = None  # an earlier attempt's error no longer describes the job
            job.phase = "stored"
            job.progress = 1.0
            job.resolved_sha = revision_sha
            job.finished_at = now
            job.heartbeat_at = now
        return RecordedRun(run_id=run.id, created=created)

    def link_build(self, run_id: int, base_model: str) -> None:
        """Record the model of an existing run as a quantized build of `base_model` (its file's type)."""
        run = self.get(run_id)
        found = run.provenance.get("quantization")
        self.models.link_base(
            run.model, base_model, RelationKind.QUANTIZED_BUILD, str(found) if found else None
        )

    def _job(self, job_id: uuid.UUID | str) -> Job:
        try:
            key = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
        except ValueError as exc:
            raise InvalidInputError(f"invalid job id {str(job_id)[:60]!r}") from exc
        job = self.session.get(Job, key, with_for_update=True)
        if job is None:
            raise NotFoundError(f"no job with id {key}")
        return job

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

    # -- reading -------------------------------------------------------------------------------------------

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

    def weights(self, run: IndexRun) -> list[SuperWeight]:
        """The run's super weights in coordinate order."""
        return list(
            self.session.scalars(
                select(SuperWeight)
                .where(SuperWeight.run_id == run.id)
                .order_by(SuperWeight.layer, SuperWeight.row, SuperWeight.col)
            )
        )

    def reported(self, model: CatalogModel) -> list[SuperWeight]:
        """The model's reported (published) super weights in coordinate order."""
        return list(
            self.session.scalars(
                select(SuperWeight)
                .where(SuperWeight.model_id == model.id, SuperWeight.run_id.is_(None))
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

    def coordinates(self, model: CatalogModel, revision: str | None = None) -> CoordinateView:
        """The model's super weights at `revision` (default: newest indexed), with reported entries merged.

        A model without a run of its own shows the newest run of one of its quantized builds.
        """
        run, _ = self.latest_run(model, revision)
        if run is None and revision is None:
            run = self.latest_build_run(model)
        return self.coordinates_of(model, run)

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

    def sources(self, weights: list[SuperWeight]) -> dict[int, list[ReportedSource]]:
        """The sources of reported entries, by entry id (the paper's table first)."""
        found: dict[int, list[ReportedSource]] = defaultdict(list)
        if not weights:
            return found
        order = {kind.value: i for i, kind in enumerate(SourceKind)}
        rows = self.session.scalars(
            select(ReportedSource)
            .where(ReportedSource.super_weight_id.in_([w.id for w in weights]))
            .order_by(ReportedSource.id)
        )
        for source in sorted(rows, key=lambda r: order.get(r.kind, len(order))):
            found[source.super_weight_id].append(source)
        return found

    def coordinates_of(self, model: CatalogModel, run: IndexRun | None) -> CoordinateView:
        """The super weights of exactly this run (None: the reported ones), with reported entries merged."""
        reported_rows = self.reported(model)
        reported = {w.coordinates: w for w in reported_rows}
        sources = self.sources(reported_rows)
        readings = _readings(list(reported))
        entries: list[CoordinateEntry] = []
        if run is not None:
            results_by_weight: dict[int, list[QualityResult]] = defaultdict(list)
            joint: list[QualityResult] = []  # zeroing all together decides every weight too
            for result in self.quality_results(run):
                if result.super_weight_id is not None:
                    results_by_weight[result.super_weight_id].append(result)
                elif result.figure == FigureKey.joint():
                    joint.append(result)
            for weight in self.weights(run):
                match = reported.pop(weight.coordinates, None)
                reproduction: Reproduction | None = None
                if match is not None:
                    reproduction = _reproduction(weight.status)
                entries.append(
                    CoordinateEntry(
                        weight=weight,
                        source="measured",
                        reproduction=reproduction,
                        citation=match.citation if match else None,
                        citation_source=match.citation_source if match else None,
                        decided_by=[*results_by_weight.get(weight.id, []), *joint],
                        sources=sources.get(match.id, []) if match else [],
                        readings=readings.get(weight.coordinates, []),
                    )
                )
        for weight in reported.values():
            entries.append(
                CoordinateEntry(
                    weight=weight,
                    source="reported",
                    reproduction=Reproduction.NOT_FOUND if run is not None else Reproduction.UNVERIFIED,
                    citation=weight.citation,
                    citation_source=weight.citation_source,
                    sources=sources.get(weight.id, []),
                    readings=readings.get(weight.coordinates, []),
                )
            )
        entries.sort(key=lambda e: e.weight.coordinates)
        activation = self.super_activation(run) if run is not None else None
        return CoordinateView(
            model=model,
            run=run,
            revision=run.revision if run is not None else None,
            entries=entries,
            super_activation=activation,
            measured_on=run.model if run is not None else None,
        )

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

    def history(self, model: CatalogModel, runs: list[IndexRun] | None = None) -> list[CoordinateHistory]:
        """Every coordinate (reported, or detected by a run) with what each run says of it, newest first."""
        runs = (
            self.runs_with_builds(model)
            if runs is None
            else [r for r in runs if r.status == RunStatus.SUCCEEDED]
        )
        reported = {w.coordinates for w in self.reported(model)}
        found: dict[int, dict[Coordinates, SuperWeight]] = {}
        ratios: dict[int, float] = {}
        for run in runs:
            found[run.id] = {w.coordinates: w for w in self.weights(run)}
            for result in self.quality_results(run):
                # a weight's first measurement is the one its verdict rests on (zeroing it alone)
                if result.super_weight_id is not None and result.ratio is not None:
                    ratios.setdefault(result.super_weight_id, result.ratio)
        every = sorted(reported.union(*(set(f) for f in found.values())))
        history = []
        for coordinates in every:
            verdicts = []
            for run in runs:
                weight = found[run.id].get(coordinates)
                if weight is None:
                    verdicts.append(RunVerdict(run, Reproduction.NOT_FOUND, None, None))
                    continue
                figure = ratios.get(weight.id, weight.output_activation)
                verdicts.append(
                    RunVerdict(
                        run, _reproduction(weight.status), weight.status, figure, weight.prompt_agreement
                    )
                )
            history.append(CoordinateHistory(coordinates, coordinates in reported, verdicts))
        return history

    def compare(self, a: CatalogModel, b: CatalogModel) -> Comparison:
        """Compare the newest coordinates of two models (e.g. a base model and its fine-tune or build).

        Each side uses its own newest run (not a build's), else its reported entries.
        """
        view_a = self.coordinates_of(a, self.latest_run(a)[0])
        view_b = self.coordinates_of(b, self.latest_run(b)[0])
        left, right = _effective(view_a), _effective(view_b)
        shared = sorted(left & right)
        only_a, only_b = sorted(left - right), sorted(right - left)
        moved: list[Moved] = []
        for kind, key in (("row", lambda c: c[1]), ("layer_col", lambda c: (c[0], c[2]))):
            for coordinates in list(only_a):
                partner = next((other for other in only_b if key(other) == key(coordinates)), None)
                if partner is not None:
                    moved.append(Moved(a=coordinates, b=partner, shared=kind))  # type: ignore[arg-type]
                    only_a.remove(coordinates)
                    only_b.remove(partner)
        values_a = {e.weight.coordinates: e.weight.value for e in view_a.entries}
        values_b = {e.weight.coordinates: e.weight.value for e in view_b.entries}
        pairs = [(c, c) for c in shared] + [(m.a, m.b) for m in moved]
        drift = [Drift(x, y, values_a.get(x), values_b.get(y)) for x, y in pairs]
        derived = b if b.base_model_id == a.id else a if a.base_model_id == b.id else None
        return Comparison(
            a=view_a,
            b=view_b,
            shared=shared,
            moved=moved,
            vanished=only_a,
            appeared=only_b,
            drift=drift,
            relation=derived.relation if derived is not None else None,
            build=derived is not None and derived.relation == RelationKind.QUANTIZED_BUILD,
        )


def _reproduction(status: str) -> Reproduction:
    """A detected coordinate reproduces a report unless validation found it unneeded (inert, redundant)."""
    return Reproduction.CONTRADICTED if status in UNNEEDED_STATUSES else Reproduction.REPRODUCED


def _readings(reported: list[Coordinates]) -> dict[Coordinates, list[Coordinates]]:
    """For each reported coordinate, the other reported layers of the same (row, col): a disputed weight."""
    by_cell: dict[tuple[int, int], list[Coordinates]] = defaultdict(list)
    for coordinates in reported:
        by_cell[(coordinates[1], coordinates[2])].append(coordinates)
    return {
        c: [other for other in group if other != c]
        for group in by_cell.values()
        if len(group) > 1
        for c in group
    }


def _effective(view: CoordinateView) -> set[Coordinates]:
    """Measured coordinates that are not inert; the reported ones when nothing was measured."""
    if view.run is not None:
        return {
            e.weight.coordinates
            for e in view.entries
            if e.source == "measured" and e.weight.status not in UNNEEDED_STATUSES
        }
    return {e.weight.coordinates for e in view.entries}
