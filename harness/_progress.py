"""Progress for long work: a tqdm bar on a terminal, nothing when output is piped."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    """A thin wrapper over tqdm that is silent unless enabled (default: stderr is a terminal)."""

    def __init__(self, total: int, *, initial: int = 0, enabled: bool | None = None, desc: str = ""):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._bar = tqdm(total=total, initial=initial, desc=desc, leave=False) if enabled else None

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, **values) -> None:
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def write(self, line: str) -> None:
        """Print a line without breaking the bar."""
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
