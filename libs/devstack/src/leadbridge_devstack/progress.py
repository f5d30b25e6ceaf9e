"""The progress callback the start-up steps take: one line of text per call (``print``, or ``lambda *_: None``)."""

from __future__ import annotations

from collections.abc import Callable

Log = Callable[[str], object]
