"""The base of every contract type: frozen, and lenient to keys a newer producer adds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    """An immutable value; unknown keys are ignored so that a producer can grow without breaking readers."""

    model_config = ConfigDict(frozen=True, extra="ignore")


Coordinates = tuple[int, int, int]


class Coordinate(Frozen):
    """A coordinate `(layer, row, col)` of `model.layers[layer].mlp.down_proj.weight[row, col]`."""

    layer: int = Field(ge=0)
    row: int = Field(ge=0, description="Hidden (output) channel.")
    col: int = Field(ge=0, description="Intermediate (input) channel.")

    @classmethod
    def of(cls, coordinates: Coordinates) -> Coordinate:
        """The object form of a `(layer, row, col)` triple."""
        layer, row, col = coordinates
        return cls(layer=layer, row=row, col=col)

    @property
    def coordinates(self) -> Coordinates:
        """The `(layer, row, col)` triple."""
        return (self.layer, self.row, self.col)
