"""One exception type for problems a user can fix, so the CLI and the viewer can show them without a traceback."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input: names the file (when there is one) and the problem in one sentence.

    The CLI prints ``str(err)`` and exits non-zero; the viewer shows it in a dialog.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)
