"""Calibration of the all-pairs HSIC test on the marginals real encoders produce.

    python benchmarks/bench_pairwise_calibration.py --json benchmarks/results/pairwise_calibration.json
    python benchmarks/bench_pairwise_calibration.py --quick          # a smoke run (minutes)
    python benchmarks/bench_pairwise_calibration.py --table benchmarks/results/pairwise_calibration.json
    python benchmarks/bench_pairwise_calibration.py --docs   # the JSON's tables into the docs

Family-wise error: for every marginal family, ``--seeds`` data sets of independent columns
(sizes cycling through n x d = 300 x 128, 1000 x 256, 2000 x 512), each tested with
``pairwise_hsic_test`` (defaults: spectral null where it is calibrated, Holm, alpha = 0.05;
exact HSIC up to n = 1000, low-rank at 2000 as ``vcreg measure`` picks); a data set counts when
any pair is significant. A calibrated test has a rate <= 0.05: the Wilson 95 % interval of the
count must reach below 0.05. Families: Gaussian (control), sparse ReLU (5 % active), ReLU of
mixed sparsity (active fraction log-uniform in [1/n, 1/2]), rare binary (1 %), binary of mixed
rates, single spikes (1-3 nonzero rows), heavy tails (Cauchy, log-normal sigma 2, Pareto 0.7),
discrete (Poisson of log-uniform rate, 3 levels), all of these mixed, and the penultimate
features of torchvision networks at random initialisation on Gaussian 3 x 32 x 32 inputs
(ResNet-18/50, DenseNet-121, MobileNet-V3-S, EfficientNet-B0, VGG-11-BN, ConvNeXt-T) and of the
project's own trained MNIST-1D VICReg encoder, every column permuted independently (so every
pair is independent, with the real marginals). Rows marked "held out" were not looked at while
the test's criterion was designed (LeakyReLU/GELU, zero-inflated log-normal, Student-t 2,
integer counts with outliers, VGG, ConvNeXt, EfficientNet).

Power: a dependent pair planted in place of columns 0 and 1 -- y = cos(2x) + noise (dense),
co-activated sparse ReLU units (5 % active), a sparse unit and a noisy copy, co-occurring rare
binary features (1 %) -- is found (significant after Holm) in what fraction of data sets.

Every row also records the tested / not-tested pairs per data set, which null the tested pairs
got, and the pooled count of tested p-values below 1e-3 / 1e-4 / 1e-5 against its expectation.
The JSON is written after every row; an existing file is resumed (rows already in it are kept).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import tempfile
import time
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

from vcreg import independence as ind  # noqa: E402

ALPHA = 0.05
SIZES = [(300, 128), (1000, 256), (2000, 512)]
TAILS = (1e-3, 1e-4, 1e-5)


def _relu(rng, n, frac):
    return np.maximum(rng.standard_normal(n) - stats.norm.isf(frac), 0)


def _logu(rng, lo, hi):
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _spikes(rng, n):
    x = np.zeros(n)
    k = int(rng.integers(1, 4))
    x[rng.choice(n, k, replace=False)] = rng.exponential(size=k) + 0.5
    return x


COLUMNS = {  # name -> one column of n values
    "gaussian": lambda rng, n: rng.standard_normal(n),
    "relu5": lambda rng, n: _relu(rng, n, 0.05),
    "relu_mixed": lambda rng, n: _relu(rng, n, _logu(rng, 1 / n, 0.5)),
    "binary1": lambda rng, n: 1.0 * (rng.random(n) < 0.01),
    "binary_mixed": lambda rng, n: 1.0 * (rng.random(n) < _logu(rng, 0.5 / n, 0.5)),
    "spikes": _spikes,
    "cauchy": lambda rng, n: rng.standard_cauchy(n),
    "lognormal": lambda rng, n: np.exp(2 * rng.standard_normal(n)),
    "pareto": lambda rng, n: rng.pareto(0.7, n),
    "poisson": lambda rng, n: 1.0 * rng.poisson(_logu(rng, 0.02, 5), n),
    "levels3": lambda rng, n: 1.0 * rng.integers(0, 3, n),
    # held out: not looked at while the criterion was designed
    "leaky": lambda rng, n: np.where((u := rng.standard_normal(n) - 1.5) > 0, u, 0.01 * u),
    "gelu": lambda rng, n: (u := rng.standard_normal(n) - 2) * stats.norm.cdf(u),
    "zi_lognormal": lambda rng, n: (rng.random(n) < 0.1) * np.exp(rng.standard_normal(n)),
    "student2": lambda rng, n: rng.standard_t(2, n),
    "counts_outliers": lambda rng, n: rng.poisson(3, n) + 1000.0 * (rng.random(n) < 0.005),
}

SYNTHETIC = {  # family -> (column kinds, held out)
    "Gaussian (control)": (["gaussian"], False),
    "sparse ReLU, 5 % active": (["relu5"], False),
    "ReLU, mixed sparsity": (["relu_mixed"], False),
    "rare binary, 1 %": (["binary1"], False),
    "binary, mixed rates": (["binary_mixed"], False),
    "single spikes (1-3 rows)": (["spikes"], False),
    "heavy tails": (["cauchy", "lognormal", "pareto"], False),
    "discrete": (["poisson", "levels3"], False),
    "all of the above, mixed": (
        [
            "gaussian",
            "relu5",
            "relu_mixed",
            "binary1",
            "binary_mixed",
            "spikes",
            "cauchy",
            "lognormal",
            "pareto",
            "poisson",
            "levels3",
        ],
        False,
    ),  # fmt: skip
    "LeakyReLU / GELU (held out)": (["leaky", "gelu"], True),
    "zero-inflated log-normal, Student-t 2, counts with outliers (held out)": (
        ["zi_lognormal", "student2", "counts_outliers"],
        True,
    ),
}

NETWORKS = {  # torchvision architecture -> held out
    "resnet18": False,
    "resnet50": False,
    "densenet121": False,
    "mobilenet_v3_small": False,
    "efficientnet_b0": True,
    "vgg11_bn": True,
    "convnext_tiny": True,
}


def synthetic(kinds: list[str]):
    def sample(n, d, rng):
        return np.stack([COLUMNS[kinds[j % len(kinds)]](rng, n) for j in range(d)], 1)

    return sample


def _penultimate(arch: str) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)(weights=None).eval()
    if hasattr(net, "fc"):
        net.fc = torch.nn.Identity()
    elif arch.startswith("vgg") or arch.startswith("convnext"):
        net.classifier[-1] = torch.nn.Identity()
    else:
        net.classifier = torch.nn.Identity()
    return net


@functools.cache
def network_features(arch: str, rows: int) -> np.ndarray:
    """Penultimate features of ``arch`` (random init, seed 0) on Gaussian 3 x 32 x 32 inputs."""
    net = _penultimate(arch)
    gen = torch.Generator().manual_seed(1)
    out = []
    with torch.inference_mode():
        for b0 in range(0, rows, 250):
            out.append(net(torch.randn(min(250, rows - b0), 3, 32, 32, generator=gen)))
    return torch.cat(out).double().numpy()


@functools.cache
def trained_features(rows: int, cache: str) -> np.ndarray:
    """The project's MNIST-1D VICReg encoder (the shipped config, 15 epochs) on its training
    split (un-augmented): the representation vcreg measures."""
    from torch.utils.data import DataLoader

    from vcreg.independence import collect_features
    from vcreg.trained import dataset_split, load_trained
    from vcreg.training import TrainConfig, train

    run = os.path.join(cache, "mnist1d_vicreg_15ep")
    if not os.path.exists(os.path.join(run, "checkpoint.pt")):
        cfg = TrainConfig.from_yaml("mnist1d_vicreg").to_dict()
        cfg.update(epochs=15, device="cpu")
        cfg["schedule"]["warmup_epochs"] = 1
        train(cfg, out_dir=run, progress=False)
    tr = load_trained(run, "cpu")
    loader = DataLoader(dataset_split(tr.bundle, "train"), batch_size=500)
    return collect_features(tr.encoder, loader, max_samples=rows, device="cpu")["features"]


def permuted(feats: np.ndarray):
    """Data sets from real features: a random row subset, each column permuted independently
    (so every pair is independent), d random non-constant columns."""

    def sample(n, d, rng):
        z = feats[rng.choice(feats.shape[0], min(n, feats.shape[0]), replace=False)]
        z = z[:, ~np.all(z == z[:1], 0)]
        z = z[:, rng.choice(z.shape[1], min(d, z.shape[1]), replace=False)]
        return np.stack([rng.permutation(c) for c in z.T], 1)

    return sample


def wilson(k: int, m: int) -> tuple[float, float]:
    """Wilson 95 % interval of k successes in m trials (scipy's)."""
    ci = stats.binomtest(k, m).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def _test(z: np.ndarray) -> dict:
    method = "exact" if z.shape[0] <= 1000 else "lowrank"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # nothing may leak from the numerics
        warnings.simplefilter("ignore", ind.ConstantVariableWarning)
        return ind.pairwise_hsic_test(z, method=method, correction="holm", alpha=ALPHA)


def _plant(z: np.ndarray, kind: str, rng) -> np.ndarray:
    n = z.shape[0]
    u, e = rng.standard_normal(n), rng.standard_normal(n)
    c = stats.norm.isf(0.05)
    if kind == "dense: y = cos(2x) + noise":
        x, y = u, np.cos(2 * u) + 0.5 * e
    elif kind == "sparse ReLU pair, co-activated":
        x, y = np.maximum(u - c, 0), np.maximum(u + 0.5 * e - c, 0)
    elif kind == "sparse unit and a noisy copy":
        x = np.maximum(u - c, 0)
        y = x + 0.3 * e * x[x > 0].std()
    else:  # co-occurring rare binary features
        x, y = 1.0 * (u > stats.norm.isf(0.01)), 1.0 * (u + 0.3 * e > stats.norm.isf(0.01))
    z = z.copy()
    z[:, 0], z[:, 1] = x, y
    return z


def run_row(name: str, sample, seeds: int, base: int, sizes, plant: str | None = None) -> dict:
    t0 = time.time()
    hits, found, tail, m_tot = 0, 0, np.zeros(len(TAILS)), 0
    tested, untested, used, sz = [], [], {}, []
    for s in range(seeds):
        rng = np.random.default_rng(base + s)
        n, d = sizes[s % len(sizes)]
        z = sample(n, d, rng)
        if plant is not None:
            z = _plant(z, plant, rng)
        r = _test(z)
        sz.append([int(z.shape[0]), int(z.shape[1])])
        sig = r["p_adjusted"] <= ALPHA
        if plant is not None:
            found += bool(sig[0, 1])
            sig[0, 1] = sig[1, 0] = False
        hits += bool(sig.any())
        p = r["p_values"][np.triu_indices(z.shape[1], 1)]
        p = p[~np.isnan(p)]
        tail += [(p < t).sum() for t in TAILS]
        m_tot += p.size
        tested.append(r["n_pairs"])
        untested.append(r["n_not_tested"])
        for k, v in r["nulls"].items():
            used[k] = used.get(k, 0) + v
    lo, hi = wilson(hits, seeds)
    row = {
        "family": name,
        "planted": plant,
        "seeds": seeds,
        "sizes": sz,
        "fwer_hits": hits,
        "fwer": hits / seeds,
        "fwer_ci95": [lo, hi],
        "calibrated": lo <= ALPHA,
        "tested_pairs_mean": float(np.mean(tested)),
        "not_tested_pairs_mean": float(np.mean(untested)),
        "nulls_mean": {k: v / seeds for k, v in used.items()},
        "tail_counts": {f"{t:g}": int(c) for t, c in zip(TAILS, tail, strict=True)},
        "tail_expected": {f"{t:g}": t * m_tot for t in TAILS},
        "seconds": time.time() - t0,
    }
    if plant is not None:
        row["power"] = found / seeds
        row["power_ci95"] = list(wilson(found, seeds))
    return row


def table(rows: list[dict]) -> str:
    out = [
        "| family | data sets (n x d) | any pair significant (FWER) [95 % CI] | tested / not "
        "tested pairs per set | nulls used per set | p < 1e-4: seen / expected |",
        "|---|---|---|---|---|---|",
    ]
    pw = ["| planted pair, background | found (power) [95 % CI] | FWER on the other pairs |",
          "|---|---|---|"]  # fmt: skip
    for r in rows:
        sizes = sorted({f"{a}x{b}" for a, b in r["sizes"]})
        nul = ", ".join(f"{k} {v:.0f}" for k, v in r["nulls_mean"].items() if v >= 0.5)
        fw = f"{r['fwer_hits']}/{r['seeds']} [{r['fwer_ci95'][0]:.2f}, {r['fwer_ci95'][1]:.2f}]"
        if r["planted"] is not None:
            lo, hi = r["power_ci95"]
            pw.append(
                f"| {r['planted']} in {r['family']} | {r['power']:.2f} [{lo:.2f}, {hi:.2f}] | "
                f"{fw} |"
            )
            continue
        t4 = f"{r['tail_counts']['0.0001']} / {r['tail_expected']['0.0001']:.1f}"
        out.append(
            f"| {r['family']} | {r['seeds']} ({', '.join(sizes)}) | {fw} | "
            f"{r['tested_pairs_mean']:.0f} / {r['not_tested_pairs_mean']:.0f} | {nul} | {t4} |"
        )
    return "\n".join(out) + "\n\n" + "\n".join(pw)


DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "sections", "independence.md")
RESULTS = os.path.join(os.path.dirname(__file__), "results", "pairwise_calibration.json")
BEGIN, END = "<!-- CALIBRATION-TABLE -->", "<!-- /CALIBRATION-TABLE -->"


def docs_block(done: dict) -> str:
    """The docs' calibration block: the command that made the JSON, then its two tables."""
    return f"{BEGIN}\n`{done['command']}`\n\n{table(done['rows'])}\n{END}"


def write_docs(results: str = RESULTS, docs: str = DOCS) -> None:
    """Replace the block between the markers of ``docs`` by the tables of ``results``."""
    with open(results) as fh:
        block = docs_block(json.load(fh))
    with open(docs) as fh:
        text = fh.read()
    start = text.index(BEGIN)
    stop = text.index(END, start) + len(END) if END in text else start + len(BEGIN)
    with open(docs, "w") as fh:
        fh.write(text[:start] + block + text[stop:])


def _families(args, cache: str):
    """(family name, factory of its sampler): network features are computed on first use."""
    for name, (kinds, _) in SYNTHETIC.items():
        yield name, (lambda k=kinds: synthetic(k))
    rows = max(n for n, _ in args.sizes)
    for arch, held_out in NETWORKS.items():
        label = f"torchvision {arch}, random init, permuted" + (" (held out)" if held_out else "")
        yield label, (lambda a=arch: permuted(network_features(a, rows)))
    yield (
        "trained MNIST-1D VICReg encoder, permuted",
        (lambda: permuted(trained_features(rows, cache))),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=30, help="data sets per family")
    ap.add_argument("--power-seeds", type=int, default=20, help="data sets per power row")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="6 seeds, n x d = 300 x 128 only")
    ap.add_argument("--only", default=None, help="run families whose name contains this")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "vcreg_bench_cal"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--table", default=None, help="print the tables of a JSON file and exit")
    ap.add_argument("--docs", action="store_true", help="write the committed JSON's tables "
                    "into docs/sections/independence.md and exit")  # fmt: skip
    args = ap.parse_args()
    if args.docs:
        write_docs()
        return
    if args.table:
        with open(args.table) as fh:
            print(table(json.load(fh)["rows"]))
        return
    torch.set_num_threads(args.threads)
    args.sizes = [(300, 128)] if args.quick else SIZES
    if args.quick:
        args.seeds = args.power_seeds = 6
    done = {"rows": []}
    if args.json and os.path.exists(args.json):
        with open(args.json) as fh:
            done = json.load(fh)
    have = {(r["family"], r["planted"]) for r in done["rows"]}
    done["command"] = "python benchmarks/bench_pairwise_calibration.py " + " ".join(sys.argv[1:])
    os.makedirs(args.cache, exist_ok=True)
    jobs = []
    for i, (name, sampler) in enumerate(_families(args, args.cache)):
        jobs.append((name, None, sampler, args.seeds, 100_000 * (i + 1)))
    backgrounds = {"Gaussian (control)", "sparse ReLU, 5 % active",
                   "torchvision resnet18, random init, permuted"}  # fmt: skip
    plants = ["dense: y = cos(2x) + noise", "sparse ReLU pair, co-activated",
              "sparse unit and a noisy copy", "co-occurring rare binary features"]  # fmt: skip
    for i, (name, _, sampler, _, _) in enumerate(list(jobs)):
        if name in backgrounds:
            for k, p in enumerate(plants):
                jobs.append((name, p, sampler, args.power_seeds, 7_000_000 + 1000 * (10 * i + k)))
    for name, plant, sampler, seeds, base in jobs:
        if args.only and args.only not in name:
            continue
        if (name, plant) in have:
            continue
        row = run_row(name, sampler(), seeds, base, args.sizes, plant)
        row["load_average"] = os.getloadavg()
        done["rows"].append(row)
        print(json.dumps({k: row[k] for k in ("family", "planted", "fwer_hits", "seeds")}
                         | {"power": row.get("power"), "s": round(row["seconds"])}), flush=True)  # fmt: skip
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(done, fh, indent=1)
    print(table(done["rows"]))


if __name__ == "__main__":
    main()
