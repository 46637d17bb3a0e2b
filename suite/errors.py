"""The suite's two user-facing errors, below every module that raises them.

The CLI turns each into one line on stderr: a :class:`UsageError` (a mistake on the command
line or in a config) exits 2, a :class:`DataError` (a data set or input file that is missing,
corrupt or malformed) exits 1.
"""


class UsageError(Exception):
    """A mistake on the command line or in a config; reported as one line, exit code 2."""


class DataError(RuntimeError):
    """A data set or input file is missing, corrupt or malformed; the message is one line."""
