"""Compute a reproduction's pending work units in worker processes (``vcreg reproduce --jobs``).

Units are independent (each one's ``params`` determine its result), so ``jobs`` workers compute
them at once and the parent stores each result in the unit cache as it arrives; the claims then
summarize from the cache exactly as after a sequential run. Each worker gets
``cpu_count // jobs`` torch threads: the small encoders of the presets use a second thread
poorly, so two one-thread runs at once finish sooner than two two-thread runs in a row. A unit
that fails in a worker is left uncached and recomputed, with its error recorded, by the claim
that needs it. Ctrl-C (or SIGTERM) cancels the queue; finished units stay cached. Warnings a
unit raises in a worker are re-issued in the parent, so that they reach the user through the
parent's one channel (the CLI's ``warning:`` line), not as raw text from each worker.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import pickle
import time
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import torch

from vcreg._device import resolve_device

__all__ = ["compute_pending", "default_jobs", "worker_threads"]

MAX_DEFAULT_JOBS = 4  # past this, memory (one dataset copy per worker) outgrows the gain


def default_jobs(device: str = "auto") -> int:
    """``vcreg reproduce``'s default: one worker per CPU (at most 4) on the CPU, 1 on a GPU
    (workers would share one device)."""
    if resolve_device(device).type != "cpu":
        return 1
    return max(1, min(MAX_DEFAULT_JOBS, os.cpu_count() or 1))


def worker_threads(jobs: int) -> int:
    """Torch threads per worker: the CPUs shared evenly, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _run(module: str, unit: Any, ctx: Any) -> tuple[dict[str, Any], float, list]:
    t0 = time.time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the parent's filters decide what is shown
        value = importlib.import_module(module).run_unit(unit, ctx)
    return value, time.time() - t0, [(_portable(w.category), str(w.message)) for w in caught]


def _portable(category: type[Warning]) -> type[Warning]:
    """``category``, or ``UserWarning`` if it cannot travel back to the parent (pickle)."""
    try:
        pickle.loads(pickle.dumps(category))
    except Exception:  # noqa: BLE001 - a class defined in a function, say
        return UserWarning
    return category


def compute_pending(
    pending: list[tuple[str, Any]],
    cache: Any,
    ctx: Any,
    jobs: int,
    on_done: Callable[[Any], None],
    say: Callable[[str], None],
) -> int:
    """Compute ``pending`` = ``[(module name, unit), ...]`` in ``jobs`` processes, largest
    estimated cost first; store each result with ``cache.put`` and call ``on_done(unit)``.

    Returns the number of units computed. Worker errors are reported with ``say`` and leave
    the unit uncached (its claim recomputes it in the main process and records the error).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs}")
    todo = sorted(pending, key=lambda mu: -mu[1].weight)
    mp = multiprocessing.get_context("spawn")  # fork after torch's thread pools is unsafe
    done = 0
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(todo)),
        mp_context=mp,
        initializer=_init_worker,
        initargs=(worker_threads(jobs),),
    ) as pool:
        futures: dict[Future, Any] = {pool.submit(_run, m, u, ctx): u for m, u in todo}
        try:
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in finished:
                    unit = futures.pop(fut)
                    try:
                        value, seconds, caught = fut.result()
                    except Exception as exc:  # noqa: BLE001 - recomputed (and recorded) later
                        say(f"{unit.label}: failed in a worker ({type(exc).__name__}: {exc})")
                        continue
                    for category, message in caught:
                        warnings.warn(message, category, stacklevel=1)
                    cache.put(unit.namespace, unit.params, value, seconds)
                    on_done(unit)
                    done += 1
        except BaseException:
            # KeyboardInterrupt here or re-raised from a worker's interrupted training
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return done
