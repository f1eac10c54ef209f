"""Memory budgets hold before allocating: under an address-space limit (``ulimit -v``) the
independence functions with ``max_memory="64MB"`` either finish inside it or refuse with a
``ValueError`` that names the estimate, the budget and what to change -- never an allocator
error from deep inside torch.

The limit is relative to what the imports need: ``import torch`` alone maps ~3 GiB of virtual
address space (shared libraries, thread arenas) while touching ~0.5 GiB, so the child process
imports torch and vcreg, reads its VmSize and then sets RLIMIT_AS to VmSize + 1 GiB: 1 GiB of
address space for the computation, whose unchecked peaks are 1.1 GiB (exact pairwise_hsic),
4.6 GiB (dhsic) and 2.2 GiB (hsic) at n = 12,000.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    import torch
    from vcreg import independence as ind

    def status(key):
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) * 1024 for l in fh if l.startswith(key))

    limit = status("VmSize") + 2**30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    torch.set_num_threads(1)
    name, n = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    z = rng.standard_normal((n, 3))
    z[:, 1] += np.sin(2 * z[:, 0])
    base = status("VmRSS")
    calls = {
        "pairwise_exact": lambda: ind.pairwise_hsic(z, method="exact", max_memory="64MB"),
        "pairwise_lowrank": lambda: ind.pairwise_hsic(z, method="lowrank", max_memory="64MB"),
        "dhsic": lambda: ind.dhsic(z, max_memory="64MB"),
        "dhsic_test": lambda: ind.dhsic_test(z, n_permutations=9, max_memory="64MB"),
        "hsic": lambda: ind.hsic(z[:, 0], z[:, 1], max_memory="64MB"),
        "mutual_dependence": lambda: ind.mutual_dependence(
            z, max_samples=None, max_memory="64MB"
        ),
    }
    try:
        value = calls[name]()
        out = {"outcome": "ok", "value": np.asarray(value).tolist()}
    except ValueError as exc:
        out = {"outcome": "refused", "message": str(exc)}
    except BaseException as exc:  # the failure this test exists to catch
        out = {"outcome": "crashed", "message": f"{type(exc).__name__}: {exc}"[:500]}
    out["rss_growth"] = status("VmHWM") - base
    print(json.dumps(out))
    """
)


def _run(name: str, n: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, name, str(n)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pairwise_exact", "refused"),
        pytest.param("pairwise_lowrank", "ok", marks=pytest.mark.slow),
        ("dhsic", "refused"),
        ("dhsic_test", "refused"),
        pytest.param("hsic", "ok", marks=pytest.mark.slow),
        ("mutual_dependence", "refused"),
    ],
)
def test_64mb_budget_holds_under_address_space_limit(name, expected):
    res = _run(name, 12_000)
    assert res["outcome"] == expected, res
    if expected == "refused":
        msg = res["message"]
        assert "max_memory is 64 MiB" in msg and "needs about" in msg, msg
        assert "raise max_memory" in msg or "subsample" in msg, msg
    # the resident peak stays near the budget (plus the data and torch's own buffers)
    assert res["rss_growth"] < 64 * 2**20 + 48 * 2**20, res


def test_hsic_streamed_equals_unchunked_formula():
    import numpy as np

    from vcreg import independence as ind

    rng = np.random.default_rng(3)
    x = rng.standard_normal(300)
    y = np.cos(x) + 0.5 * rng.standard_normal(300)
    for est in ("biased", "unbiased"):
        whole = ind.hsic(x, y, estimator=est)
        # a budget of a few rows per block: hundreds of blocks, the same value
        tiny = ind.hsic(x, y, estimator=est, max_memory=200_000)
        assert tiny == pytest.approx(whole, rel=1e-10)
        nt = ind.hsic(x, y, estimator=est, normalized=True, max_memory=200_000)
        assert nt == pytest.approx(ind.hsic(x, y, estimator=est, normalized=True), rel=1e-10)
    with pytest.raises(ValueError, match="max_memory is"):
        ind.hsic(x, y, max_memory=1000)
