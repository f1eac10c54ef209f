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

STATUSES = ("supported", "not supported", "inconclusive", "not assessable at this scale")


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
        # every verdict in the report appears in results.json (status, parts, statistic)
        row = re.search(rf"^\| {claim} \| .*? \| (.*?) \| (.*?) \| (.*?) \|$", md, re.M)
        assert row is not None, f"{claim} missing from the verdict table"
        assert e["verdict"]["status"] in row.group(1)
        assert e["verdict"]["values"].get("parts_line", "–") == row.group(2)
        assert e["verdict"]["statistic"].replace("|", "\\|") == row.group(3)
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


def _approx(x):
    """``x`` with every float wrapped in ``pytest.approx`` (rel 1e-9, abs 1e-12), nested."""
    if isinstance(x, dict):
        return {k: _approx(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_approx(v) for v in x]
    if isinstance(x, float):
        return pytest.approx(x, rel=1e-9, abs=1e-12)
    return x


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One end-to-end run of every claim with the tiny preset, through the CLI."""
    out = tmp_path_factory.mktemp("reproduce") / "tiny"
    res = CliRunner().invoke(
        main,
        ["reproduce", "--preset", "tiny", "--out", str(out), "--device", "cpu", "--no-progress"],
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "report:" in res.output
    # --no-progress (and any non-terminal): one line per unit with the time left, no bar,
    # no tqdm or numpy internals
    assert re.search(
        r"^\[1/\d+ units, .*left \(from the units' cost estimates\)$", res.output, re.M
    )
    assert "\r" not in res.output and "clamping frac" not in res.output
    assert "encountered in" not in res.output
    return out


def test_tiny_end_to_end_consistent(tiny_run):
    results = _check_consistent(tiny_run, ["C1", "C2", "C3", "C4", "C5"])
    assert results["preset"] == "tiny"
    assert results["environment"]["device"] == "cpu"
    c2 = results["experiments"]["C2"]
    # every configuration × seed of the sweep was trained and measured
    from vcreg.experiments._training import c2_specs

    assert len(c2["numbers"]["runs"]) == len(c2_specs(resolve_settings("tiny")["C2"]))
    for run in c2["numbers"]["runs"]:
        assert 0.0 <= run["acc_id"] <= 1.0 and run["hsic"] >= 0.0
        assert 0.0 <= run["nhsic"] <= 1.0 + 1e-9
        assert [h["epoch"] for h in run["history"]][0] == 0  # curve starts before training
        # C3's sensitivity row: dHSIC under per-variable medians and its floor 1/n, every epoch
        n_eval = resolve_settings("tiny")["C2"]["n_eval"]
        assert all(h["dhsic_floor"] == pytest.approx(1 / n_eval) for h in run["history"])
        assert all(h["dhsic_median"] is None or h["dhsic_median"] > 0 for h in run["history"])
    # C3/C4 reused C2's training runs from the cache instead of retraining
    assert results["experiments"]["C3"]["units_computed"] == 0
    # the Fashion-MNIST runs (if installed) are trained once, by C2 (its second domain), and
    # reused by C3 and C4
    from vcreg.experiments._training import image_available, image_specs

    img = resolve_settings("tiny")["C4"]["image"]
    n_img = len(image_specs(img)) if image_available(img) is None else 0
    assert results["experiments"]["C2"]["units_computed"] == len(c2["numbers"]["runs"]) + n_img
    assert results["experiments"]["C4"]["units_computed"] == 0
    c5 = results["experiments"]["C5"]["numbers"]
    for row in c5["linear"]:
        for method in ("VCRegICA", "FastICA", "Picard"):
            assert 0.0 <= row[method]["amari"] <= 1.0


def test_tiny_report_has_controls_diagnostics_and_sensitivity(tiny_run):
    res = json.loads((tiny_run / "results.json").read_text())
    md = (tiny_run / "report.md").read_text()
    c2 = res["experiments"]["C2"]["numbers"]
    configs = {r["config_id"] for r in c2["runs"]}
    # the equal-budget controls ran next to the sweep
    assert {"vicreg-nu0/trained/16-16", "infonce/trained/16-16", "vicreg/none"} <= configs
    for r in c2["runs"]:  # embedding diagnostics of every run
        assert r["emb_std_mean"] > 0 and 0.0 <= r["emb_hinge_frac"] <= 1.0
        assert 0.0 <= r["emb_at_hinge_frac"] <= 1.0 and r["emb_offdiag_excess"] > 0
        assert r["acc_init"] is not None  # the random-init probe of the same architecture
        if r["kind"] == "random_features":
            assert r["rf_scale_over_bw"] == pytest.approx(1.0)  # standardized input, σ = 1
    assert "## Sensitivity of the verdicts" in md
    for claim in ("C2", "C3", "C4", "C5"):
        sens = res["experiments"][claim]["sensitivity"]
        assert sens[0]["analysis"] == "main analysis"
        assert sens[0]["status"] == res["experiments"][claim]["verdict"]["status"]
        assert len(sens) >= 3  # the main analysis and at least two alternatives
        for row in sens:
            assert row["status"] in STATUSES
            assert row["agrees"] == (row["status"] == sens[0]["status"])
        word = (
            "stable" if all(r["agrees"] for r in sens) else "changes under other analysis choices"
        )
        assert res["experiments"][claim]["stability"] == word  # results.json carries the label
        assert re.search(rf"^\| {claim} \| .*\({word}\) \|", md, re.M)
    # C4 controls for in-domain accuracy (or is not assessable); its image domain ran or says why
    c4 = res["experiments"]["C4"]
    assert (
        "partial Spearman" in c4["verdict"]["statistic"]
        or c4["verdict"]["status"] == "not assessable at this scale"
    )
    assert "fashion-mnist" in c4["numbers"]["points"] or "Image domain skipped" in md


def test_undertrained_tiny_ssl_claims_are_not_assessable(tiny_run):
    """The tiny preset trains 2 epochs on 128 signals: no run reaches the VCReg constraint, so
    the SSL claims are "not assessable at this scale" — never "not supported" — and the report
    opens by saying so, with the command that would assess them."""
    res = json.loads((tiny_run / "results.json").read_text())
    md = (tiny_run / "report.md").read_text()
    for claim in ("C2", "C3", "C4"):
        v = res["experiments"][claim]["verdict"]
        assert v["status"] == "not assessable at this scale", (claim, v["statistic"])
        assert "preconditions" in v["statistic"]
    excluded = res["experiments"]["C2"]["numbers"]["excluded_by_preconditions"]
    assert excluded and all(reasons for reasons in excluded.values())
    head = md.split("## Verdicts")[0]
    assert "**Not assessable at this scale:** C2" in head and "--preset full" in head
    assert "**Preconditions** (fixed before the data)" in md


def test_tiny_report_text_matches_its_settings(tiny_run):
    """Every count, range and cache fact the report states is the run's own; no table is
    printed without rows; one definition of "at the hinge"; no time promise (issue 33)."""
    res = json.loads((tiny_run / "results.json").read_text())
    md = (tiny_run / "report.md").read_text()
    html = (tiny_run / "report.html").read_text()
    lines = md.splitlines()
    for i, line in enumerate(lines):  # a table separator is followed by at least one row
        if line.startswith("|---"):
            assert i + 1 < len(lines) and lines[i + 1].startswith("| "), lines[i - 2 : i]
    assert "<tbody></tbody>" not in html
    s = res["experiments"]["C2"]["settings"]
    runs = res["experiments"]["C2"]["numbers"]["runs"]
    m = re.search(
        r"C2–C4: (\d+) MNIST-1D runs? \((\d+) seeds? × (\d+) configurations, (\d+) optimizer "
        r"steps each\)",
        md,
    )
    assert m is not None
    steps = s["epochs"] * -(-s["n_train"] // s["batch_size"])
    assert [int(x) for x in m.groups()] == [
        len(runs),
        len(s["seeds"]),
        len({r["config_id"] for r in runs}),
        steps,
    ]
    assert f"batch {s['batch_size']} ({steps} optimizer steps)" in md
    depths = sorted(s["depths"])
    assert (
        f"depths {depths} at width {s['depth_width']}" in md
        if len(depths) > 1
        else f"no depth sweep (depth {depths[0]} only)" in md
    )
    assert "losses []" not in md and "depth 1–" not in md
    probes = re.findall(r"(?:probe on|representation of) (\d+) training signals", md)
    assert probes and {int(n) for n in probes} == {s["probe_train"]}
    # cache facts: a fresh folder computed every unit in this run
    u = res["units"]
    assert u["from_earlier_runs"] == 0 and u["computed_in_this_run"] > 0
    assert f"all {u['computed_in_this_run']} computed in this run" in md
    assert all(e["units_from_earlier_runs"] == 0 for e in res["experiments"].values())
    assert md.count("0 reused from the cache of earlier runs") == len(res["experiments"])
    assert "including cached ones" not in md
    # one definition of "at the hinge" (the precondition's), named where a table uses it
    defs = set(re.findall(r"at hinge = ([^,)]+)", md))
    assert defs == {"fraction of embedding dimensions with std ≥ 0.9 × the hinge target"}
    assert "hinge met" not in md
    # times are measurements with their load, never promises
    assert not re.search(r"≤ ?\d+ ?min", md)
    assert "Measured: wall time" in md and "load average" in md
    assert not re.search(r"\b1 (seeds|runs|units|configurations)\b", md)
    # the rule of the one-word status and the minimum units are printed
    assert "only the paper's own parts decide" in md
    assert "Left for `--preset full`: trained MLPs at widths 128, 256, 512, 1024, 2048" in md
    assert "## Minimum units of each interval and test" in md


def test_c1_identity_is_exact(tiny_run):
    """The bridge identity holds to float64 precision (checked independently of the verdict)."""
    res = json.loads((tiny_run / "results.json").read_text())
    nums = res["experiments"]["C1"]["numbers"]
    assert nums["identity_rel_error_f64_max"] < 1e-12
    assert 1e-9 < nums["identity_rel_error_f32_max"] < 1e-3
    parts = {p["name"]: p["status"] for p in res["experiments"]["C1"]["verdict"]["parts"]}
    assert parts["exact identity (κ̂)"] == "supported"


def test_cache_resume(tiny_run):
    """A second run reuses every cached unit; a lost unit is recomputed alone; --force redoes all."""
    before = json.loads((tiny_run / "results.json").read_text())["experiments"]["C1"]
    r2 = run_reproduction("tiny", only="C1", out=tiny_run, device="cpu", progress=False)
    e2 = r2["experiments"]["C1"]
    n_units = len(resolve_settings("tiny")["C1"]["dependence"])
    assert e2["units_computed"] == 0 and e2["units_cached"] == n_units
    assert e2["units_from_earlier_runs"] == n_units  # the report says where they came from
    md = (tiny_run / "report.md").read_text()
    assert f"all {n_units} reused from the cache of earlier runs" in md
    assert e2["numbers"] == before["numbers"] and e2["verdict"] == before["verdict"]
    files = sorted((tiny_run / "cache" / "C1").glob("*.json"))
    assert len(files) == n_units
    files[0].unlink()  # as if the run had been interrupted before this unit finished
    r3 = run_reproduction("tiny", only="C1", out=tiny_run, device="cpu", progress=False)
    assert r3["experiments"]["C1"]["units_computed"] == 1
    md = (tiny_run / "report.md").read_text()
    assert "1 computed in this run" in md and f"{n_units - 1} reused from the cache" in md
    # recomputed in this process (other torch threads than the CLI's workers): equal up to the
    # float rounding of a different summation order (1e-15 relative errors differ at 1e-16)
    assert r3["experiments"]["C1"]["numbers"] == _approx(before["numbers"])


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


def test_second_writer_to_the_same_folder_is_refused(tmp_path):
    """While one process holds the output folder (its lock), a second reproduction into it
    stops at once with an error naming the folder, before writing anything; CLI: a clean
    message, no traceback. After release the folder is usable again."""
    from vcreg._lock import FolderLock, FolderLockedError

    out = tmp_path / "rep"
    with FolderLock(out, purpose="another vcreg reproduce"):
        with pytest.raises(FolderLockedError, match="in use by another vcreg process"):
            run_reproduction(preset="tiny", only="C1", out=out, device="cpu", progress=False)
        res = CliRunner().invoke(
            main, ["reproduce", "--preset", "tiny", "--only", "C1", "--out", str(out)]
        )
        assert res.exit_code == 1 and "in use by another vcreg process" in res.output
        assert not isinstance(res.exception, FolderLockedError)  # handled, not a traceback
        assert sorted(p.name for p in out.iterdir()) == [".vcreg.lock"]
    results = run_reproduction(preset="tiny", only="C1", out=out, device="cpu", progress=False)
    assert list(results["experiments"]) == ["C1"] and (out / "report.md").is_file()


def test_full_preset_plans_without_running():
    """`--preset full` plans valid training configs (caught here, not 2 hours into a run)."""
    from vcreg.experiments.runner import EXPERIMENT_MODULES
    from vcreg.training import TrainConfig

    settings = resolve_settings("full", device="cpu")
    units = {}
    for claim, mod in EXPERIMENT_MODULES.items():
        units[claim] = __import__(mod, fromlist=["plan"]).plan(settings[claim])
        assert units[claim], claim
    train = [u for u in units["C4"] if u.namespace == "train"]
    for u in train:
        cfg = TrainConfig.from_dict({**u.params["config"], "device": "cpu"})
        assert cfg.optimizer.lr == 1e-3  # one optimiser setting for every run
        if cfg.projector.kind == "mlp" and not cfg.loss.name == "supervised":
            assert max(int(w) for w in str(cfg.projector.spec).split("-")) <= 2048  # CPU cap
    # C2's and C3's runs are C4's MNIST-1D runs (shared cache units)
    keys = {json.dumps(u.params, sort_keys=True) for u in units["C2"]}
    assert keys == {json.dumps(u.params, sort_keys=True) for u in units["C3"]}
    assert keys <= {json.dumps(u.params, sort_keys=True) for u in train}
    assert any(u.params["config"]["loss"].get("params", {}).get("nu") == 0.0 for u in train)


@pytest.mark.parametrize("preset", ["quick", "full", "paper"])
def test_ssl_presets_are_designed_for_the_regime(preset):
    """Every VICReg run of quick/full trains ≥ 900 steps with the regime weights (hinge μ = 50
    at least 10× the invariance λ: 5 on MNIST-1D, 2.5 on Fashion-MNIST); the widest embeddings
    are held to the hinge target their batch allows (vcreg.diagnostics.hinge_target ≥ 0.75·γ:
    k ≤ 2048 at batch 256)."""
    from vcreg.diagnostics import hinge_target
    from vcreg.experiments.runner import EXPERIMENT_MODULES
    from vcreg.training.regime import hinge_balance

    settings = resolve_settings(preset, device="cpu")
    units = {}
    for claim in ("C2", "C3", "C4"):
        for u in __import__(EXPERIMENT_MODULES[claim], fromlist=["plan"]).plan(settings[claim]):
            units[u.label + u.params["config"]["data"]["name"]] = u.params["config"]
    assert len(units) >= 14
    for cfg in units.values():
        n = cfg["data"]["train_samples"]
        steps = cfg["epochs"] * -(-n // cfg["batch_size"])
        assert steps >= 900, cfg["name"]
        if cfg["loss"]["name"] != "vicreg":
            continue
        p = cfg["loss"]["params"]
        assert p["mu"] == 50.0 and p["lambda_"] in (2.5, 5.0), cfg["name"]
        assert p["nu"] in (0.0, 1.0), cfg["name"]
        proj = cfg["projector"]
        if proj["kind"] == "mlp":
            k = int(str(proj["spec"]).split("-")[-1])
            bal = hinge_balance("vicreg", cfg["batch_size"], p)
            assert hinge_target(k, bal) >= 0.75, cfg["name"]


def _design(preset: str) -> tuple[dict, dict]:
    from vcreg.experiments._training import c2_specs, image_specs

    settings = resolve_settings(preset, device="cpu")
    c2 = settings["C2"]
    img = settings["C4"].get("image")
    return c2_specs(c2), (image_specs(img) if img else [])


def _widths(specs, kind: str) -> list[int]:
    return sorted({r.width for r in specs if r.group in ("width", "image") and r.kind == kind})


def test_quick_preset_can_assess_every_claim():
    """Issue 31 item 6: the main job has >= 5 runs per width trend (MIN_RANK_UNITS) and >= 5
    C4 configurations, with the nu = 0 pairs a paired interval needs, in 16 runs."""
    from vcreg.experiments.verdicts import MIN_RANK_UNITS

    specs, img = _design("quick")
    assert len(specs) <= 16 and not img
    width_runs = [r for r in specs if r.group == "width"]
    for kind in ("trained", "random_features"):
        runs = [r for r in width_runs if r.kind == kind]
        assert len(runs) >= MIN_RANK_UNITS and len({r.width for r in runs}) >= 3
    assert len({r.config_id for r in width_runs}) >= MIN_RANK_UNITS  # C4's configurations
    assert sum(r.nu == 0.0 for r in specs) >= 3


def test_full_preset_spans_the_widths_and_configurations_of_issue_31():
    """Full: trained MLPs and random features over >= 16x in width on MNIST-1D (frozen MLPs
    over 8x: at 2048 they do not train the encoder, at 64 they stay correlated; measured, see
    presets), the image domain over >= 8x, >= 8 C4 configurations per domain, InfoNCE."""
    specs, img = _design("full")
    for kind, span in (("trained", 16), ("frozen", 8), ("random_features", 16)):
        w = _widths(specs, kind)
        assert max(w) / min(w) >= span, kind
    widths = [_widths(img, k) for k in ("trained", "random_features")]
    assert max(max(w) / min(w) for w in widths if w) >= 8
    fam = lambda rs: {r.config_id for r in rs if r.loss == "vicreg" and r.nu is None}  # noqa: E731
    assert len(fam([r for r in specs if r.kind != "none"])) >= 8 and len(fam(img)) >= 8
    assert any(r.loss == "infonce" for r in specs)


def test_quick_report_names_what_stays_for_full():
    """Issue 31 item 6: the quick report says which parts only `full` trains."""
    from vcreg.experiments.presets import left_for_full

    text = left_for_full(resolve_settings("quick")["C2"])
    for part in (
        "trained MLPs at widths 1024, 2048",
        "frozen random MLPs of widths 128, 256, 512, 1024",
        "depths 1, 3",
        "Barlow Twins",
        "the no-projector, InfoNCE and supervised controls",
        "the image domain (fashion-mnist)",
    ):
        assert part in text
    assert left_for_full(resolve_settings("full")["C2"]) is None
