"""Versions of the indexer's parts whose results a run stores (bump one when its results can change).

A contract, not an indexer detail: both keys of a run hash them (the request key through
`contracts.jobs.versioned_run_config`, the run key through `contracts.jobs.RunSettings`), and the submission
service, which never imports the indexer, must find the run a worker would store for a request. A run of
an earlier version is kept next to the new one (runs are never lost). `tests/contracts/test_run_versions.py`
fails when a default of detection or validation changes without a new version here.

- detector 1.1.0: a batch of prompts with `prompt_agreement`, `on_first_token` / `on_bos`, and the
  output-led rule that finds OLMo-1B- and SmolLM2-1.7B-like profiles (1.0.0: one prompt, both outliers).
- validator 1.1.0: set-confirmed / redundant by leave-one-out, the calibrated null, bootstrap intervals with
  the factor on the low end, WikiText-2 as the default corpus (1.0.0: alone and joint point ratios).
"""

DETECTOR_VERSION = "1.1.0"
VALIDATOR_VERSION = "1.1.0"
#: what a run's configuration records (and both its keys hash): the version of each part that made its results
RUN_VERSIONS = {"detector": DETECTOR_VERSION, "validator": VALIDATOR_VERSION}
