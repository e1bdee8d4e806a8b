"""User-facing errors: the CLI prints them in one line and exits with status 2."""
from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (config, arguments, files); never a bug of ours."""


class ConfigError(UserError):
    """A config problem, located by file and key path (``model.layers[3].kernel_size``)."""

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file, self.path, self.message = str(file), path, message
        where = f"{self.file}: {path}" if path else self.file
        super().__init__(f"{where}: {message}")


class DataError(UserError):
    """A data set that cannot be had or is not what it claims: the message names the file or
    source, the array and the value, and says what was tried and how to fix it."""
