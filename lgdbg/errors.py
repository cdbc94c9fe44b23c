"""Errors that front ends turn into one clear line (never a traceback)."""


class LgdbgError(Exception):
    """Something went wrong that the user should hear about in one line."""


class UsageError(LgdbgError):
    """Bad command-line input or a bad image: status 2."""


class ImageError(UsageError):
    """The guest image cannot be loaded (not ELF, no magic, ...)."""
