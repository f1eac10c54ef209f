"""``measure_embeddings``: the full independence / health report of a representation matrix.

This is the library behind ``vcreg measure``; the dict it returns is the ``independence.json``
the command writes. Sections: ``input`` (rows used, subsampling), ``constant_features``,
``pairwise_hsic`` / ``pairwise_nhsic`` (summaries, top pairs with adjusted p-values),
``pairwise_tests`` (per-pair tests with a multiple-testing correction), ``dhsic`` (statistic,
test, the bandwidth rule used or why it was refused), ``mutual_dependence``,
``effective_rank`` (RankMe), ``feature_std`` (collapsed features), ``degenerate_features``
(dead and near-dead features by rule, :func:`degenerate_features`), ``labels`` (feature-label
dependence), ``settings`` and ``notes`` (every automatic choice, in words). Feature indices are
always the input's own column numbers.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from vcreg.distributed import world_size
from vcreg.independence._common import (
    ESTIMATORS,
    MEDIAN_SAMPLES,
    TEST_METHODS,
    ConstantVariableWarning,
    _check_choice,
    parse_memory,
)
from vcreg.independence.cost import (
    MUTUAL_ROWS,
    STEP_NAMES,
    exact_pair_count,
    exact_pairwise_seconds,
    measure_cost,
    measure_plan,
    resolve_method,
)
from vcreg.independence.dhsic import SaturationWarning, dhsic, dhsic_test, mutual_dependence
from vcreg.independence.health import (
    degenerate_features,
    effective_rank,
    feature_std_summary,
    value_counts,
)
from vcreg.independence.kernels import _subsample_rows
from vcreg.independence.pairwise import pairwise_hsic, pairwise_hsic_test, pairwise_summary

__all__ = [
    "MEASURE_METHODS",
    "check_measure_options",
    "exact_pairwise_seconds",
    "measure_cost",
    "measure_embeddings",
    "measure_plan",
    "plan_measure",
]

MEASURE_METHODS = ("auto", "exact", "lowrank")
MEASURE_TESTS = ("auto", *TEST_METHODS, "none")  # dHSIC test of the report ("none": statistic only)
ACCURACY_COLUMNS = 8  # features whose 28 pairs are recomputed exactly (low-rank error)


class SubsampledWarning(UserWarning):
    """Rows were subsampled: every statistic uses a random subset of the input."""


class _StepClock:
    """Wall seconds of each named step (``with clock("dhsic"): ...``). With ``progress``, a
    bar over the planned steps names the running one and its estimate; the steps' own bars
    (kernel blocks, permutations) show below it."""

    def __init__(self, plan: dict[str, Any], progress: bool) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # CPU seconds of this process, all threads
        self.plan = plan["steps"]
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=len(self.plan), desc="measure", unit="step", leave=False,
                bar_format="{desc} [{n_fmt}/{total_fmt} steps done, {elapsed}]",
            )  # fmt: skip

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.bar is not None:
            est = self.plan.get(name, 0.0)
            self.bar.set_description_str(
                f"measure: {STEP_NAMES.get(name, name)} ({f'~{est:.0f} s' if est >= 1 else '<1 s'}"
                " estimated)"
            )
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0
            if self.bar is not None:
                self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def is_int(value: Any) -> bool:
    """A Python or NumPy integer, not a bool (the one rule for integer options)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _check_options(opts: dict[str, Any]) -> None:
    """One-line errors naming the option, before any work (the rest are checked where used)."""
    ms = opts["max_samples"]
    if ms is not None and (not is_int(ms) or ms < 4):
        raise (ValueError if is_int(ms) else TypeError)(
            f"max_samples must be an int >= 4 (or None for all rows), got {ms!r}"
        )
    for name, low in (("seed", 0), ("n_permutations", 1), ("pair_permutations", 0), ("top_k", 0)):
        v = opts[name]
        if not is_int(v) or v < low:
            raise (ValueError if is_int(v) else TypeError)(
                f"{name} must be an int >= {low}, got {v!r}"
            )
    for name in ("with_dhsic", "progress", "keep_matrices"):
        if not isinstance(opts[name], bool | np.bool_):
            raise TypeError(f"{name} must be True or False, got {opts[name]!r}")
    for name, choices in (
        ("test", MEASURE_TESTS),
        ("estimator", ESTIMATORS),
        ("method", MEASURE_METHODS),
    ):
        _check_choice(opts[name], name, choices)


def _bind_options(options: dict[str, Any]) -> dict[str, Any]:
    sig = inspect.signature(measure_embeddings)
    unknown = sorted(set(options) - set(sig.parameters) | {"Z", "labels"} & set(options))
    if unknown:
        raise TypeError(
            f"unknown measure option(s) {unknown}; measure_embeddings takes "
            f"{[p for p in sig.parameters if p not in ('Z', 'labels')]}"
        )
    bound = sig.bind_partial(None, **options)
    bound.apply_defaults()
    return bound.arguments


def check_measure_options(**options: Any) -> None:
    """Check :func:`measure_embeddings` keyword options without data (callers that do work
    first, such as ``measure_model``, fail before it): an unknown name is a ``TypeError``."""
    opts = _bind_options(options)
    _check_options(opts)
    parse_memory(opts["max_memory"])


def plan_measure(n: int, d: int, labels: bool, **options: Any) -> dict[str, Any]:
    """:func:`measure_plan` of :func:`measure_embeddings` with these keyword ``options`` on n
    rows of d features, before the data exist (e.g. while a model encodes them)."""
    o = _bind_options(options)
    dev = torch.device(o["device"]) if o["device"] is not None else torch.device("cpu")
    return measure_plan(
        n, d, method=o["method"], with_dhsic=o["with_dhsic"], test=o["test"],
        n_permutations=o["n_permutations"], estimator=o["estimator"], labels=labels,
        max_memory=o["max_memory"], cuda=dev.type == "cuda", world=world_size(),
    )  # fmt: skip


def _check_matrix(Z: Any) -> np.ndarray:
    a = Z.detach().cpu().numpy() if isinstance(Z, torch.Tensor) else np.asarray(Z)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"embeddings must be numeric, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(
            f"embeddings must be a 2-D (n_samples, n_features) array, got shape {a.shape}"
        )
    a = a.astype(np.float64, copy=False)
    n, d = a.shape
    if d < 2:
        raise ValueError(f"need at least 2 features (columns), got shape {a.shape}")
    if n < 4:
        raise ValueError(f"need at least 4 samples (rows), got {n}")
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(
            f"embeddings contain {int(bad.sum())} NaN/Inf values in {rows.size} rows "
            f"(0-based row indices, first: {rows[:5].tolist()}); remove them first"
        )
    return a


def _check_labels(labels: Any, n: int) -> np.ndarray:
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    lab = lab.reshape(len(lab), -1) if lab.ndim else lab.reshape(1, 1)
    if lab.shape != (n, 1):
        raise ValueError(f"labels must be one value per sample ({n}), got shape {lab.shape}")
    return lab[:, 0]


def _subsample(z: np.ndarray, y, max_samples: int | None, seed: int, notes: list[str]):
    n = z.shape[0]
    if max_samples is None or n <= max_samples:
        return z, y
    idx = np.sort(np.random.default_rng(seed).choice(n, int(max_samples), replace=False))
    msg = (
        f"SUBSAMPLED: {max_samples} of {n} rows (random, seed {seed}) are used by every "
        "statistic; raise max_samples (--max-samples) to use more"
    )
    warnings.warn(msg, SubsampledWarning, stacklevel=3)
    notes.insert(0, msg)
    return z[idx], (y[idx] if y is not None else None)


def _resolve_method(method: str, n: int, d: int, budget: int, cuda: bool, notes: list[str]) -> str:
    resolved, why = resolve_method(method, n, d, budget, cuda)
    if why:
        notes.append(why)
    return resolved


def _lowrank_accuracy(
    zk: torch.Tensor, raw: np.ndarray, kernel: str, bandwidth, seed: int, info: dict | None
) -> dict:
    """Low-rank error measured, not assumed: the pairs among ACCURACY_COLUMNS random features
    recomputed exactly (biased HSIC, the same bandwidths); relative error of their mean and the
    largest per-pair error, both relative to the exact mean."""
    d = zk.shape[1]
    cols = np.sort(np.random.default_rng(seed).choice(d, min(ACCURACY_COLUMNS, d), False))
    ex = pairwise_hsic(
        zk[:, torch.as_tensor(cols, device=zk.device)], False, "exact",
        kernel=kernel, bandwidth=bandwidth,
    ).cpu().numpy()  # fmt: skip
    iu, ju = np.triu_indices(cols.size, 1)
    ex, lr = ex[iu, ju], raw[cols[iu], cols[ju]]
    scale = max(float(np.abs(ex).mean()), 1e-300)
    return {
        "pairs_checked": int(iu.size),
        "relative_error_of_mean": float(abs(lr.mean() - ex.mean()) / scale),
        "max_abs_error_over_mean": float(np.abs(lr - ex).max() / scale),
        **(info or {}),
    }


def _remap(pairs: list[dict], keep: np.ndarray, names: Sequence[str] | None) -> list[dict]:
    for t in pairs:
        t["i"], t["j"] = int(keep[t["i"]]), int(keep[t["j"]])
        if names is not None:
            t["names"] = [str(names[t["i"]]), str(names[t["j"]])]
    return pairs


def _label_section(zk: torch.Tensor, y: np.ndarray, keep: np.ndarray, top_k: int) -> dict:
    """Each feature's normalized HSIC with the labels, linear kernels on the feature and on the
    one-hot labels Y: with centred z_j and Y, HSIC_b = |z_j^T Y|^2 / n^2 and the normalized
    value is |z_j^T Y|^2 / (|z_j|^2 |Y^T Y|_F) -- all features in one product."""
    classes, codes = np.unique(y, return_inverse=True)
    onehot = torch.nn.functional.one_hot(torch.from_numpy(codes), len(classes)).to(zk)
    zc, yc = zk - zk.mean(0), onehot - onehot.mean(0)
    num = (zc.T @ yc).square().sum(1)
    den = zc.square().sum(0) * torch.linalg.matrix_norm(yc.T @ yc)
    dep = torch.where(den > 0, num / den.clamp_min(1e-300), 0.0).cpu().numpy()
    order = np.argsort(dep)[::-1][:top_k]
    return {
        "n_classes": int(len(classes)),
        "kernel": "delta (linear kernel on one-hot labels)",
        "feature_label_nhsic_mean": float(dep.mean()),
        "most_label_dependent_features": [
            {"feature": int(keep[o]), "nhsic": float(dep[o])} for o in order
        ],
    }


def _dhsic_section(
    zk, with_dhsic, test, n_permutations, seed, kernel, bandwidth, budget, progress, notes
) -> dict | None:
    """dHSIC statistic and test (None without ``with_dhsic``); the "median" pairwise bandwidth
    maps to dHSIC's "auto"."""
    if not with_dhsic:
        return None
    bw = "auto" if bandwidth == "median" else bandwidth
    if test == "gamma" and bw == "auto":
        bw = "median"  # the only rule under which the gamma test is offered
    d = zk.shape[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SaturationWarning)
        if test == "none":
            stat = dhsic(zk, kernel=kernel, bandwidth=bw, max_memory=budget)
            # without a test the requested rule is reported ("auto" is resolved inside dhsic)
            out = {
                "statistic": None if math.isnan(stat) else stat,
                "p_value": None,
                "test": None,
                "bandwidth_rule": bw,
            }
        else:
            r = dhsic_test(
                zk,
                method=test,
                n_permutations=n_permutations,
                random_state=seed,
                kernel=kernel,
                bandwidth=bw,
                max_memory=budget,
                progress=progress,
            )
            ok = math.isfinite(r.p_value)
            out = {
                "statistic": r.statistic if ok else None,
                "p_value": r.p_value if ok else None,
                "test": r.method,
                "n_permutations": r.n_permutations,
                "bandwidth_rule": r.details.get("bandwidth_rule"),
                "offdiag_mass": r.details.get("offdiag_mass"),
                "method_reason": r.details.get("method_reason"),
            }
    refused = [str(w.message) for w in caught if issubclass(w.category, SaturationWarning)]
    out["n_variables"] = int(d)
    out["refused"] = refused[0] if refused else None
    if out["bandwidth_rule"] == "joint":
        notes.append("dHSIC: the per-variable median rule saturates here; the 'joint' rule is used")
    return out


def _pairwise_sections(
    zk, keep, names, method, correction, alpha, pair_permutations, top_k, seed, estimator, opts
) -> tuple[dict, dict, np.ndarray]:
    """Pairwise tests, the two summaries (indices mapped back to all features) and the raw
    HSIC matrix of the kept features."""
    names_k = [names[i] for i in keep] if names is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantVariableWarning)  # reported in the dict
        tests = pairwise_hsic_test(
            zk, correction, alpha, method, pair_permutations, top_k, seed, **opts
        )
    raw = tests["hsic"]
    if estimator == "unbiased":
        raw = np.asarray(
            pairwise_hsic(zk, False, method, opts["max_memory"], kernel=opts["kernel"],
                          bandwidth=opts["bandwidth"], estimator="unbiased",
                          progress=opts["progress"]).cpu()
        )  # fmt: skip
    pv = tests["p_values"]
    sections = {
        "pairwise_hsic": pairwise_summary(raw, top_k, names_k, pv, correction, alpha),
        "pairwise_nhsic": pairwise_summary(tests["nhsic"], top_k, names_k, pv, correction, alpha),
    }
    for sec in sections.values():
        _remap(sec["top_pairs"], keep, None)
        if names is not None:
            _remap(sec["top_pairs"], np.arange(len(names)), names)
    return tests, sections, raw


def _prepare_input(Z, labels, names, max_samples: int | None, seed: int, notes: list[str]):
    """Checked float64 rows used (subsampled), labels, and the constant / kept feature indices."""
    z_all = _check_matrix(Z)
    n_total, d = z_all.shape
    if names is not None and len(names) != d:
        raise ValueError(f"names has {len(names)} entries but the embeddings have {d} columns")
    y = _check_labels(labels, n_total) if labels is not None else None
    z, y = _subsample(z_all, y, max_samples, seed, notes)
    constant = np.nonzero(np.all(z == z[:1], 0))[0]
    keep = np.setdiff1d(np.arange(d), constant)
    if constant.size:
        notes.append(f"{constant.size} constant feature(s) excluded from HSIC statistics")
    if keep.size < 2:
        raise ValueError(f"fewer than 2 non-constant features ({keep.size}) to measure")
    return n_total, z, y, constant, keep


def _input_sections(n_total: int, n: int, d: int, names, constant: np.ndarray) -> dict:
    return {
        "input": {
            "n_samples_total": int(n_total),
            "n_samples_used": int(n),
            "subsampled": bool(n < n_total),
            "n_features": int(d),
            "feature_names": list(names) if names is not None else None,
        },
        "constant_features": constant.tolist(),
    }


def _tests_section(tests: dict, keep: np.ndarray, names: Sequence[str] | None) -> dict:
    keys = ("n_pairs", "n_not_tested", "not_tested", "nulls", "correction", "alpha", "method")
    keys += ("n_significant", "min_p_value")
    return {k: tests[k] for k in keys} | {"top_pairs": _remap(tests["top_pairs"], keep, names)}


def _mutual_section(zk: torch.Tensor, keep: np.ndarray, notes: list[str]) -> dict:
    """Mutual dependence on its seeded row subsample; features constant there (sparse units)
    count 0 and are named in a note, in the user's numbering (not as a warning about the
    kept columns' positions)."""
    sub = _subsample_rows(zk, MUTUAL_ROWS)
    flat = keep[(sub == sub[:1]).all(0).cpu().numpy()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantVariableWarning)
        value = mutual_dependence(zk, max_samples=MUTUAL_ROWS)
    if flat.size:
        notes.append(
            f"mutual dependence: {flat.size} feature(s) are constant on its {sub.shape[0]}-row "
            f"subsample and count as 0: {_shown(flat)}"
        )
    return {"mean_one_vs_rest_nhsic": value, "max_samples": MUTUAL_ROWS}


def _shown(idx: Sequence[int] | np.ndarray, k: int = 10) -> str:
    idx = [int(i) for i in idx]
    return ", ".join(map(str, idx[:k])) + (f" (+{len(idx) - k} more)" if len(idx) > k else "")


def _health_sections(
    z: np.ndarray, zk: torch.Tensor, keep: np.ndarray, notes: list[str], counts: tuple
) -> dict:
    """Dead / near-dead features, mutual dependence, RankMe and feature std (collapse)."""
    out = {
        "degenerate_features": degenerate_features(z, counts=counts),
        "mutual_dependence": _mutual_section(zk, keep, notes),
        "effective_rank": effective_rank(z),
    }
    fs = feature_std_summary(z)
    fs.pop("std")
    fs["meaning"] = (
        "collapsed: the feature's spread is tiny next to the data's overall scale (std <= "
        f"{fs['threshold']:g} x the RMS of all entries); it includes the constant features"
    )
    out["feature_std"] = fs
    return out


def _measured_sections(clock: _StepClock, data: dict[str, Any], o: dict[str, Any]) -> dict:
    """Every statistic of the report, step by step under ``clock``. ``data``: the prepared
    input (zk, z, y, keep, names, constant, n_total, counts, notes); ``o``: the options."""
    zk, z, keep, names, notes = data["zk"], data["z"], data["keep"], data["names"], data["notes"]
    kernel_opts = {k: o[k] for k in ("kernel", "bandwidth", "max_memory", "progress")}
    with clock("pairwise"):
        tests, sections, raw = _pairwise_sections(
            zk, keep, names, o["resolved"], o["correction"], o["alpha"], o["pair_permutations"],
            o["top_k"], o["seed"], o["estimator"], kernel_opts,
        )  # fmt: skip
    report = _input_sections(data["n_total"], *z.shape, names, data["constant"]) | sections
    report["pairwise_tests"] = _tests_section(tests, keep, names)
    report["_matrices"] = (raw, tests)
    if o["resolved"] == "lowrank":
        with clock("lowrank_accuracy"):
            report["lowrank_accuracy"] = _lowrank_accuracy(
                zk, tests["hsic"], o["kernel"], o["bandwidth"], o["seed"], tests.get("lowrank")
            )
    report["dhsic"] = None
    if o["with_dhsic"]:
        with clock("dhsic"):
            report["dhsic"] = _dhsic_section(
                zk, True, o["test"], o["n_permutations"], o["seed"], o["kernel"],
                o["bandwidth"], o["max_memory"], o["progress"], notes,
            )  # fmt: skip
    with clock("health"):
        report |= _health_sections(z, zk, keep, notes, data["counts"])
    report["labels"] = None
    if data["y"] is not None:
        with clock("labels"):
            report["labels"] = _label_section(zk, data["y"], keep, o["top_k"])
    return report


def _settings_section(
    resolved, method, estimator, kernel, bandwidth, test, n_permutations, pair_permutations,
    correction, alpha, max_samples, seed, budget, dev,
) -> dict:  # fmt: skip
    return {
        "method": resolved,
        "method_requested": method,
        "estimator": estimator,
        "kernel": kernel,
        "bandwidth": bandwidth,
        "median_samples": MEDIAN_SAMPLES,
        "test": test,
        "permutations": n_permutations if test != "none" else None,
        "pair_permutations": pair_permutations,
        "correction": correction,
        "alpha": alpha,
        "max_samples": max_samples,
        "seed": seed,
        "max_memory_bytes": budget,
        "device": str(dev),
        "dtype": "float64",
    }


def measure_embeddings(
    Z: Any,
    labels: Any = None,
    method: str = "auto",
    *,
    names: Sequence[str] | None = None,
    max_samples: int | None = 2048,
    seed: int = 0,
    with_dhsic: bool = True,
    test: str = "auto",
    n_permutations: int = 199,
    pair_permutations: int = 0,
    top_k: int = 10,
    correction: str = "holm",
    alpha: float = 0.05,
    kernel: str = "gaussian",
    bandwidth: str | float = "median",
    estimator: str = "biased",
    max_memory: int | str = "4GB",
    device: str | torch.device | None = None,
    progress: bool = False,
    keep_matrices: bool = False,
    on_plan: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Independence and health report of embeddings Z (n, d) -- what ``vcreg measure`` writes.

    Rows beyond ``max_samples`` are subsampled (seeded; a :class:`SubsampledWarning` and the
    first note say so, ``input.subsampled`` is true); constant features
    are reported and left out of every HSIC statistic. ``method``: ``"exact"``, ``"lowrank"`` or
    ``"auto"`` (lowrank when exact would take more than ~1 minute, see
    :func:`exact_pairwise_seconds`). Pairwise p-values: :func:`pairwise_hsic_test` (spectral
    null, ``correction`` at ``alpha``; ``pair_permutations`` adds permutation p-values for the
    ``top_k`` pairs). dHSIC: :func:`dhsic_test` with ``test`` ("auto" = permutation,
    ``n_permutations``; "gamma"; "none") and the "auto" bandwidth rule; a saturated statistic is
    reported as null with the reason. ``cost``: the estimate of every step
    (:func:`vcreg.independence.cost.measure_plan`; ``on_plan(plan)`` is called with it before
    any work) next to the measured seconds per step (``steps_seconds``); ``progress=True``
    shows a bar over the steps and the steps' own bars; with lowrank, ``lowrank_accuracy`` states the error vs
    exact on the pairs of ACCURACY_COLUMNS random features. Under a multi-rank ``torch.distributed`` group the
    pairwise HSIC is sharded over the ranks (:func:`pairwise_hsic`). JSON-ready dict (module
    docs); ``keep_matrices=True`` adds ``"matrices"`` (NumPy ``hsic``, ``nhsic``, ``p_values``, ``p_adjusted``; full d x d).
    """
    _check_options(locals())
    notes: list[str] = []
    budget = parse_memory(max_memory)
    n_total, z, y, constant, keep = _prepare_input(Z, labels, names, max_samples, seed, notes)
    n, d = z.shape
    dev = torch.device(device) if device is not None else torch.device("cpu")
    resolved = _resolve_method(method, n, keep.size, budget, dev.type == "cuda", notes)
    counts = value_counts(z)  # distinct values, rows off the mode: the plan and dead units
    plan = measure_plan(
        n, keep.size, method=resolved, with_dhsic=with_dhsic, test=test,
        n_permutations=n_permutations, estimator=estimator, labels=labels is not None,
        max_memory=budget, cuda=dev.type == "cuda", world=world_size(),
        exact_pairs=exact_pair_count(counts[1][keep], n),
    )  # fmt: skip
    if on_plan is not None:
        on_plan(plan | {"n_total": n_total, "n_features": d})
    zk = torch.from_numpy(z).to(dev)[:, torch.as_tensor(keep, device=dev)]
    clock = _StepClock(plan, progress)
    try:
        data = dict(zk=zk, z=z, y=y, keep=keep, names=names, constant=constant,
                    n_total=n_total, counts=counts, notes=notes)  # fmt: skip
        opts = dict(
            resolved=resolved, correction=correction, alpha=alpha, top_k=top_k, seed=seed,
            pair_permutations=pair_permutations, estimator=estimator, with_dhsic=with_dhsic,
            test=test, n_permutations=n_permutations, kernel=kernel, bandwidth=bandwidth,
            max_memory=budget, progress=progress,
        )  # fmt: skip
        report = _measured_sections(clock, data, opts)
    finally:
        clock.close()
    report["cost"] = {
        "estimate": plan,
        "pairwise_seconds": clock.seconds["pairwise"],
        "steps_seconds": clock.seconds,
        "steps_cpu_seconds": clock.cpu,
        "seconds": float(sum(clock.seconds.values())),
    }
    report["settings"] = _settings_section(
        resolved, method, estimator, kernel, bandwidth, test, n_permutations, pair_permutations,
        correction, alpha, max_samples, seed, budget, dev,
    )  # fmt: skip
    report["notes"] = notes
    raw, tests = report.pop("_matrices")
    if keep_matrices:
        report["matrices"] = _full_matrices(d, keep, raw, tests)
    return report


def _full_matrices(d: int, keep: np.ndarray, raw: np.ndarray, tests: dict) -> dict:
    """(d, d) matrices over all features; rows/columns of constant features are 0 (NaN for p)."""
    out = {}
    for key, src, fill in (
        ("hsic", raw, 0.0),
        ("nhsic", tests["nhsic"], 0.0),
        ("p_values", tests["p_values"], np.nan),
        ("p_adjusted", tests["p_adjusted"], np.nan),
    ):
        m = np.full((d, d), fill)
        m[np.ix_(keep, keep)] = src
        out[key] = m
    np.fill_diagonal(out["nhsic"], 1.0)
    return out
