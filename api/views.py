"""Turn catalog rows and views into response models."""

from __future__ import annotations

from typing import Any

from api.schemas import (
    BundleWeightOut,
    CompareOut,
    CompareSideOut,
    Coordinate,
    CoordinateHistoryOut,
    DerivedModelOut,
    DriftOut,
    JobOut,
    LayerStatsOut,
    MeasuredOnOut,
    ModelDetailOut,
    ModelSummaryOut,
    MovedOut,
    ProfileIterationOut,
    QualityResultOut,
    ReportedSourceOut,
    RevisionOut,
    RunReportOut,
    RunSummaryOut,
    RunVerdictOut,
    SuperActivationOut,
    SuperWeightOut,
    SuperWeightsOut,
)
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
)
from catalog.repositories import Comparison, CoordinateEntry, CoordinateView, ModelSummary
from catalog.repositories.coordinates import CoordinateHistory
from contracts.identifiers import VERSIONS_KEY
from contracts.manifest import DecidingFigure, build_manifest, float32_of
from contracts.validation import Measurement


def model_url(hub_id: str) -> str:
    """The API path of a model."""
    return f"/v1/models/{hub_id}"


def run_url(run_id: int) -> str:
    """The API path of a run."""
    return f"/v1/runs/{run_id}"


def job_url(job: Job) -> str:
    """The API path of a job."""
    return f"/v1/jobs/{job.id}"


class Attributes:
    """The attributes of several objects as one (the first that has a name wins): what pydantic's
    `from_attributes` reads a response model from, so that rows are never copied field by field."""

    def __init__(self, *sources: object, **values: Any) -> None:
        self._sources = (values, *sources)

    def __getattr__(self, name: str) -> Any:
        for source in self._sources:
            if isinstance(source, dict):
                if name in source:
                    return source[name]
            elif hasattr(source, name):
                return getattr(source, name)
        raise AttributeError(name)


def model_summary(summary: ModelSummary) -> ModelSummaryOut:
    """A listing entry."""
    return ModelSummaryOut.model_validate(_model_fields(summary), from_attributes=True)


def _model_fields(summary: ModelSummary, **values: Any) -> Attributes:
    model = summary.model
    return Attributes(
        summary,
        model,
        **values,
        id=model.hub_id,
        url=model_url(model.hub_id),
        architecture=model.model_type,
    )


def revision_out(revision: Revision) -> RevisionOut:
    """A revision."""
    return RevisionOut.model_validate(revision)


def run_summary(run: IndexRun) -> RunSummaryOut:
    """A run, briefly."""
    versions = run.config.get(VERSIONS_KEY) if isinstance(run.config, dict) else None
    return RunSummaryOut.model_validate(
        Attributes(
            run,
            url=run_url(run.id),
            model=run.model.hub_id,
            quantization=run.model.quantization,
            validator_version=versions.get("validator") if isinstance(versions, dict) else None,
            revision=run.revision.sha,
        ),
        from_attributes=True,
    )


def model_detail(
    summary: ModelSummary,
    latest: Revision | None,
    runs: list[IndexRun],
    derived: list[CatalogModel] | None = None,
    history: list[CoordinateHistory] | None = None,
) -> ModelDetailOut:
    """A model page."""
    return ModelDetailOut.model_validate(
        _model_fields(
            summary,
            latest_revision=revision_out(latest) if latest else None,
            runs=[run_summary(r) for r in runs],
            derived=[
                DerivedModelOut.model_validate(
                    Attributes(m, id=m.hub_id, url=model_url(m.hub_id)), from_attributes=True
                )
                for m in derived or []
            ],
            history=[coordinate_history(h) for h in history or []],
        ),
        from_attributes=True,
    )


def coordinate_history(history: CoordinateHistory) -> CoordinateHistoryOut:
    """One coordinate across runs."""
    layer, row, col = history.coordinates
    return CoordinateHistoryOut(
        layer=layer,
        row=row,
        col=col,
        reported=history.reported,
        reproduction=history.latest.value,
        runs=[
            RunVerdictOut.model_validate(
                Attributes(
                    v,
                    run_id=v.run.id,
                    model=v.run.model.hub_id,
                    quantization=v.run.model.quantization,
                    reproduction=v.reproduction.value,
                ),
                from_attributes=True,
            )
            for v in history.verdicts
        ],
    )


def reported_source(source: ReportedSource) -> ReportedSourceOut:
    """A source of a reported coordinate."""
    return ReportedSourceOut.model_validate(source, from_attributes=True)


def quality_result(result: QualityResult, weight: SuperWeight | None = None) -> QualityResultOut:
    """A measurement."""
    coordinates = None
    if weight is not None:
        coordinates = Coordinate(layer=weight.layer, row=weight.row, col=weight.col)
    elif (
        isinstance(result.parameters.get("coordinates"), list) and len(result.parameters["coordinates"]) == 3
    ):
        layer, row, col = result.parameters["coordinates"]
        coordinates = Coordinate(layer=layer, row=row, col=col)
    return QualityResultOut.model_validate(
        {**Measurement.model_validate(result, from_attributes=True).model_dump(), "coordinates": coordinates}
    )


def super_weight(entry: CoordinateEntry) -> SuperWeightOut:
    """One coordinate with its evidence."""
    weight = entry.weight
    return SuperWeightOut.model_validate(
        Attributes(
            entry,
            weight,
            reproduction=entry.reproduction.value if entry.reproduction else None,
            sources=[reported_source(s) for s in entry.sources],
            readings=[_coordinate(c) for c in entry.readings],
            decided_by=[quality_result(r, weight) for r in entry.decided_by],
        ),
        from_attributes=True,
    )


def super_activation(activation: SuperActivation | None) -> SuperActivationOut | None:
    """The super activation, if any."""
    return SuperActivationOut.model_validate(activation) if activation is not None else None


def super_weights(view: CoordinateView) -> SuperWeightsOut:
    """A model's coordinates at one revision."""
    return SuperWeightsOut(
        model=view.model.hub_id,
        revision=revision_out(view.revision) if view.revision else None,
        run_id=view.run.id if view.run else None,
        measured_on=(
            MeasuredOnOut.model_validate(
                Attributes(view.measured_on, model=view.measured_on.hub_id), from_attributes=True
            )
            if view.measured_on is not None
            else None
        ),
        super_weights=[super_weight(e) for e in view.entries],
        super_activation=super_activation(view.super_activation),
    )


def layer_profile(run: IndexRun, rows: list[LayerProfile]) -> list[ProfileIterationOut]:
    """Per-iteration profiles."""
    by_iteration: dict[int, list[LayerStatsOut]] = {}
    for row in rows:
        by_iteration.setdefault(row.iteration, []).append(LayerStatsOut.model_validate(row))
    removed = run.profile_removed or []
    iterations = sorted(set(by_iteration) | set(range(len(removed))))
    return [
        ProfileIterationOut(
            iteration=i,
            removed=tuple(tuple(c) for c in removed[i]) if i < len(removed) else (),
            layers=tuple(by_iteration.get(i, [])),
        )
        for i in iterations
    ]


def run_report(
    run: IndexRun,
    view: CoordinateView,
    results: list[QualityResult],
    profile: list[LayerProfile],
    job: Job | None,
) -> RunReportOut:
    """The full report of a run."""
    weights_by_id = {e.weight.id: e.weight for e in view.entries}
    return RunReportOut.model_validate(
        Attributes(
            run,
            model=run.model.hub_id,
            revision=revision_out(run.revision),
            job_id=job.id if job else None,
            super_weights=[super_weight(e) for e in view.entries],
            super_activation=super_activation(view.super_activation),
            layer_profile=layer_profile(run, profile),
            quality_results=[
                quality_result(r, weights_by_id.get(r.super_weight_id) if r.super_weight_id else None)
                for r in results
            ],
        ),
        from_attributes=True,
    )


def _side(view: CoordinateView) -> CompareSideOut:
    basis = "run" if view.run is not None else ("reported" if view.entries else "none")
    return CompareSideOut(
        model=view.model.hub_id,
        basis=basis,  # type: ignore[arg-type]
        run_id=view.run.id if view.run else None,
        revision=view.revision.sha if view.revision else None,
    )


def _coordinate(value: tuple[int, int, int]) -> Coordinate:
    return Coordinate(layer=value[0], row=value[1], col=value[2])


def comparison(result: Comparison) -> CompareOut:
    """A comparison of two models."""
    channel_a, channel_b = result.channels
    return CompareOut(
        a=_side(result.a),
        b=_side(result.b),
        relation=result.relation,  # type: ignore[arg-type]
        shared=[_coordinate(c) for c in result.shared],
        moved=[MovedOut(a=_coordinate(m.a), b=_coordinate(m.b), shared=m.shared) for m in result.moved],
        vanished=[_coordinate(c) for c in result.vanished],
        appeared=[_coordinate(c) for c in result.appeared],
        drift=[
            DriftOut.model_validate(
                Attributes(d, a=_coordinate(d.a), b=_coordinate(d.b)), from_attributes=True
            )
            for d in result.drift
        ],
        dequantization_error=result.build,
        super_activation_channel_a=channel_a,
        super_activation_channel_b=channel_b,
    )


def job_out(job: Job) -> JobOut:
    """A job."""
    return JobOut.model_validate(job)


def bundle_weight(entry: CoordinateEntry) -> BundleWeightOut:
    """One bundle entry; `decided_by` names each figure by its key, as the indexer's bundles do."""
    weight = entry.weight
    return BundleWeightOut.model_validate(
        Attributes(
            weight,
            value_float32=float32_of(weight.value),
            gguf_index=tuple(weight.gguf_index) if weight.gguf_index else None,
            decided_by=tuple(
                DecidingFigure.of(Measurement.model_validate(r, from_attributes=True), weight.coordinates)
                for r in entry.decided_by
            ),
        ),
        from_attributes=True,
    )


def bundle_manifest(view: CoordinateView) -> dict[str, Any]:
    """The checked schema-1 manifest of a model's coordinates (what every served bundle format renders)."""
    activation = super_activation(view.super_activation)
    return build_manifest(
        model=view.model.hub_id,
        revision=view.revision.sha if view.revision else None,
        super_weights=[bundle_weight(e).model_dump(mode="json") for e in view.entries],
        super_activation=activation.model_dump(mode="json") if activation else None,
        provenance=dict(view.run.provenance) if view.run and view.run.provenance else {},
    )
