"""``vcreg reproduce`` under ``torchrun``: units placed on 2 gloo ranks (CPU processes, started
with the environment torchrun sets) give the unit cache, verdicts and report of one process;
only rank 0 writes; a rerun resumes from the cache; a failing rank 0 releases the others."""

from __future__ import annotations

import itertools
import json
import os
import socket
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vcreg import distributed as vdist
from vcreg._lock import FolderLock
from vcreg.experiments import run_reproduction
from vcreg.experiments.placement import assign, makespan

WORLD = 2
# C1 (dependence-level units) and a small C2 sweep (3 training units): every kind of unit
KW = dict(
    preset="tiny",
    only="C1,C2",
    device="cpu",
    progress=False,
    overrides={
        "C2": {
            "kinds": ["trained", "random_features"],
            "widths": [16],
            "depths": [2],
            "losses": [],
            "controls": ["no_projector"],
            "image_domain": False,
        }
    },
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, outs: list[str], status_dir: str, kw: dict) -> None:
    """One torchrun-like rank: the environment variables torchrun sets, then the library call."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    status: dict = {}
    try:
        res = run_reproduction(out=outs[rank], **kw)
        status = {"ok": True, "result": res if rank else {"keys": sorted(res)}}
    except BaseException as exc:  # reported to the test, which asserts on it
        status = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "tb": traceback.format_exc(),
        }
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    Path(status_dir, f"rank{rank}.json").write_text(json.dumps(status, default=str))


def _launch(tmp: Path, name: str, kw: dict = KW) -> list[dict]:
    outs = [str(tmp / name), str(tmp / f"{name}-rank1-scratch")]
    status = tmp / f"{name}-status"
    status.mkdir()
    mp.spawn(_rank_main, args=(_free_port(), outs, str(status), kw), nprocs=WORLD, join=True)
    return [json.loads((status / f"rank{r}.json").read_text()) for r in range(WORLD)]


def _untimed(x):
    """``x`` without its wall times (``*seconds*`` keys): the only numbers allowed to differ."""
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if "seconds" not in k}
    return [_untimed(v) for v in x] if isinstance(x, list) else x


def _cache(out: Path) -> dict[str, dict]:
    return {
        str(p.relative_to(out)): _untimed(json.loads(p.read_text())["value"])
        for p in sorted((out / "cache").rglob("*.json"))
    }


def _report_body(out: Path) -> list[str]:
    # the header (command, wall time, load) and the per-claim timing lines differ by design
    lines = (out / "report.md").read_text().splitlines()
    return [x for x in lines if not x.startswith(("Command:", "Measured:", "_"))]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: the same reductions, the same bits
    try:
        res = run_reproduction(out=out, jobs=1, **KW)
    finally:
        torch.set_num_threads(threads)
    return out, res


def test_two_ranks_give_the_units_verdicts_and_report_of_one_process(tmp_path, one_process):
    one, res_one = one_process
    status = _launch(tmp_path, "ddp")
    assert all(s["ok"] for s in status), [s.get("tb") for s in status]
    out = tmp_path / "ddp"
    res = json.loads((out / "results.json").read_text())
    assert res["environment"]["world_size"] == WORLD
    ranks = res["environment"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["units"] >= 1 for r in ranks)
    assert sum(r["units"] for r in ranks) == len(_cache(one))  # each unit computed once
    # rank 1 computed units but wrote nothing: no shared file system is assumed
    assert status[1]["result"]["rank"] == 1 and status[1]["result"]["units"] >= 1
    assert not Path(tmp_path / "ddp-rank1-scratch").exists()
    # the same units (keys) with the same values, bit for bit
    assert _cache(out) == _cache(one) != {}
    for claim in ("C1", "C2"):
        e, e1 = res["experiments"][claim], res_one["experiments"][claim]
        assert "error" not in e, e.get("traceback")
        assert e["verdict"] == e1["verdict"]
        assert _untimed(e["numbers"]) == _untimed(e1["numbers"])
    assert _report_body(out) == _report_body(one)


@pytest.mark.slow  # ~30 s of process start-up; test_reproduce_smoke kills a real torchrun job
def test_a_killed_job_resumes_from_the_cache(tmp_path, one_process):
    one, _ = one_process
    out = tmp_path / "ddp"
    (out / "cache").mkdir(parents=True)
    # a job that stopped after some units: rank 0's cache holds all but two of them
    for rel, path in sorted((p.relative_to(one), p) for p in (one / "cache").rglob("*.json"))[2:]:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(path.read_bytes())
    status = _launch(tmp_path, "ddp")
    assert all(s["ok"] for s in status), [s.get("tb") for s in status]
    res = json.loads((out / "results.json").read_text())
    assert sum(r["units"] for r in res["environment"]["ranks"]) == 2
    assert _cache(out) == _cache(one)


def test_a_failing_rank_0_stops_the_other_ranks(tmp_path):
    out = tmp_path / "locked"
    with FolderLock(out, purpose="test"):  # another process writes there: rank 0 must refuse
        status = _launch(tmp_path, "locked", {**KW, "only": "C1"})
    assert not status[0]["ok"] and "in use" in status[0]["error"]
    assert not status[1]["ok"] and "rank 0 stopped before placing the units" in status[1]["error"]


def _hidden_group_main(rank: int, port: int, status_dir: str) -> None:
    dist.init_process_group("gloo", f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        seen = [vdist.is_distributed(), vdist.world_size(), vdist.rank()]
        with vdist.rank_local():
            inside = [vdist.is_distributed(), vdist.world_size(), vdist.rank()]
            inside.append(list(vdist.init_from_env(torch.device("cpu"))))
            z = torch.arange(3.0).view(3, 1) + rank
            inside.append(vdist.gather_with_grad(z).shape[0])  # no gather: this rank's rows
        after = [vdist.is_distributed(), vdist.gather_with_grad(z).shape[0]]
        Path(status_dir, f"rank{rank}.json").write_text(json.dumps([seen, inside, after]))
    finally:
        dist.destroy_process_group()


def test_rank_local_hides_the_process_group(tmp_path):
    mp.spawn(_hidden_group_main, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        seen, inside, after = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert seen == [True, WORLD, rank]
        assert inside == [False, 1, 0, [1, 0, False], 3]
        assert after == [True, 3 * WORLD]


def _optimum(weights: list[float], world: int) -> float:
    """The best makespan, by trying every assignment (small cases only)."""
    best = float("inf")
    for owners in itertools.product(range(world), repeat=len(weights)):
        loads = [0.0] * world
        for w, r in zip(weights, owners, strict=True):
            loads[r] += w
        best = min(best, max(loads))
    return best


def test_assign_is_longest_first_deterministic_and_near_optimal():
    # Graham's example: LPT gives 10 where 9 is optimal (5+4 | 3+3+3)
    assert assign([5, 4, 3, 3, 3], 2) == [[0, 3], [1, 2, 4]]
    assert makespan([5, 4, 3, 3, 3], 2) == 10 and _optimum([5, 4, 3, 3, 3], 2) == 9
    gen = torch.Generator().manual_seed(0)
    for world in (1, 2, 3):
        for _ in range(20):
            w = (torch.rand(7, generator=gen) * 10).tolist()
            plan = assign(w, world)
            assert sorted(i for ids in plan for i in ids) == list(range(7))
            assert plan == assign(list(w), world)
            assert makespan(w, world) <= (4 / 3 - 1 / (3 * world)) * _optimum(w, world) + 1e-9
    assert assign([], 3) == [[], [], []] and assign([1.0], 4) == [[0], [], [], []]
    with pytest.raises(ValueError, match="world size"):
        assign([1.0], 0)
