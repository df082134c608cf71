"""The one exception type the harness raises for bad user input.

The CLI prints its message as a single line and exits non-zero; nothing else is caught.
"""


class MMBenchError(ValueError):
    """Bad input from the user: the message names the file, field or value and how to fix it."""
