"""The root of the domain exceptions: a problem with the input, the data or the environment, never a bug."""

from __future__ import annotations


class DomainError(Exception):
    """Base class of every domain error (the indexer's, the catalog's and the contracts' own)."""

    #: permanent errors are not worth retrying (a worker fails the job at once)
    permanent: bool = True


class InvalidInputError(DomainError):
    """The input is malformed or out of range (a bad model id, parameter, cursor or result document)."""


class BundleError(DomainError):
    """Base class of the bundle errors (a malformed bundle, one of another model, one that cannot be read)."""


class BundleFormatError(BundleError, InvalidInputError):
    """A bundle is malformed, of an unknown schema, its sha256 does not match, or an option is unknown."""
