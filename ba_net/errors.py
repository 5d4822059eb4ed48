"""The errors that reach the user as one line (the tools print them without a traceback)."""


class BaNetError(Exception):
    """Base class: a problem with the user's input or environment, with the fix in its text."""


class ConfigError(BaNetError):
    """A configuration file or override is malformed, unknown, of the wrong type or out of range."""


class DataError(BaNetError):
    """The data set (CIFAR-10, CIFAR-100) or an image cannot be found, downloaded or read."""


class RunStateError(BaNetError):
    """A run folder is in a state the command cannot act on (e.g. nothing to resume)."""


class OutputError(BaNetError):
    """A file cannot be written (disk full, read-only or missing folder, a file in the way)."""

    def __init__(self, path, reason: str, fix: str = "free disk space or make the folder writable, or write elsewhere"):
        self.path, self.reason, self.fix = path, reason, fix
        super().__init__(f"cannot write {path} ({reason}); {fix}")


class CheckFailed(BaNetError):
    """A check the command ran did not pass (an export's parity, a measurement that could not be
    taken): the input was fine, the outcome is not. Tools exit 1 for it, 2 for other errors."""
