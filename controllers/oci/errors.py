"""The errors of the OCI client.

Errors are :class:`OCIError` subclasses; their messages name the registry, repository and
reference, never a credential, token or Secret value:

- :class:`InvalidReference`: the URL, digest, SemVer range or filter is malformed;
- :class:`AuthenticationError`: a Secret is unusable, or the registry or its token server
  refused the request;
- :class:`RegistryError`: the registry could not be reached, timed out or answered an error;
- :class:`ContentError`: what the registry served is unacceptable: a digest that does not
  match, too large, an unsupported media type, no matching layer.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ContentError",
    "InvalidReference",
    "OCIError",
    "RegistryError",
]


class OCIError(Exception):
    """An OCI operation failed; ``message`` says what and why, without secrets."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidReference(OCIError):
    """The URL, digest, SemVer range or SemVer filter is malformed."""


class AuthenticationError(OCIError):
    """A Secret is unusable, or the registry (or its token server) refused the request."""


class RegistryError(OCIError):
    """The registry could not be reached, timed out, or answered with an error."""


class ContentError(OCIError):
    """What the registry served is unacceptable: wrong digest, too large, unsupported."""
