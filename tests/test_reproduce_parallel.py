"""``vcreg reproduce --jobs``: units computed in worker processes give the sequential results."""

from __future__ import annotations

import json

import pytest

from vcreg.experiments import default_jobs, run_reproduction
from vcreg.experiments.cache import UnitCache
from vcreg.experiments.parallel import compute_pending, worker_threads
from vcreg.experiments.runner import Context, Unit


def _units(out):
    return sorted(p.name for p in (out / "cache" / "train").glob("*.json"))


def test_two_jobs_give_the_units_and_verdicts_of_one(tmp_path):
    """C2 of the tiny preset with 2 workers vs in-process: the same cache units (same keys),
    the same verdicts, run metrics equal to float tolerance."""
    kw = dict(preset="tiny", only="C2", device="cpu", progress=False)
    par = run_reproduction(out=tmp_path / "par", jobs=2, **kw)
    seq = run_reproduction(out=tmp_path / "seq", jobs=1, **kw)
    assert _units(tmp_path / "par") == _units(tmp_path / "seq") != []
    assert par["environment"]["jobs"] == 2 and seq["environment"]["jobs"] == 1
    e_par, e_seq = par["experiments"]["C2"], seq["experiments"]["C2"]
    assert "error" not in e_par, e_par.get("traceback")
    assert e_par["units_computed"] == e_seq["units_computed"] == len(_units(tmp_path / "seq"))
    assert e_par["verdict"]["status"] == e_seq["verdict"]["status"]
    for name in _units(tmp_path / "seq"):
        a = json.loads((tmp_path / "par" / "cache" / "train" / name).read_text())["value"]
        b = json.loads((tmp_path / "seq" / "cache" / "train" / name).read_text())["value"]
        assert a["acc_id"] == pytest.approx(b["acc_id"], abs=0.02)
        hsic_a = a["final"]["pairwise_hsic_mean"]
        assert hsic_a == pytest.approx(b["final"]["pairwise_hsic_mean"], rel=0.05)


def test_a_failing_unit_is_reported_and_left_uncached(tmp_path):
    cache = UnitCache(tmp_path / "cache")
    bad = Unit("C1", {"no such": "params"}, "broken unit")
    said, done = [], []
    ctx = Context(out_dir=tmp_path, device="cpu", settings={})
    n = compute_pending(
        [("vcreg.experiments.c1_bridge", bad)], cache, ctx, 2, done.append, said.append
    )
    assert n == 0 and done == []
    assert len(said) == 1 and "broken unit" in said[0] and "failed in a worker" in said[0]
    assert not cache.contains("C1", bad.params)


def test_jobs_validation_and_defaults():
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        run_reproduction(preset="tiny", only="C1", jobs=0, progress=False)
    assert 1 <= default_jobs("cpu") <= 4
    assert worker_threads(1) >= 1 and worker_threads(10_000) == 1
