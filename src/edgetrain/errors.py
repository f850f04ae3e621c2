"""The one exception type for errors a user can cause (paths, data, config), and the one
wording of the operating system's errors (a full disk, a read-only folder, a missing path)."""

import errno


class EdgeTrainError(Exception):
    """A problem the user can fix: the message says what was wrong and what to do.

    The CLI prints it without a traceback and exits with status 2.
    """


def describe_os_error(exc: OSError) -> str:
    """One line for an error of the operating system: what failed, on which path, and what to
    do about the common ones."""
    what = exc.strerror or str(exc) or type(exc).__name__
    where = f": {exc.filename}" if exc.filename else ""
    hint = {
        errno.ENOSPC: " (the disk is full: free space or choose another --out)",
        errno.EROFS: " (a read-only file system: choose another --out)",
        errno.EACCES: " (no permission: choose another --out)",
    }.get(exc.errno or 0, "")
    return f"{what}{where}{hint}"
