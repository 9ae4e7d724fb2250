"""Coordinate reads: a model's super weights (measured and reported merged), their history, comparisons."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import (
    CatalogModel,
    IndexRun,
    QualityResult,
    ReportedSource,
    Revision,
    SuperActivation,
    SuperWeight,
)
from catalog.repositories.runs import RunRepository
from contracts.lineage import RelationKind, Reproduction, SourceKind
from contracts.status import UNNEEDED_STATUSES, RunStatus
from contracts.validation import FigureKey

Coordinates = tuple[int, int, int]


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


class CoordinateRepository:
    """Read a model's coordinates: reported entries merged with a run's measured ones."""

    def __init__(self, session: Session):
        self.session = session
        self.runs = RunRepository(session)

    def reported(self, model: CatalogModel) -> list[SuperWeight]:
        """The model's reported (published) super weights in coordinate order."""
        return list(
            self.session.scalars(
                select(SuperWeight)
                .where(SuperWeight.model_id == model.id, SuperWeight.run_id.is_(None))
                .order_by(SuperWeight.layer, SuperWeight.row, SuperWeight.col)
            )
        )

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

    def coordinates(self, model: CatalogModel, revision: str | None = None) -> CoordinateView:
        """The model's super weights at `revision` (default: newest indexed), with reported entries merged.

        A model without a run of its own shows the newest run of one of its quantized builds.
        """
        run, _ = self.runs.latest_run(model, revision)
        if run is None and revision is None:
            run = self.runs.latest_build_run(model)
        return self.coordinates_of(model, run)

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
            for result in self.runs.quality_results(run):
                if result.super_weight_id is not None:
                    results_by_weight[result.super_weight_id].append(result)
                elif result.figure == FigureKey.joint():
                    joint.append(result)
            for weight in self.runs.weights(run):
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
        activation = self.runs.super_activation(run) if run is not None else None
        return CoordinateView(
            model=model,
            run=run,
            revision=run.revision if run is not None else None,
            entries=entries,
            super_activation=activation,
            measured_on=run.model if run is not None else None,
        )

    def history(self, model: CatalogModel, runs: list[IndexRun] | None = None) -> list[CoordinateHistory]:
        """Every coordinate (reported, or detected by a run) with what each run says of it, newest first."""
        runs = (
            self.runs.runs_with_builds(model)
            if runs is None
            else [r for r in runs if r.status == RunStatus.SUCCEEDED]
        )
        reported = {w.coordinates for w in self.reported(model)}
        found: dict[int, dict[Coordinates, SuperWeight]] = {}
        ratios: dict[int, float] = {}
        for run in runs:
            found[run.id] = {w.coordinates: w for w in self.runs.weights(run)}
            for result in self.runs.quality_results(run):
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
        view_a = self.coordinates_of(a, self.runs.latest_run(a)[0])
        view_b = self.coordinates_of(b, self.runs.latest_run(b)[0])
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
