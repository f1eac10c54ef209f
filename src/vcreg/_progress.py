"""Progress output, one rule for every command: bars on a terminal, one line per step elsewhere.

A progress bar redraws itself with carriage returns; in a redirected log, a CI transcript or a
pipe those redraws pile up as thousands of partial lines. So bars are drawn only when standard
error (where tqdm draws) is a terminal, or in a Jupyter kernel (tqdm draws a widget there);
everywhere else, and whenever the user turns bars off (``--no-progress``), a long job prints one
plain line per epoch / per unit of work instead.

Every ``progress`` argument of vcreg (``vcreg.training.train``, ``run_reproduction``) and every
command goes through :func:`resolve_progress`:

* ``True`` / ``"auto"``: bars under the rule above, else lines;
* ``"log"``: lines only (what ``--no-progress`` asks for);
* ``"bar"``: bars whatever the stream;
* ``False`` / ``None`` / ``"off"``: nothing.

:class:`WorkProgress` reports a job made of units with estimated costs (``vcreg reproduce``):
its time-left estimate comes from the costs of the units still to run, scaled by how long the
finished units took relative to their estimates (shrunk toward the estimates while few have
finished), never from the rate of the first units — those are the largest (they are started
first), so their rate said nothing about the rest.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["PROGRESS_MODES", "resolve_progress", "bars_enabled", "on_terminal", "WorkProgress"]

PROGRESS_MODES = ("auto", "bar", "log", "off")


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: standard error) shows bars: a terminal or a Jupyter kernel."""
    stream = sys.stderr if stream is None else stream
    if type(stream).__module__.startswith("ipykernel"):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def resolve_progress(progress: bool | str | None, stream: TextIO | None = None) -> str:
    """``"bar"``, ``"log"`` or ``"off"`` for a ``progress`` argument (module docstring)."""
    if progress is None or progress is False or progress == "off":
        return "off"
    if progress is True or progress == "auto":
        return "bar" if on_terminal(stream) else "log"
    if progress in ("bar", "log"):
        return str(progress)
    raise ValueError(f"progress must be True, False or one of {PROGRESS_MODES}, got {progress!r}")


def bars_enabled(requested: bool = True, stream: TextIO | None = None) -> bool:
    """Draw progress bars? Only when requested and the stream is a terminal (module docstring)."""
    return resolve_progress(bool(requested), stream) == "bar"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class WorkProgress:
    """Progress of ``n_units`` units of work with estimated costs (seconds), ``jobs`` at a time.

    ``done(label, weight, seconds)`` after each unit (``weight``: its estimated cost; ``seconds``:
    what it took); :meth:`eta_seconds` is the time left estimated from the costs of the units
    still to run (module docstring). In ``"bar"`` mode one tqdm bar shows the share of the
    estimated cost done and that estimate; in ``"log"`` mode each unit prints one line.
    """

    def __init__(
        self,
        total_weight: float,
        n_units: int,
        mode: str = "log",
        jobs: int = 1,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.total = max(float(total_weight), 0.0)
        self.n_units, self.jobs, self.mode = int(n_units), max(1, int(jobs)), mode
        self.done_weight = self.done_seconds = 0.0
        self.n_done = 0
        self.started = time.time()
        self._write = write
        self.bar: Any = None
        if mode == "bar" and n_units > 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=100,
                dynamic_ncols=True,
                bar_format="{desc} |{bar}| {percentage:3.0f}% of est. cost [{elapsed}] {postfix}",
            )

    def eta_seconds(self) -> float:
        """Estimated wall time left: remaining estimated cost x (time taken / estimated cost of
        the finished units, shrunk toward 1 by a prior worth a quarter of the total cost),
        spread over the workers still busy."""
        remaining = max(self.total - self.done_weight, 0.0)
        prior = self.total / 4
        scale = (self.done_seconds + prior) / (self.done_weight + prior) if prior > 0 else 1.0
        workers = max(1, min(self.jobs, self.n_units - self.n_done))
        return remaining * scale / workers

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(text, refresh=True)

    def done(self, label: str, weight: float, seconds: float) -> None:
        self.n_done += 1
        self.done_weight += float(weight)
        self.done_seconds += max(float(seconds), 0.0)
        left = f"about {_duration(self.eta_seconds())} left"
        if self.bar is not None:
            frac = self.done_weight / self.total if self.total > 0 else 1.0
            self.bar.n = min(100, round(100 * frac))  # never past the total (tqdm warns)
            self.bar.set_postfix_str(f"{self.n_done}/{self.n_units} units, {left}", refresh=True)
        elif self.mode == "log":
            self.write(
                f"[{self.n_done}/{self.n_units} units, {_duration(time.time() - self.started)}] "
                f"{label}: {seconds:.0f} s (estimated {weight:.0f} s); {left} "
                "(from the units' cost estimates)"
            )

    def write(self, text: str) -> None:
        if self._write is not None:
            self._write(text)
        elif self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
