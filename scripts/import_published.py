"""Copy the facts of the published super-weight data set into the package (`catalog/data/published.csv`).

Reads `../shared/data/published/published-super-weights.csv` (or the path given) and keeps, per row, the
coordinate, the source's kind and locator, the evidence figure, and whether the source marks the entry
doubtful. The notes' prose stays out of the product. The source list (citations, commits) and the models'
metadata are kept by hand in `catalog/data/sources.csv` and `catalog/data/models.csv`.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "published" / "published-super-weights.csv"
OUTPUT = ROOT / "catalog" / "data" / "published.csv"
FIELDS = ("hub_id", "layer", "row", "col", "source_kind", "source", "evidence", "doubtful")
#: the data set's spelling of the kinds -> the catalog's
KINDS = {"paper-table": "paper table", "reference-code": "reference code", "replication": "replication"}


def main(path: Path) -> None:
    """Write the package copy of the data set."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with OUTPUT.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    "hub_id": row["hub_id"],
                    "layer": int(row["layer"]),
                    "row": int(row["row"]),
                    "col": int(row["col"]),
                    "source_kind": KINDS[row["source_kind"]],
                    "source": row["source"],
                    "evidence": row["evidence"],
                    # the data set's notes flag doubtful entries and transfers with this word
                    "doubtful": "true" if "DOUBTFUL" in row["note"] else "false",
                }
            )
    print(f"{len(rows)} rows -> {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_INPUT)
