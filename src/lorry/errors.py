"""Every exception lorry raises, in one tree.

::

    LorryError
    ├── ValidationError (ValueError)          bad input, rejected before anything is written
    │   ├── InvalidNameError                  artifact, project, entity, type, alias names
    │   ├── InvalidMetadataError              metadata that is not a JSON object of finite values
    │   └── InvalidPathError                  entry paths that are empty or escape their root
    ├── UsageError (RuntimeError)             a call made in the wrong state (no run, not logged yet, ...)
    ├── NotFoundError (LookupError)
    │   ├── ArtifactNotFoundError             no such collection, version or alias
    │   │   └── ArtifactDeletedError          the version existed and was deleted (or expired)
    │   ├── RunNotFoundError
    │   ├── ObjectNotFoundError               no such key in a store
    │   └── StoreNotFoundError                no store at all where one was to be read
    ├── LocalFileError (OSError)              a local file is missing, unreadable or of the wrong kind
    ├── IntegrityError                        bytes that do not match their digest
    │   └── SourceChangedError                a source file changed while it was being logged
    ├── ConflictError                         a conditional write lost: the object exists or changed
    ├── StoreError                            the store failed (I/O error, server error, bad record)
    │   ├── TransientError                    may succeed if tried again: reset, timeout, 5xx, 429, SlowDown
    │   ├── AccessDeniedError                 credentials refused or missing: retrying cannot help
    │   ├── UntrustedCertificateError         the server's TLS certificate failed verification
    │   ├── CorruptRecordError                a record or manifest on the store cannot be parsed
    │   └── UnsafeStoreError                  the server ignores conditional writes: versions refused
    └── ArtifactFailedError                   logging an artifact failed; ``__cause__`` says why

Backend exceptions are mapped at the boundary with ``raise ... from``, so the original stays attached.
"""

from __future__ import annotations


class LorryError(Exception):
    """The root of every error lorry raises."""


class ValidationError(LorryError, ValueError):
    """Input that lorry refuses; nothing was written."""


class InvalidNameError(ValidationError):
    """A name, type, alias, project or entity that breaks the naming rules."""


class InvalidMetadataError(ValidationError):
    """Metadata that is not a JSON object with finite numbers and string keys."""


class InvalidPathError(ValidationError):
    """An entry path that is empty, absolute, or escapes its root with ``..``."""


class UsageError(LorryError, RuntimeError):
    """A call made in a state that does not allow it."""


class NotFoundError(LorryError, LookupError):
    """Something looked up does not exist."""


class ArtifactNotFoundError(NotFoundError):
    """No artifact collection, version or alias by that name."""


class ArtifactDeletedError(ArtifactNotFoundError):
    """The version existed and was deleted, or its time to live ran out; its number stays taken."""


class RunNotFoundError(NotFoundError):
    """No run with that id."""


class ObjectNotFoundError(NotFoundError):
    """No object under that key in the store."""


class StoreNotFoundError(NotFoundError):
    """Reading a store that does not exist (a mistyped path): nothing is created there."""


class LocalFileError(LorryError, OSError):
    """A local file that is missing, unreadable, or not the kind of file the call needs."""


class IntegrityError(LorryError):
    """Bytes that do not match the digest recorded for them."""


class SourceChangedError(IntegrityError):
    """A source file changed after it was added; the version that holds it fails."""


class ConflictError(LorryError):
    """A conditional write found the object already there, or changed since it was read."""


class StoreError(LorryError):
    """The store failed to carry out a request."""


class TransientError(StoreError):
    """A failure that may pass: the connection dropped, the request timed out, the server is busy.

    ``retry_after`` is the delay the server asked for (``Retry-After``), in seconds, if it named one.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccessDeniedError(StoreError):
    """The server refused the credentials, or they are missing; trying again cannot help."""


class UntrustedCertificateError(StoreError):
    """The server's TLS certificate failed verification (unknown authority, wrong name, expired); the
    message names the endpoint and the setting (``ca_bundle``) that makes a private CA trusted."""


class CorruptRecordError(StoreError):
    """A record or manifest on the store that cannot be parsed or breaks its own rules."""


class UnsafeStoreError(StoreError):
    """The store's server ignores conditional writes, so concurrent writers could overwrite each other's
    versions; lorry refuses to assign versions there unless told that only one process writes."""


class ArtifactFailedError(LorryError):
    """Logging an artifact failed and nothing of it became visible; ``__cause__`` holds the reason."""
