"""CPU smoke test of the ``paper`` preset end to end (slow): a tiny synthetic data root in the
real file formats (``cifar10.npz`` + ``CIFAR-10-C/*.npy``), tiny widths and steps through
``--set`` overrides of the preset, run by ``torchrun`` on 2 gloo ranks and by one process:
the same units, verdicts and report. Then a ``torchrun`` job killed with SIGKILL after some
units resumes from the cache to the same report."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vcreg.data import write_synthetic_cifar

pytestmark = pytest.mark.slow

SETTINGS = {
    "C1": ["n=96", "d=3", "dependence=[0.0,0.5,1.0]", "m_identity=16", "m_grid=[4,16,64]",
           "rf_seeds=2"],
    "C2": ["encoder=smallcnn", "repr_dim=8", "n_train=256", "batch_size=64", "optimizer.lr=0.075",
           "epochs=2", "warmup_epochs=0", "monitor_every=1", "n_eval=48", "probe_train=256",
           "probe_iter=20", "ood_samples=64", "data_options.ood_corruptions=[gaussian_noise,contrast]",
           "data_options.ood_severities=[1,5]", "widths=[16,32]", "depths=[1,2]", "depth_width=16",
           "control_widths=[16]", "reference_width=16"],
    "C3": ["width=16"],
    "C4": ["n_boot=200"],
    "C5": ["families=[laplace]", "n_samples=300", "n_sources=2", "seeds=[0,1]", "max_iter=30",
           "nonlinear_samples=200", "nonlinear_epochs=10"],
}  # fmt: skip


def _args(root: Path, out: Path) -> list[str]:
    sets = [a for c, items in SETTINGS.items() for x in items for a in ("--set", f"{c}.{x}")]
    return ["reproduce", "--preset", "paper", "--data-root", str(root), "--out", str(out),
            "--seeds", "1", "--device", "cpu", "--no-progress", *sets]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(root: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "vcreg", *_args(root, out)]  # fmt: skip


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its ranks in their own sessions)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    out, todo = [], [pid]
    while todo:
        kids = [p for p, pp in parents.items() if pp == todo[0]]
        out += kids
        todo = todo[1:] + kids
    return out


def _untimed(x):
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if "seconds" not in k}
    return [_untimed(v) for v in x] if isinstance(x, list) else x


def _cache(out: Path) -> dict[str, dict]:
    return {
        str(p.relative_to(out)): _untimed(json.loads(p.read_text())["value"])
        for p in sorted((out / "cache").rglob("*.json"))
    }


def _report_body(out: Path) -> list[str]:
    """report.md without what is timed: the header's command/time line, the per-claim timing
    lines, and table columns of seconds (C5's ``time (s)``)."""
    body, timed = [], []
    for line in (out / "report.md").read_text().splitlines():
        if line.startswith(("Command:", "Measured:", "_")):
            continue
        if line.startswith("|"):
            cells = line.split("|")
            if not timed or len(cells) != len(timed):
                timed = [("time" in c or "(s)" in c) for c in cells]  # a header row
            line = "|".join(c for c, t in zip(cells, timed, strict=True) if not t)
        else:
            timed = []
        body.append(line)
    return body


def _numbers(e: dict) -> dict:
    """A claim's numbers without wall times (C5's method table ends with seconds)."""
    out = _untimed(e["numbers"])
    if "table" in out:
        out["table"] = [row[:-1] for row in out["table"]]
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    root = write_synthetic_cifar(tmp / "data", n_train=256, n_test=64)
    one = subprocess.run(
        [sys.executable, "-m", "vcreg", *_args(root, tmp / "one"), "--jobs", "1"],
        env=_env(), capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert one.returncode == 0, one.stdout + one.stderr
    two = subprocess.run(
        _torchrun(root, tmp / "two"), env=_env(), capture_output=True, text=True, timeout=1200
    )
    assert two.returncode == 0, two.stdout + two.stderr
    return tmp, root, two.stdout + two.stderr


def test_paper_preset_on_two_ranks_equals_one_process(runs):
    tmp, _root, log = runs
    one, two = tmp / "one", tmp / "two"
    res = json.loads((two / "results.json").read_text())
    assert res["preset"] == "paper" and res["environment"]["world_size"] == 2
    assert [r["rank"] for r in res["environment"]["ranks"]] == [0, 1]
    assert all(r["units"] > 0 for r in res["environment"]["ranks"])
    assert "rank 1 (cpu): " in log and "units computed; rank 0 writes the report" in log
    # the CIFAR-10-C files of the root were read (not the generated stand-in)
    (cifar,) = [d for d in res["data"]["datasets"] if d["dataset"] == "CIFAR-10"]
    assert cifar["found"] and cifar["ood"]["source"] == "cifar-c" and res["data"]["notes"] == []
    ref = json.loads((one / "results.json").read_text())
    for claim in ("C1", "C2", "C3", "C4", "C5"):
        e, e1 = res["experiments"][claim], ref["experiments"][claim]
        assert "error" not in e, e.get("traceback")
        assert e["verdict"] == e1["verdict"]
        assert _numbers(e) == _numbers(e1)
    assert _cache(two) == _cache(one) and len(_cache(one)) > 10
    assert _report_body(two) == _report_body(one)
    assert (two / "report.html").is_file() and list((two / "figures").glob("*.png"))


def test_a_killed_torchrun_job_resumes_from_the_cache(runs):
    tmp, root, _ = runs
    out = tmp / "killed"
    job = subprocess.Popen(
        _torchrun(root, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 600
        while len(list((out / "cache").glob("train/*.json"))) < 3 and job.poll() is None:
            assert time.time() < deadline, "no training unit cached in 10 min"
            time.sleep(0.5)
    finally:  # the whole job at once, as a scheduler would: torchrun and both ranks
        for pid in [job.pid, *_descendants(job.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        job.wait()
    done = len(_cache(out))
    assert not (out / "results.json").exists()
    again = subprocess.run(
        _torchrun(root, out), env=_env(), capture_output=True, text=True, timeout=1200
    )
    assert again.returncode == 0, again.stdout + again.stderr
    res = json.loads((out / "results.json").read_text())
    assert sum(r["units"] for r in res["environment"]["ranks"]) == len(_cache(out)) - done
    assert _cache(out) == _cache(tmp / "one")
    assert _report_body(out) == _report_body(tmp / "one")
