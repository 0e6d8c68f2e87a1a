"""The engine at another commit against this working tree's, timed in turns on one stream.

Replays ``bench/engine_peers.py``'s seeded stream through ``Engine.apply`` only (nothing but
tradews: no peers, no checks beyond the engines' own), in child processes that take turns: the
reference commit's engine, then this install's, ``--rounds`` times, each child timing
``--replays`` replays on fresh engines and reporting its best. The reference is ``src/tradews``
exported from git (``git archive``) into a temporary directory, its engine compiled there with
this install's mypyc as ``make install`` compiles it (``TRADEWS_PURE_PYTHON=1`` runs both
from their sources instead). Turns, not one run after the other: the machine is shared, and
its load drifts over minutes.

    .venv/bin/python bench/engine_ab.py REF [--rounds 12] [--replays 5]

Results are printed and saved as JSON under ``bench/results/engine_ab-<ref>-<commit>.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from engine_peers import DISCARD, TradewsRunner, commit, generate  # noqa: E402
from quote_fanout import export_source, python_path  # noqa: E402

ENGINE_MODULES = (
    "tradews/domain/orders.py",
    "tradews/domain/order_book.py",
    "tradews/domain/ledger.py",
    "tradews/engine/engine.py",
)


def child(replays: int, commands: int, seed: int) -> None:
    """In a child: the best of ``replays`` replays, as a JSON line."""
    runner = TradewsRunner()
    prepared = runner.prepare(generate(commands, seed))
    best = 0
    for _ in range(replays):
        run = runner.replay(runner.fresh(), prepared)
        gc.collect()
        t0 = time.perf_counter()
        run(DISCARD)
        best = max(best, round(len(prepared) / (time.perf_counter() - t0)))
    print(json.dumps({"build": runner.build, "best": best}))


def turn(src: Path | None, args: argparse.Namespace) -> dict[str, object]:
    with python_path(src):
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--replays", str(args.replays),
             "--commands", str(args.commands), "--seed", str(args.seed)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    result: dict[str, object] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ref", nargs="?", help="the commit to compare this working tree with")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--replays", type=int, default=5)
    parser.add_argument("--commands", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.replays, args.commands, args.seed)
        return
    if not args.ref:
        parser.error("a commit to compare with is needed")
    ref = subprocess.run(
        ["git", "rev-parse", "--short", args.ref], cwd=BENCH, check=True,
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    here = commit()
    runs: dict[str, list[int]] = {ref: [], here: []}
    builds: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = export_source(ref, Path(tmp))
        if not os.environ.get("TRADEWS_PURE_PYTHON"):
            mypyc = Path(sys.executable).parent / "mypyc"
            subprocess.run([str(mypyc), *ENGINE_MODULES], cwd=src, check=True,
                           capture_output=True)  # fmt: skip
        for i in range(args.rounds):
            for name, path in ((ref, src), (here, None)):
                result = turn(path, args)
                builds[name] = result["build"]
                runs[name].append(int(str(result["best"])))
            print(f"round {i + 1}: {ref} {runs[ref][-1]:,}, {here} {runs[here][-1]:,}", flush=True)
    wins = sum(b > a for a, b in zip(runs[ref], runs[here], strict=True))
    summary = {
        name: {"best": max(r), "median": statistics.median(r), "runs": r, "build": builds[name]}
        for name, r in runs.items()
    }
    print(f"\ncommands/s, best of {args.replays} replays a turn, {args.rounds} turns each:")
    for name, s in summary.items():
        print(f"  {name} ({s['build']}): best {s['best']:,}, median {s['median']:,.0f}")
    print(f"  {here} / {ref}: best {max(runs[here]) / max(runs[ref]):.3f}x, median "
          f"{statistics.median(runs[here]) / statistics.median(runs[ref]):.3f}x; "
          f"faster in {wins} of {args.rounds} rounds")  # fmt: skip
    record = {
        "benchmark": "engine_ab",
        "ref": ref,
        "commit": here,
        "python": platform.python_version(),
        "commands": args.commands,
        "seed": args.seed,
        "rounds": args.rounds,
        "replays": args.replays,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "results": summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    pure = "-pure" if os.environ.get("TRADEWS_PURE_PYTHON") else ""
    path = args.out / f"engine_ab-{ref}-{here}{pure}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
