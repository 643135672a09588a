"""The one error type for a user's mistake: the CLI prints its message as one line and exits 2."""


class UserError(Exception):
    """A mistake in the user's options, files or command line (not a bug): reported as one line, exit code 2."""
