"""The worker's exceptions: one base class; each says whether a retry can help."""

from __future__ import annotations

from contracts.errors import ErrorCode


class WorkerError(Exception):
    """Base of every error raised on purpose by the dialogue worker."""

    retryable: bool = False


class RequestError(WorkerError):
    """A request the caller got wrong or may not make; becomes an error body at the edge."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StorageUnavailable(WorkerError):
    """MongoDB could not be reached or refused a write; retrying later can succeed."""

    retryable = True


class StoreRefused(WorkerError):
    """MongoDB refused a write for a reason a retry will not change (e.g. a document)."""


class StoreMisconfigured(WorkerError):
    """The MongoDB-protocol server cannot serve the platform as it should (a FerretDB
    without its indexes or version guard, a collection sharded on another key)."""


class OutboxUnavailable(WorkerError):
    """Kafka did not take what the worker produces (dead letters, forwards, events);
    retrying later can succeed."""

    retryable = True


class DuplicateWorker(WorkerError):
    """Another worker is already registered and passing under the same instance id."""
