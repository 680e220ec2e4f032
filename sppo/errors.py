"""One exception type for input problems: the CLIs print it as a single line and exit non-zero."""


class UserError(Exception):
    """Bad input (file, field, model path...). The message is one line naming what is wrong."""
