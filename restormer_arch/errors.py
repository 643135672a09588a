"""The one error type for a user's mistake: the CLI prints its message as one line and exits 2."""


class UserError(Exception):
    """A mistake in the user's options, files or command line (not a bug): reported as one line, exit code 2."""


class OptionsError(UserError):
    """An option file, or a component it builds, is wrong; the message names the file or the option key."""


class OutputError(UserError):
    """An output location cannot be written, or two outputs would be written to one path."""
