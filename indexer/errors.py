"""Domain errors of the indexer: each one is a message a user can act on."""

from __future__ import annotations

from contracts.errors import DomainError
from contracts.errors import InvalidInputError as InvalidInputError


class IndexerError(DomainError):
    """Base class: a problem with the input or the environment, not a bug."""


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


class StreamingUnsupportedError(IndexerError):
    """The model cannot be driven one decoder layer at a time (its checkpoint or forward forbids it)."""


class HubUnavailableError(IndexerError):
    """The hub could not be reached (a transient failure: retrying may help)."""

    permanent = False
