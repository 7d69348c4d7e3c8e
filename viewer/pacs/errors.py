"""One exception type for everything that goes wrong talking to a PACS: its message is one line that names the
node and the problem (refused, timed out, association rejected and why, n of m images failed, malformed response)."""
from __future__ import annotations


class PacsError(Exception):
    """A failure the user can act on; ``str()`` is the whole message."""


class Cancelled(PacsError):
    """The user cancelled a transfer; what was complete is kept, the rest can be fetched by running it again."""
