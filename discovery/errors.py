"""Errors raised by the discovery library; each says whether a retry can help."""

from __future__ import annotations


class DiscoveryError(Exception):
    """Base of every error this library raises."""

    retryable: bool = False


class DuplicateInstance(DiscoveryError):
    """Another live process already holds this instance id in Consul."""


class WatchNotReady(DiscoveryError, TimeoutError):
    """The watch has not completed a first query against Consul in time."""

    retryable = True


class NoInstanceAvailable(DiscoveryError):
    """No instance could answer: none registered and passing, or every one tried failed.

    The gateway maps it to 503 with code 5030.
    """

    retryable = True


class OutcomeUnknown(NoInstanceAvailable):
    """A non-idempotent request failed after it may have reached an instance.

    It was not retried; whether it took effect is unknown.
    """


class ConsulUnavailable(DiscoveryError):
    """Consul could not be reached (or refused the call) when it was needed."""

    retryable = True
