"""Go regular expressions, compiled by RE2 itself (``google-re2``): the syntax Flux's fields
accept (``regexp.Compile``), matching in linear time whatever the pattern.

Used for an Alert's inclusion and exclusion lists, an ImageRepository's ``exclusionList`` and an
ImagePolicy's ``filterTags``."""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["compile_pattern"]


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """``pattern`` compiled by RE2, as Go's ``regexp.Compile`` would (``search``, ``groups``,
    ``groupindex`` as Python's ``re``); ``ValueError`` with RE2's reason if it does not
    compile."""
    import re2  # type: ignore[import-untyped]  # loaded by the first pattern, not at start

    options = re2.Options()
    options.log_errors = False  # RE2 would print the error to stderr, past structlog
    try:
        return re2.compile(pattern, options)
    except re2.error as err:
        detail = err.args[0] if err.args else b""
        text = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        raise ValueError(text) from None
