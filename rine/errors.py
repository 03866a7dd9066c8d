class RineError(Exception):
    """A problem the user can fix (bad config, bad data, diverged training).

    train.py prints its message as one line and exits non-zero, without a traceback,
    so the message must say what went wrong and what to do about it.
    """
