"""Versions of the indexer's parts whose results a run stores (bump one when its results can change).

A contract, not an indexer detail: the run key (`contracts.jobs.versioned_run_config`) hashes them, and
the submission service, which never imports the indexer, must find the run a worker would store.
"""

DETECTOR_VERSION = "1.0.0"
VALIDATOR_VERSION = "1.0.0"
#: what a run's configuration records (and its key hashes): the version of each part that made its results
RUN_VERSIONS = {"detector": DETECTOR_VERSION, "validator": VALIDATOR_VERSION}
