"""Errors a user can cause when choosing tasks or data; the command line prints them as one line."""


class TaskError(ValueError):
    """An unknown task name or an invalid task option."""


class DataError(TaskError):
    """A data set that cannot be found or read where the user pointed."""


class DataMissing(DataError):
    """A data set absent where the user pointed (no --data-root, no such folder, files not
    there), as opposed to one present but unreadable."""
