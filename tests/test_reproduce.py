"""End-to-end tests of ``vcreg reproduce`` (tiny preset) and of its cache / report consistency."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from vcreg.cli import main
from vcreg.experiments import run_reproduction
from vcreg.experiments.cache import UnitCache, cache_key
from vcreg.experiments.presets import resolve_settings
from vcreg.experiments.runner import parse_only

STATUSES = ("supported", "not supported", "inconclusive")


def _check_consistent(out: Path, claims: list[str]) -> dict:
    """report.md/html, results.json and figures exist and agree with each other."""
    for name in ("report.md", "report.html", "results.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert list(results["experiments"]) == claims
    assert results["versions"]["torch"] and results["versions"]["vcreg"]
    for claim, e in results["experiments"].items():
        assert "error" not in e, e.get("traceback")
        assert e["verdict"]["status"] in STATUSES
        # every verdict in the report appears in results.json (same status and statistic)
        row = re.search(rf"^\| {claim} \| .*? \| (.*?) \| (.*?) \|$", md, re.M)
        assert row is not None, f"{claim} missing from the verdict table"
        assert e["verdict"]["status"] in row.group(1)
        assert e["verdict"]["statistic"].replace("|", "\\|") == row.group(2)
        assert e["figures"], f"{claim} has no figure"
        for fig in e["figures"]:
            assert (out / fig).is_file() and (out / fig).stat().st_size > 1000
            assert f"]({fig})" in md
            assert f"data-src='{fig}'" in html
    # every figure referenced by the report exists
    for ref in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / ref).is_file(), ref
    assert html.count("data:image/png;base64,") == len(re.findall(r"!\[", md))
    return results


def test_tiny_c1_and_cache_resume(tmp_path):
    out = tmp_path / "rep"
    r1 = run_reproduction("tiny", only="C1", out=out, device="cpu", progress=False)
    _check_consistent(out, ["C1"])
    e1 = r1["experiments"]["C1"]
    assert e1["units_computed"] == len(resolve_settings("tiny")["C1"]["dependence"])
    assert e1["units_cached"] == 0
    # second run: everything reused from the cache, identical numbers
    r2 = run_reproduction("tiny", only="C1", out=out, device="cpu", progress=False)
    e2 = r2["experiments"]["C1"]
    assert e2["units_computed"] == 0 and e2["units_cached"] == e1["units_computed"]
    assert e2["numbers"] == e1["numbers"] and e2["verdict"] == e1["verdict"]
    # an interrupted run (one unit lost) recomputes only that unit
    files = sorted((out / "cache" / "C1").glob("*.json"))
    files[0].unlink()
    r3 = run_reproduction("tiny", only="C1", out=out, device="cpu", progress=False)
    assert r3["experiments"]["C1"]["units_computed"] == 1
    # --force recomputes everything
    r4 = run_reproduction("tiny", only="C1", out=out, device="cpu", progress=False, force=True)
    assert r4["experiments"]["C1"]["units_cached"] == 0


def test_c1_identity_is_exact(tmp_path):
    """The bridge identity holds to float64 precision (checked independently of the verdict)."""
    res = run_reproduction("tiny", only="C1", out=tmp_path, device="cpu", progress=False)
    nums = res["experiments"]["C1"]["numbers"]
    assert nums["identity_rel_error_f64_max"] < 1e-12
    assert 1e-9 < nums["identity_rel_error_f32_max"] < 1e-3
    parts = {p["name"]: p["status"] for p in res["experiments"]["C1"]["verdict"]["parts"]}
    assert parts["exact identity (κ̂)"] == "supported"


def test_cache_roundtrip_and_corruption(tmp_path):
    cache = UnitCache(tmp_path)
    params = {"a": 1, "b": [1.5, 2]}
    assert cache.get("ns", params) is None
    cache.put("ns", params, {"x": 3.0}, seconds=0.1)
    assert cache.get("ns", {"b": [1.5, 2], "a": 1})["value"] == {"x": 3.0}  # key order-free
    assert cache_key("ns", params) != cache_key("ns", {"a": 2, "b": [1.5, 2]})
    cache.path("ns", params).write_text("{truncated")
    assert cache.get("ns", params) is None  # unreadable entry -> recompute
    forced = UnitCache(tmp_path, force=True)
    cache.put("ns", params, {"x": 4.0}, seconds=0.1)
    assert forced.get("ns", params) is None  # old entries ignored with force
    forced.put("ns", params, {"x": 5.0}, seconds=0.1)
    assert forced.get("ns", params)["value"] == {"x": 5.0}  # but this run's entries count
    with pytest.raises(ValueError, match="namespace"):
        cache.path("../x", params)


def test_bad_input():
    with pytest.raises(ValueError, match="unknown claim"):
        parse_only("C1,C9")
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_settings("huge")
    with pytest.raises(ValueError, match="seeds"):
        resolve_settings("tiny", seeds=0)
    with pytest.raises(ValueError, match="unknown C2 setting"):
        resolve_settings("tiny", overrides={"C2": {"nope": 1}})
    assert resolve_settings("tiny", seeds=4)["C2"]["seeds"] == [0, 1, 2, 3]


def test_cli_errors_and_help(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["reproduce", "--help"])
    assert res.exit_code == 0 and "--preset" in res.output and "--only" in res.output
    res = runner.invoke(main, ["reproduce", "--only", "C7", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "unknown claim" in res.output
    res = runner.invoke(main, ["reproduce", "--preset", "huge"])
    assert res.exit_code != 0
