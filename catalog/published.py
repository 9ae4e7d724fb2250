"""The published super-weight data set shipped with the package (`catalog/data/*.csv`), read as facts.

`published.csv` has one row per (model, coordinate, source): the source's kind, its locator
(`owner/repo:path`, `owner/repo:issues/N`, or the paper's table), the evidence figure it gives, and whether
it marks the entry doubtful. `sources.csv` names each source's citation and the commit that was read;
`models.csv` gives each model's architecture, family and, where one is known, its base model.
Regenerate `published.csv` with `scripts/import_published.py`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources

from contracts.lineage import RelationKind, SourceKind

Coordinates = tuple[int, int, int]
_PAPER = "arXiv:"


@dataclass(frozen=True)
class SourceRecord:
    """One source's report of one coordinate."""

    kind: SourceKind
    locator: str  # as the data set cites it: `owner/repo:path`, or `arXiv:2411.07191 Table 2`
    citation: str
    commit: str | None
    evidence: str | None
    doubtful: bool

    @property
    def source_file(self) -> str | None:
        """The file (or issue thread) inside the source's repository; None for the paper."""
        if self.locator.startswith(_PAPER) or ":" not in self.locator:
            return None
        return self.locator.split(":", 1)[1]


@dataclass(frozen=True)
class PublishedModel:
    """A model of the data set with its reported coordinates, each with every source that reports it."""

    hub_id: str
    model_type: str
    family: str
    base_model: str | None
    relation: RelationKind | None
    coordinates: dict[Coordinates, tuple[SourceRecord, ...]]


def _rows(name: str) -> Iterator[dict[str, str]]:
    text = resources.files("catalog").joinpath("data", name).read_text(encoding="utf-8")
    yield from csv.DictReader(text.splitlines())


def _source_key(locator: str) -> str:
    return locator.split(" ", 1)[0] if locator.startswith(_PAPER) else locator.split(":", 1)[0]


@cache
def published_models() -> tuple[PublishedModel, ...]:
    """Every model of the data set, in the order of `models.csv`."""
    sources = {row["source"]: row for row in _rows("sources.csv")}
    reports: dict[str, dict[Coordinates, list[SourceRecord]]] = {}
    for row in _rows("published.csv"):
        source = sources[_source_key(row["source"])]
        file_part = row["source"].split(":", 1)[1] if ":" in row["source"] else ""
        record = SourceRecord(
            kind=SourceKind(row["source_kind"]),
            locator=row["source"],
            citation=source["citation"],
            # an issue thread is not a file of a commit
            commit=(source["commit"] or None) if not file_part.startswith("issues/") else None,
            evidence=row["evidence"] or None,
            doubtful=row["doubtful"] == "true",
        )
        coordinates = (int(row["layer"]), int(row["row"]), int(row["col"]))
        reports.setdefault(row["hub_id"], {}).setdefault(coordinates, []).append(record)
    return tuple(
        PublishedModel(
            hub_id=row["hub_id"],
            model_type=row["model_type"],
            family=row["family"],
            base_model=row["base_model"] or None,
            relation=RelationKind(row["relation"]) if row["relation"] else None,
            coordinates={c: tuple(s) for c, s in sorted(reports.get(row["hub_id"], {}).items())},
        )
        for row in _rows("models.csv")
    )


def primary_source(records: tuple[SourceRecord, ...]) -> SourceRecord:
    """The source an entry is labelled with: the paper's table, else its code, else the first replication."""
    order = list(SourceKind)
    return min(records, key=lambda r: order.index(r.kind))
