"""The one exception type the harness raises for bad user input, and the suggestion its messages carry.

The CLI prints its message as a single line and exits non-zero; nothing else is caught.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class MMBenchError(ValueError):
    """Bad input from the user: the message names the file, field or value and how to fix it."""


def did_you_mean(name: object, choices: Iterable[object]) -> str:
    """ " (did you mean 'x'?)" for the closest of ``choices`` (difflib), or '' when none is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
