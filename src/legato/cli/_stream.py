"""``legato run --stream``: model tokens printed as they arrive, labelled by step.

Each line starts with the step's label (``poem | ``, ``summary[3] | `` for a map
item). When another step's tokens arrive, the current line ends and a line with
the other label starts, so the text of parallel steps interleaves by line and
never inside one. On a terminal the label is coloured and control characters in
the model's text (escape sequences, carriage returns) are dropped; piped, the
output is plain text.
"""

from __future__ import annotations

import re
from typing import TextIO

from legato.engine import StepToken

__all__ = ["TokenPrinter"]

_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # CSI sequences, C0/C1


class TokenPrinter:
    """A :func:`legato.engine.stream_tokens` callback that writes to ``out``."""

    def __init__(self, out: TextIO, *, terminal: bool) -> None:
        self.out = out
        self.terminal = terminal
        self.label: str | None = None
        self.line_start = True

    def __call__(self, token: StepToken) -> None:
        label = token.step if token.index is None else f"{token.step}[{token.index}]"
        if label != self.label:
            self.end_line()
            self.label = label
        for i, piece in enumerate(token.text.split("\n")):
            if i:
                if self.line_start:
                    self.out.write(self.prefix(label))
                self.out.write("\n")
                self.line_start = True
            if self.terminal:
                piece = _CONTROL.sub("", piece)
            if piece:
                if self.line_start:
                    self.out.write(self.prefix(label))
                self.out.write(piece)
                self.line_start = False
        self.out.flush()

    def prefix(self, label: str) -> str:
        return f"\x1b[36m{label}\x1b[0m \x1b[2m│\x1b[0m " if self.terminal else f"{label} | "

    def end_line(self) -> None:
        """End the current line (before other output, and when the run ends)."""
        if not self.line_start:
            self.out.write("\n")
            self.out.flush()
            self.line_start = True
