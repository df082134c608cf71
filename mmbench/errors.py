"""The one exception type the harness raises for bad user input, and the suggestion its messages carry.

The CLI prints its message as a single line and exits non-zero; nothing else is caught.
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable

# what str.splitlines splits at: a message holding one (a key or value from a file, another library's error) is
# still one line, with the break written as an escape
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


class MMBenchError(ValueError):
    """Bad input from the user: the message names the file, field or value and how to fix it, on one line."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (_LINE_BREAKS.sub(lambda m: repr(m.group())[1:-1], args[0]),)
        super().__init__(*args)


def did_you_mean(name: object, choices: Iterable[object]) -> str:
    """ " (did you mean 'x'?)" for the closest of ``choices`` (difflib), or '' when none is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
