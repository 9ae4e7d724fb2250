"""Versions of the parts of the indexer whose results a run stores (bump one when its results can change).

Kept free of heavy imports: the run key (`contracts.jobs.versioned_run_config`) reads them before any
model is loaded.
"""

DETECTOR_VERSION = "1.0.0"
VALIDATOR_VERSION = "1.0.0"
#: what a run's configuration records (and its key hashes): the version of each part that made its results
RUN_VERSIONS = {"detector": DETECTOR_VERSION, "validator": VALIDATOR_VERSION}
