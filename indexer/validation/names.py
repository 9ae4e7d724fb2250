"""The validation experiments by name, in the order they are planned (`indexer.validation.experiments`'s
registry holds one entry for each, in this order), and parsing a selection of them.

Below both the configuration and the experiments: the configuration's defaults and checks read the names,
the experiments read the configuration.
"""

from __future__ import annotations

from indexer.errors import InvalidInputError

#: every experiment name, in the canonical order
EXPERIMENTS: tuple[str, ...] = (
    "baseline",
    "joint",
    "alone",
    "restore_sa",
    "controls",
    "null",
    "leave_one_out",
    "stopwords",
    "scaling",
    "rtn",
    "w8a8",
)


def parse_experiments(text: str) -> tuple[str, ...]:
    """Comma-separated experiment names (or `all`), in the canonical order; unknown names are refused."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise InvalidInputError(f"no experiment named; choose from: all, {', '.join(EXPERIMENTS)}")
    if "all" in names:
        return EXPERIMENTS
    unknown = [name for name in names if name not in EXPERIMENTS]
    if unknown:
        raise InvalidInputError(
            f"unknown experiment {', '.join(map(repr, unknown))}; choose from: all, {', '.join(EXPERIMENTS)}"
        )
    return tuple(name for name in EXPERIMENTS if name in names)
