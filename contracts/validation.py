"""What validation produces: figure keys, measurements with their corpus identity, and verdicts.

`ValidationDocument` is the one document the indexer writes (`ValidationResult.document()` in
`contracts.validation_result`), the workers send, the catalog stores and every bundle reflects:

    {
      "model_verdict": "confirmed",
      "verdicts": [{"layer": 2, "row": 3968, "col": 7003, "verdict": "inert", "reason": "...",
                    "alone_ratio": 1.3, "member_of_confirmed_set": true}],
      "results": [{"experiment": "alone", "key": {"experiment": "alone", "coordinates": [[2, 3968, 7003]]},
                   "parameters": {...}, "metric": "perplexity", "value": 1211.4, "baseline": 5.68,
                   "ratio": 213.3, "corpus": {"name": "...", "sha256": "...", "tokens": 4096, "window": 512},
                   "coordinates": [2, 3968, 7003]}]
    }
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_serializer, model_validator

from contracts.base import Coordinates, Frozen
from contracts.status import SuperWeightStatus

Metric = Literal["perplexity", "stopword_mass"]


class FigureKey(Frozen):
    """Which figure a measurement is: its experiment and what it singles out.

    Its text form (`str(key)`, e.g. `zero/alone/2-3968-7003`, `rtn/4bit/g128/holdout`) is a stable label
    for people and for older documents; code compares keys, never their text. `parse` is its inverse.
    """

    experiment: str = Field(min_length=1, max_length=100)
    #: `alone`: the super weight zeroed alone; `leave_one_out`: the one kept while the others are zeroed
    coordinates: tuple[Coordinates, ...] = ()
    #: controls: largest/random; null: random/column; rtn: plain/clipped/holdout; w8a8: naive/holdout
    variant: str | None = None
    draw: int | None = Field(default=None, ge=0)  # null: the set's index among the sets of its variant
    bits: int | None = None  # rtn
    granularity: str | None = None  # rtn, e.g. g128
    factor: float | None = None  # scaling

    @classmethod
    def baseline(cls) -> FigureKey:
        """The unmodified model."""
        return cls(experiment="baseline")

    @classmethod
    def joint(cls) -> FigureKey:
        """Every super weight zeroed together."""
        return cls(experiment="joint")

    @classmethod
    def alone(cls, coordinates: Coordinates) -> FigureKey:
        """One super weight zeroed alone."""
        return cls(experiment="alone", coordinates=(_triple(coordinates),))

    @classmethod
    def without(cls, coordinates: Coordinates) -> FigureKey:
        """Every super weight zeroed but the one at `coordinates` (leave-one-out)."""
        return cls(experiment="leave_one_out", coordinates=(_triple(coordinates),))

    @classmethod
    def restored(cls) -> FigureKey:
        """Every super weight zeroed, the super activation restored (the paper's "+SA")."""
        return cls(experiment="restore_sa")

    @classmethod
    def control(cls, variant: str) -> FigureKey:
        """A control set (`largest` or `random`)."""
        return cls(experiment="controls", variant=variant)

    @classmethod
    def null(cls, variant: str | None = None, draw: int | None = None) -> FigureKey:
        """Null set `draw` of a kind (`random` or `column`); without them, the null's summary."""
        return cls(experiment="null", variant=variant, draw=draw)

    @classmethod
    def scaled(cls, factor: float) -> FigureKey:
        """The super weights multiplied by `factor`."""
        return cls(experiment="scaling", factor=factor)

    @classmethod
    def rtn(cls, bits: int, granularity: str, variant: str) -> FigureKey:
        """Weight round-to-nearest at `bits`, by granularity (e.g. g128) and variant."""
        return cls(experiment="rtn", bits=bits, granularity=granularity, variant=variant)

    @classmethod
    def w8a8(cls, variant: str) -> FigureKey:
        """8-bit weights and activations (`naive` or `holdout`)."""
        return cls(experiment="w8a8", variant=variant)

    def __str__(self) -> str:
        single = "{}-{}-{}".format(*self.coordinates[0]) if len(self.coordinates) == 1 else None
        if self.experiment == "joint":
            return "zero/joint"
        if self.experiment == "alone" and single:
            return f"zero/alone/{single}"
        if self.experiment == "leave_one_out" and single:
            return f"zero/joint-without/{single}"
        if self.experiment == "restore_sa":
            return "zero/joint+sa"
        if self.experiment == "controls" and self.variant:
            return f"control/{self.variant}"
        if self.experiment == "null" and self.variant and self.draw is not None:
            return f"null/{self.variant}/{self.draw}"
        if self.experiment == "scaling" and self.factor is not None:
            return f"scale/{self.factor:g}"
        if self.experiment == "rtn" and self.bits is not None:
            return f"rtn/{self.bits}bit/{self.granularity}/{self.variant}"
        if self.experiment == "w8a8" and self.variant:
            return f"w8a8/{self.variant}"
        return self.experiment

    @classmethod
    def parse(cls, text: str) -> FigureKey:
        """The key of a text form (the inverse of `str(key)`); unknown texts name an experiment."""
        parts = text.split("/")
        if text == "zero/joint":
            return cls.joint()
        if text == "zero/joint+sa":
            return cls.restored()
        if len(parts) == 3 and parts[:2] == ["zero", "alone"]:
            return cls.alone(_coordinates(parts[2]))
        if len(parts) == 3 and parts[:2] == ["zero", "joint-without"]:
            return cls.without(_coordinates(parts[2]))
        if len(parts) == 2 and parts[0] == "control":
            return cls.control(parts[1])
        if len(parts) == 3 and parts[0] == "null" and parts[2].isdigit():
            return cls.null(parts[1], int(parts[2]))
        if len(parts) == 2 and parts[0] == "scale":
            return cls.scaled(float(parts[1]))
        if len(parts) == 4 and parts[0] == "rtn" and parts[1].endswith("bit"):
            return cls.rtn(int(parts[1][:-3]), parts[2], parts[3])
        if len(parts) == 2 and parts[0] == "w8a8":
            return cls.w8a8(parts[1])
        return cls(experiment=text)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and set(data) == {"experiment"} and "/" in str(data["experiment"]):
            data = data["experiment"]  # an older document's key that carried only its text
        return cls.parse(data).model_dump(exclude_defaults=True) if isinstance(data, str) else data

    @model_serializer(mode="wrap")
    def _compact(self, handler: Any) -> Any:
        data = handler(self)
        return {k: v for k, v in data.items() if k == "experiment" or v not in (None, [], ())}


def _triple(coordinates: Coordinates) -> Coordinates:
    layer, row, col = coordinates
    return (layer, row, col)


def _coordinates(text: str) -> Coordinates:
    layer, row, col = (int(p) for p in text.split("-"))
    return (layer, row, col)


class CorpusIdentity(Frozen):
    """Which text a quality number was measured on."""

    name: str = Field(max_length=200)
    sha256: str | None = Field(default=None, max_length=64)  # of the whole corpus text (UTF-8)
    tokens: int | None = None  # tokens used: windows * window
    window: int | None = None


class CorpusWindows(CorpusIdentity):
    """The identity of a validation run's windows over a corpus: the text's identity, its length, the
    window count and the tokenizer (token counts depend on it). A stored measurement keeps the
    `CorpusIdentity` part."""

    sha256: str = Field(max_length=64)
    tokens: int
    window: int
    characters: int  # length of the whole corpus text
    windows: int
    tokenizer: str = Field(max_length=200)  # its class and vocabulary size

    def identity(self) -> CorpusIdentity:
        """The identity a stored measurement carries (catalog, API, bundles)."""
        return CorpusIdentity.model_validate(self, from_attributes=True)


class Measurement(Frozen):
    """One measured figure: its value, the baseline, their ratio, and the corpus it was measured on."""

    experiment: str = Field(min_length=1, max_length=100)
    key: FigureKey | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    metric: str = Field(min_length=1, max_length=64)
    value: float | None = None
    baseline: float | None = None
    ratio: float | None = None
    corpus: CorpusIdentity | None = None
    coordinates: Coordinates | None = None  # the super weight it decided alone, or None (model-level)

    @property
    def figure(self) -> FigureKey:
        """The figure key (for documents that carry only `parameters.key`, parsed from it)."""
        if self.key is not None:
            return self.key
        text = self.parameters.get("key")
        return FigureKey.parse(text) if isinstance(text, str) else FigureKey(experiment=self.experiment)


class Verdict(Frozen):
    """Validation's decision about one super weight."""

    layer: int = Field(ge=0)
    row: int = Field(ge=0)
    col: int = Field(ge=0)
    verdict: SuperWeightStatus
    reason: str | None = Field(default=None, max_length=2000)
    alone_ratio: float | None = None  # zeroing it alone (None: not measured)
    #: the joint zeroing of the set that contains it confirmed the model (it matters at least jointly)
    member_of_confirmed_set: bool = False

    @property
    def coordinates(self) -> Coordinates:
        """The `(layer, row, col)` triple."""
        return (self.layer, self.row, self.col)

    @property
    def status(self) -> SuperWeightStatus:
        """The status the catalog stores and every bundle carries.

        `set-confirmed` and `redundant` (leave-one-out decided the member) are kept; a member of the
        confirmed set whose necessity was not measured is `confirmed`, as the indexer's bundles always
        said; a weight validation could not decide stays a `candidate`.
        """
        if self.verdict in (SuperWeightStatus.SET_CONFIRMED, SuperWeightStatus.REDUNDANT):
            return self.verdict
        if self.verdict == SuperWeightStatus.CONFIRMED or self.member_of_confirmed_set:
            return SuperWeightStatus.CONFIRMED
        if self.verdict == SuperWeightStatus.NOT_MEASURED:
            return SuperWeightStatus.CANDIDATE
        return self.verdict


class ValidationDocument(Frozen):
    """Every measurement of a validation run and its verdicts (see the module docstring)."""

    model_verdict: str | None = Field(default=None, max_length=32)
    verdicts: tuple[Verdict, ...] = ()
    results: tuple[Measurement, ...] = ()

    def verdict_for(self, coordinates: Coordinates) -> Verdict | None:
        """The verdict about the super weight at `coordinates`, if validation gave one."""
        return next((v for v in self.verdicts if v.coordinates == tuple(coordinates)), None)

    def status_of(self, coordinates: Coordinates) -> SuperWeightStatus:
        """The status of the super weight at `coordinates` (`candidate` when undecided)."""
        verdict = self.verdict_for(coordinates)
        return verdict.status if verdict is not None else SuperWeightStatus.CANDIDATE

    def deciding(self, coordinates: Coordinates) -> tuple[Measurement, ...]:
        """The figures that decided a super weight's status: zeroing it alone, and zeroing all jointly."""
        wanted = (FigureKey.alone(coordinates), FigureKey.joint())
        return tuple(m for m in self.results if m.metric == "perplexity" and m.figure in wanted)
