"""CPU instructions a session spends per request, counted by callgrind, for one or more commits.

    .venv/bin/python bench/session_cost.py [--ref 55c43f9 --ref HEAD] [--calls 3000]

Each ref is checked out into a temporary git worktree (HEAD's working tree for ``WORKTREE``) and
its ``Session`` is driven in process, with the fake key store and services of its own
``tests/unit/test_session.py``: a login, then ``--calls`` requests of each method. The program
runs twice under ``valgrind --tool=callgrind``, with 0 and with ``--calls`` requests, and the
difference divided by ``--calls`` is the instructions per request: the parsing, dispatch,
limits and encoding of the session layer, without sockets or the engine. Instruction counts do
not depend on what else the machine is doing, so refs measured in one run compare exactly.
Rate limits (where a ref has them) are lifted so that every request is served.

Writes ``bench/results/session_cost-<commit of HEAD>.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

DRIVER = r"""
import json, sys
root, method, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, root)
from tradews.session.session import Session
from tests.unit.test_session import make_services
services = make_services()
try:
    from tradews.session.limits import Rate, RateLimiter, RateLimits
    unlimited = Rate(1e12, 1e12)
    services.rates = RateLimiter(RateLimits(connection=unlimited, key=unlimited, address=unlimited))
except ImportError:
    pass
session = Session(services, "c")
login = {"jsonrpc": "2.0", "method": "rpc.login", "params": {"apiKey": "k", "apiSecret": "s"}, "id": 0}
assert b'"result":true' in session.receive(json.dumps(login).encode(), 1000)[0]
frame = json.dumps({"jsonrpc": "2.0", "method": method, "id": 1}).encode()
for i in range(calls):
    out = session.receive(frame, 1000 + i // 10)
assert calls == 0 or b'"result"' in out[0], out
"""


def instructions(tree: Path, method: str, calls: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        driver = Path(tmp) / "driver.py"
        driver.write_text(DRIVER)
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
             sys.executable, str(driver), str(tree), method, str(calls)],
            capture_output=True, text=True, env={"PYTHONPATH": str(tree / "src"), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind failed for {tree} {method}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_call(tree: Path, method: str, calls: int) -> float:
    return (instructions(tree, method, calls) - instructions(tree, method, 0)) / calls


def compile_tree(tree: Path) -> None:
    """Write every .pyc first: otherwise the first measured run pays for compiling them."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(tree / "src"), str(tree / "tests")],
        check=True, capture_output=True,
    )  # fmt: skip


def commit_of(ref: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref", action="append", help="a commit, or WORKTREE (default)")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--method", action="append", help="default: time and balances")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt install valgrind)")
    refs = args.ref or ["WORKTREE"]
    methods = args.method or ["time", "balances"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ref in refs:
            if ref == "WORKTREE":
                tree, name = ROOT, f"{commit_of('HEAD')} + working tree"
            else:
                tree, name = Path(tmp) / ref, commit_of(ref)
                subprocess.run(
                    ["git", "worktree", "add", "--detach", str(tree), ref],
                    cwd=ROOT, check=True, capture_output=True,
                )  # fmt: skip
            try:
                compile_tree(tree)
                for method in methods:
                    cost = per_call(tree, method, args.calls)
                    rows.append({"ref": name, "method": method, "instructions": round(cost)})
                    print(f"{name:>28}  {method:<10} {cost:>10,.0f} instructions a request")
            finally:
                if ref != "WORKTREE":
                    subprocess.run(
                        ["git", "worktree", "remove", "--force", str(tree)],
                        cwd=ROOT, check=True, capture_output=True,
                    )  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"session_cost-{commit_of('HEAD')}.json"
    out.write_text(json.dumps({"calls": args.calls, "python": sys.version, "rows": rows}, indent=2))
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
