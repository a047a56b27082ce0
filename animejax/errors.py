"""The base of every error caused by the user's input rather than a bug.

The command line prints these as one clear message instead of a traceback.
"""


class UserError(Exception):
    """Bad input: a config value, a dataset, a checkpoint or a file to fix."""


class ConfigError(UserError, ValueError):
    """A config value that names nothing known (unknown method, source, optimizer...)."""
