"""The configuration a job carries (`jobs.config`), shared by the API's submissions and `swi index`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: the key of a job's configuration that names a local source (never part of the run's configuration)
SOURCE_PATH_KEY = "source_path"
#: the keys the API always writes; extra keys are written only when set, so equal settings hash equally
BASE_KEYS = ("prompt", "max_super_weights", "z_threshold", "dtype", "validate", "quantization_checks")
#: experiments of the quantization checks (the rest is prune validation)
QUANTIZATION_EXPERIMENTS = ("rtn", "w8a8")


class JobConfig(BaseModel):
    """Detection, validation and quantization-check settings of one job (unknown keys are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    prompt: str | None = Field(default=None, min_length=1, max_length=2000)
    max_super_weights: int = Field(default=8, ge=1, le=64)
    z_threshold: float = Field(default=3.0, gt=0, le=100)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    validate_: bool = Field(default=True, alias="validate")
    quantization_checks: bool = True
    max_tokens: int | None = Field(default=None, ge=2, description="Validation token budget.")
    window: int | None = Field(default=None, ge=2, description="Validation window length.")
    corpus: str | None = Field(default=None, max_length=200, description="builtin, wikitext2 or a file path.")
    experiments: tuple[str, ...] | None = Field(
        default=None, description="Subset of the validation experiments."
    )
    source_path: str | None = Field(
        default=None, description="A local folder or .gguf file (local jobs only)."
    )

    def as_config(self) -> dict[str, Any]:
        """The JSON stored on the job: the base keys, plus the optional ones that are set."""
        data = self.model_dump(by_alias=True, mode="json")
        return {key: value for key, value in data.items() if key in BASE_KEYS or value is not None}

    @property
    def measures_anything(self) -> bool:
        """Whether validation or quantization checks run at all."""
        return self.validate_ or self.quantization_checks


def run_config_of(job_config: dict[str, Any]) -> dict[str, Any]:
    """The configuration of the run (its hash is the run key): the job's, without the local path."""
    return {key: value for key, value in job_config.items() if key != SOURCE_PATH_KEY}
