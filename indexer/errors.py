"""Domain errors of the indexer: each one is a message a user can act on."""

from __future__ import annotations


class IndexerError(Exception):
    """Base class: a problem with the input or the environment, not a bug."""

    #: permanent errors are not worth retrying (a worker fails the job at once)
    permanent: bool = True


class ModelNotFoundError(IndexerError):
    """The model id, folder or file does not exist (or the revision is unknown)."""


class GatedModelError(IndexerError):
    """The hub refuses access: the model is gated or private and no valid `HF_TOKEN` was given."""


class UnsafeWeightsError(IndexerError):
    """The model only ships pickle weights (`.bin`/`.pt`), which are never loaded."""


class RemoteCodeRequiredError(IndexerError):
    """The model needs `trust_remote_code`, which is never enabled."""


class UnsupportedArchitectureError(IndexerError):
    """No adapter is registered for the model's `config.model_type`."""


class InsufficientMemoryError(IndexerError):
    """The weights would not fit in the memory of the chosen device."""


class InvalidInputError(IndexerError):
    """A parameter is out of range or malformed."""


class HubUnavailableError(IndexerError):
    """The hub could not be reached (a transient failure: retrying may help)."""

    permanent = False
