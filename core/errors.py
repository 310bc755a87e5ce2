"""The one error type a user sees: a message that names the bad input and what to do."""


class IrlLensError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""
