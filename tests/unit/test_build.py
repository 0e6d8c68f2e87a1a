"""The two builds of the engine: compiled by ``make install`` and the pure-Python fallback.

Both must give the same results, events and state hashes for the same commands: journals and
snapshots written by one are replayed by the other (a replica may run either)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tradews._build import COMPILED, PURE_ENV

ROOT = Path(__file__).resolve().parents[2]

# A seeded mix of every order command, replayed in a child process; it prints the digest of
# every result and event, the final state hash and the digest of the snapshot.
REPLAY = """
import hashlib, random, msgspec
from decimal import Decimal
from tradews._build import build
from tradews.domain.instrument import Instrument
from tradews.engine.commands import AmendOrder, CancelAll, CancelOrder, Deposit, PlaceOrder
from tradews.engine.engine import Engine

inst = Instrument("BTC_USD", "BTC", "USD", Decimal("0.01"), Decimal("0.0001"),
                  Decimal("0.0001"), None, Decimal("1"))
engine = Engine([inst], fee_account_id=99)
rng = random.Random(5)
digest = hashlib.sha256()
for a in (1, 2, 3):
    engine.apply(Deposit(0, a, "USD", 10**15, f"u{a}"))
    engine.apply(Deposit(0, a, "BTC", 10**12, f"b{a}"))
for i in range(1, 4000):
    a = rng.randint(1, 3)
    roll = rng.random()
    if roll < 0.55:
        cmd = PlaceOrder(i, a, "BTC_USD", rng.randint(1, 2), 1 if rng.random() < 0.95 else 2,
                         0, rng.randint(1, 40), rng.randint(1, 3), rng.random() < 0.1,
                         f"c{i}" if rng.random() < 0.3 else None, 500, 1000, rng.randint(0, 2))
        if cmd.type == 1:  # mostly resting, some crossing
            off = rng.randint(-5, 40)
            cmd = msgspec.structs.replace(cmd, price=100_000 + (off if cmd.side == 2 else -off))
    elif roll < 0.85:
        cmd = CancelOrder(i, a, rng.randint(1, i), None)
    elif roll < 0.995:
        cmd = AmendOrder(i, a, rng.randint(1, i), None,
                         rng.choice([None, 100_000 + rng.randint(-40, 40)]), rng.randint(1, 50))
    else:
        cmd = CancelAll(i, a, None)
    result, events = engine.apply(cmd)
    digest.update(repr(result).encode())
    digest.update(msgspec.msgpack.encode(events))
engine.validate()
snapshot = hashlib.sha256(engine.snapshot()).hexdigest()
print(build(), digest.hexdigest(), engine.state_hash(), snapshot, len(engine.open_orders))
"""


def replay(pure: bool) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    if pure:
        env[PURE_ENV] = "1"
    done = subprocess.run(
        [sys.executable, "-c", REPLAY], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_the_fallback_loads_every_compiled_module_from_its_source() -> None:
    code = f"import importlib; print(*(importlib.import_module(m).__file__ for m in {COMPILED}))"
    env = {**os.environ, PURE_ENV: "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert all(path.endswith(".py") for path in done.stdout.split())


def test_both_builds_give_the_same_events_and_state_hash() -> None:
    compiled = replay(pure=False)
    pure = replay(pure=True)
    assert pure[:2] == ["pure", "Python"]
    assert compiled[-4:] == pure[-4:]
    assert int(pure[-1]) > 0  # the run left orders resting: it tested something


# What the engine gave for REPLAY at 51da332, before it was made faster. Journals and snapshots
# written then must replay to the same state: these must never change.
GOLDEN = [
    "d761ed1349dd55f14ca954c386b8a278fb9456eb92f869de359068f43bcc8f3a",  # results and events
    "f77664810aabc192f721c8f1f4165e449dc2ca43d6cd4f7e843c9135a3873c9d",  # state hash
    "34421d48375d948fc5ada9499b24306ae9ba68b826de8153af9e62eac7306cbd",  # snapshot
    "52",  # open orders at the end
]


def test_the_engine_gives_what_it_always_gave() -> None:
    assert replay(pure=True)[-4:] == GOLDEN


def test_the_makefile_compiles_exactly_these_modules() -> None:
    makefile = (ROOT / "Makefile").read_text()
    listed = re.search(r"ENGINE_MODULES := (.*?)\n\n", makefile, re.S)
    assert listed is not None
    paths = listed.group(1).replace("\\", " ").split()
    assert sorted(p.removeprefix("src/").removesuffix(".py").replace("/", ".") for p in paths) == (
        sorted(COMPILED)
    )
