"""Place a reproduction's work units on the ranks of a ``torchrun`` job.

``torchrun --nproc_per_node=G [--nnodes=N ...] -m vcreg reproduce ...`` starts one process per
device. Each joins the job's process group (:func:`vcreg.distributed.init_from_env`: NCCL on
CUDA, gloo on CPU; device ``cuda:LOCAL_RANK``) and a gloo group that carries this module's
messages (small JSON documents; no pickle, no shared file system):

1. rank 0 plans the units, reads its unit cache and broadcasts the pending units; every rank
   checks that its machine holds the data of its units (``check``), and all stop with the
   list of what is missing where if one does not;
2. every rank computes its share, :func:`assign` — longest estimated unit first, each to the
   rank with the least estimated work so far: a deterministic function of the pending list and
   the world size — one unit at a time on its own device, **rank-local**
   (:func:`vcreg.distributed.rank_local`: a unit never sees the group, so it computes exactly
   as in a single process);
3. each result goes to rank 0 as soon as it is computed; a receiver thread on rank 0 stores it
   in the unit cache while rank 0 computes its own share, so a killed job loses only the units
   in flight and a restarted one resumes from the cache;
4. rank 0 summarizes from the cache and writes the report; the other ranks return.

A unit that fails on a rank is reported and left uncached; rank 0 recomputes it (and records
its error) when its claim needs it, as after ``--jobs``.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from vcreg.distributed import init_from_env, rank_local
from vcreg.experiments.cache import to_jsonable

__all__ = ["Job", "assign", "makespan", "join", "compute_on_ranks", "serve"]

# Collectives of this group wait for whole training runs (rank 0 waits for the others' results,
# they wait at the end for rank 0's): hours on a GPU, so the timeout is far above any unit.
WAIT = datetime.timedelta(days=7)

_HEADER, _PAYLOAD = 1, 2  # message tags
_RESULT, _FAILED, _DONE, _CHECK = 0, 1, 2, 3  # message kinds


@dataclass
class Job:
    """This process's place in the job: ``world`` ranks, this one's ``rank`` and ``device``.
    ``group`` is the gloo group of the placement messages (None for a single process)."""

    world: int = 1
    rank: int = 0
    device: str = "cpu"
    group: Any = None
    host: str = field(default_factory=socket.gethostname)
    ranks: list[dict[str, Any]] = field(default_factory=list)  # filled on rank 0 at the end
    _placed: bool = False

    @property
    def distributed(self) -> bool:
        return self.world > 1


def assign(weights: Sequence[float], world: int) -> list[list[int]]:
    """Indices of the units each of ``world`` ranks computes, in the order it computes them.

    Longest processing time first (Graham 1969; at most 4/3 of the optimal makespan): units in
    order of decreasing weight (ties: lower index first), each to the rank with the least
    assigned weight so far (ties: lower rank). Deterministic: every rank derives the same plan.
    """
    if world < 1:
        raise ValueError(f"world size must be >= 1, got {world}")
    loads, plan = [0.0] * world, [[] for _ in range(world)]
    for i in sorted(range(len(weights)), key=lambda i: (-float(weights[i]), i)):
        r = min(range(world), key=lambda r: (loads[r], r))
        plan[r].append(i)
        loads[r] += float(weights[i])
    return plan


def makespan(weights: Sequence[float], world: int) -> float:
    """Total weight of the busiest rank under :func:`assign` (the wall time of the job when the
    weights are times)."""
    return max(sum(float(weights[i]) for i in idx) for idx in assign(weights, world))


@contextlib.contextmanager
def join(device: str) -> Iterator[Job]:
    """Join the ``torchrun`` job this process belongs to (a single-process :class:`Job`
    otherwise); inside, vcreg's own collectives are rank-local (see the module docstring)."""
    world, rank, created = init_from_env(torch.device(device))
    if world == 1:
        with rank_local():
            yield Job(device=device)
        return
    group = dist.new_group(backend="gloo", timeout=WAIT)
    job = Job(world=world, rank=rank, device=device, group=group)
    try:
        with rank_local():
            yield job
    except BaseException as exc:
        if job.rank == 0 and not job._placed:  # the other ranks wait for the unit list
            with contextlib.suppress(Exception):
                _broadcast(job, {"abort": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        if created:
            dist.destroy_process_group()


def _encode(obj: Any) -> torch.Tensor:
    data = json.dumps(to_jsonable(obj), allow_nan=False).encode("utf-8")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _decode(buf: torch.Tensor) -> Any:
    return json.loads(bytes(buf.numpy()).decode("utf-8"))


def _broadcast(job: Job, obj: Any = None) -> Any:
    """``obj`` from rank 0 to every rank (JSON)."""
    payload = _encode(obj) if job.rank == 0 else None
    size = torch.tensor([payload.numel() if payload is not None else 0], dtype=torch.int64)
    dist.broadcast(size, src=0, group=job.group)
    buf = payload if payload is not None else torch.empty(int(size.item()), dtype=torch.uint8)
    dist.broadcast(buf, src=0, group=job.group)
    job._placed = True
    return _decode(buf)


def _send(job: Job, kind: int, index: int, obj: Any) -> None:
    payload = _encode(obj)
    head = torch.tensor([kind, index, payload.numel()], dtype=torch.int64)
    dist.send(head, dst=0, group=job.group, tag=_HEADER)
    dist.send(payload, dst=0, group=job.group, tag=_PAYLOAD)


def _recv(job: Job) -> tuple[int, int, int, Any]:
    """``(sender rank, kind, unit index, document)`` of the next message to rank 0."""
    head = torch.zeros(3, dtype=torch.int64)
    src = dist.recv(head, src=None, group=job.group, tag=_HEADER)
    kind, index, size = (int(v) for v in head.tolist())
    buf = torch.empty(size, dtype=torch.uint8)
    dist.recv(buf, src=src, group=job.group, tag=_PAYLOAD)
    return src, kind, index, _decode(buf)


def _compute(module: str, unit: Any, ctx: Any) -> tuple[dict[str, Any], float]:
    t0 = time.time()
    with rank_local():
        value = importlib.import_module(module).run_unit(unit, ctx)
    return to_jsonable(value), time.time() - t0


def _rank_info(job: Job, units: int, seconds: float) -> dict[str, Any]:
    dev = torch.device(job.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    return {
        "rank": job.rank,
        "host": job.host,
        "device": job.device,
        "device_name": name,
        "units": units,
        "seconds": seconds,
    }


class _Receiver(threading.Thread):
    """Rank 0's thread storing the other ranks' results in the cache as they arrive."""

    def __init__(self, job, units, cache, on_done, say, lock: threading.Lock) -> None:
        super().__init__(name="vcreg-placement-receiver", daemon=True)
        self.job, self.units, self.cache = job, units, cache
        self.on_done, self.say, self.lock = on_done, say, lock
        self.ranks: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while len(self.ranks) < self.job.world - 1:
                src, kind, index, doc = _recv(self.job)
                if kind == _DONE:
                    self.ranks.append(doc)
                    continue
                unit = self.units[index][1]
                with self.lock:  # the progress display is shared with the main thread
                    if kind == _FAILED:
                        self.say(f"{unit.label}: failed on rank {src} ({doc['error']})")
                        continue
                    self.cache.put(unit.namespace, unit.params, doc["value"], doc["seconds"])
                    self.on_done(unit)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread
            self.error = exc


def _task(module: str, unit: Any) -> dict[str, Any]:
    return {"module": module, "unit": asdict(unit)}


Check = Callable[[list[Any]], list[str]]


def _agree_on_inputs(job: Job, problems: list[str]) -> None:
    """Every rank's ``problems`` (what its machine lacks) reach rank 0, which sends the union
    back; every rank raises ``FileNotFoundError`` naming them when there is any."""
    if job.rank == 0:
        found = list(problems)
        for _ in range(job.world - 1):
            src, _kind, _index, doc = _recv(job)
            found += [f"rank {src} ({doc['host']}): {p}" for p in doc["problems"]]
        found = _broadcast(job, {"problems": found})["problems"]
    else:
        _send(job, _CHECK, -1, {"host": job.host, "problems": problems})
        found = _broadcast(job)["problems"]
    if found:
        raise FileNotFoundError("; ".join(found))


def compute_on_ranks(
    job: Job,
    pending: list[tuple[str, Any]],
    cache: Any,
    ctx: Any,
    on_done: Callable[[Any], None],
    say: Callable[[str], None],
    check: Check | None = None,
) -> int:
    """Rank 0: place ``pending`` = ``[(module, unit), ...]`` on the job's ranks, compute this
    rank's share, and store every rank's results in ``cache`` (``on_done(unit)`` after each).
    ``check(units)`` lists what this machine lacks to compute ``units`` (rank 0 checks them
    all: it recomputes a unit that failed elsewhere). Returns the number of units stored;
    fills ``job.ranks`` with what each rank did."""
    _broadcast(job, {"tasks": [_task(m, u) for m, u in pending]})
    _agree_on_inputs(job, check([u for _, u in pending]) if check else [])
    plan = assign([u.weight for _, u in pending], job.world)
    lock = threading.Lock()
    receiver = _Receiver(job, pending, cache, on_done, say, lock)
    receiver.start()
    done, t0 = 0, time.time()
    for i in plan[0]:
        module, unit = pending[i]
        try:
            value, seconds = _compute(module, unit, ctx)
        except Exception as exc:  # noqa: BLE001 - recomputed (and recorded) by its claim
            with lock:
                say(f"{unit.label}: failed on rank 0 ({type(exc).__name__}: {exc})")
            continue
        with lock:
            cache.put(unit.namespace, unit.params, value, seconds)
            on_done(unit)
        done += 1
    own = _rank_info(job, done, time.time() - t0)
    receiver.join()
    if receiver.error is not None:
        raise RuntimeError(f"lost the results of the other ranks: {receiver.error}")
    dist.barrier(group=job.group)
    job.ranks = sorted([own, *receiver.ranks], key=lambda r: r["rank"])
    return done + sum(r["units"] for r in receiver.ranks)


def serve(
    job: Job, ctx: Any, unit_type: Callable[..., Any], check: Check | None = None
) -> dict[str, Any]:
    """Ranks other than 0: receive the pending units, check this machine holds their data
    (``check``, as :func:`compute_on_ranks`), compute this rank's share (rank-local), send
    each result to rank 0. ``unit_type(**fields)`` rebuilds a unit. Returns what this rank did
    (``rank``, ``host``, ``device``, ``units``, ``seconds``)."""
    msg = _broadcast(job)
    if "abort" in msg:
        raise RuntimeError(f"rank 0 stopped before placing the units: {msg['abort']}")
    tasks = [(t["module"], unit_type(**t["unit"])) for t in msg["tasks"]]
    plan = assign([u.weight for _, u in tasks], job.world)
    _agree_on_inputs(job, check([tasks[i][1] for i in plan[job.rank]]) if check else [])
    done, t0 = 0, time.time()
    for i in plan[job.rank]:
        module, unit = tasks[i]
        try:
            value, seconds = _compute(module, unit, ctx)
        except Exception as exc:  # noqa: BLE001 - rank 0 recomputes it and records the error
            _send(job, _FAILED, i, {"error": f"{type(exc).__name__}: {exc}"})
            continue
        _send(job, _RESULT, i, {"value": value, "seconds": seconds})
        done += 1
    info = _rank_info(job, done, time.time() - t0)
    _send(job, _DONE, -1, info)
    dist.barrier(group=job.group)
    return info
