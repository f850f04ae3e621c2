"""The one exception type for errors a user can cause (paths, data, config)."""


class EdgeTrainError(Exception):
    """A problem the user can fix: the message says what was wrong and what to do.

    The CLI prints it without a traceback and exits with status 2.
    """
