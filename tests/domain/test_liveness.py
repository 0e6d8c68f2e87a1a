"""Cancel-on-disconnect tags and dead-man's switches in the engine: what they cancel and what
they leave, that they survive amendments, replay and snapshots, and that states and journals
from before they existed read (and hash) exactly as they did."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.domain.test_conservation import FEES, INSTRUMENT
from tradews.domain.orders import OrderType, Side, TimeInForce
from tradews.engine.commands import (
    AcceptQuote,
    AmendOrder,
    AnyCommand,
    CancelAllAfter,
    CancelOrder,
    Deposit,
    EndSession,
    ExpireDeadlines,
    PlaceOrder,
    decoder,
    encoder,
)
from tradews.engine.engine import Done, Engine, OrderResult, Rejected
from tradews.engine.events import OrderUpdated

GTC, IOC, LIMIT = TimeInForce.GTC, TimeInForce.IOC, OrderType.LIMIT


def funded(*accounts: int) -> Engine:
    engine = Engine([INSTRUMENT], fee_account_id=FEES)
    for account in accounts:
        engine.apply(Deposit(0, account, "Q", 10**13, f"q{account}"))
        engine.apply(Deposit(0, account, "B", 10**11, f"b{account}"))
    return engine


def place(engine: Engine, at: int, account: int, side: Side, price: int, qty: int,
          session: int = 0, tif: TimeInForce = GTC) -> OrderUpdated:  # fmt: skip
    result, _ = engine.apply(
        PlaceOrder(at, account, "B_Q", side, LIMIT, price, qty, tif, False, None, 0, 0, session)
    )
    assert isinstance(result, OrderResult), result
    return result.order


def open_ids(engine: Engine) -> set[int]:
    return set(engine.open_orders)


def cancelled(events: list[Any]) -> dict[int, str | None]:
    return {e.order_id: e.reason for e in events if isinstance(e, OrderUpdated)
            and e.status == "cancelled"}  # fmt: skip


# Cancel-on-disconnect --------------------------------------------------------------------------


def test_ending_a_session_cancels_its_open_orders_and_nothing_else() -> None:
    engine = funded(1, 2)
    a1 = place(engine, 1, 1, Side.BUY, 9_000, 5, session=111)
    a2 = place(engine, 2, 1, Side.SELL, 11_000, 5, session=111)
    other_session = place(engine, 3, 1, Side.BUY, 9_001, 5, session=222)
    untagged = place(engine, 4, 1, Side.BUY, 9_002, 5)
    other_account = place(engine, 5, 2, Side.BUY, 9_003, 5, session=111)  # same tag, not ours
    assert engine.sessions() == [(1, 111), (1, 222), (2, 111)]

    result, events = engine.apply(EndSession(6, 1, 111, True))

    assert result == Done([a1.order_id, a2.order_id])
    assert cancelled(events) == {a1.order_id: "CANCEL_ON_DISCONNECT",
                                 a2.order_id: "CANCEL_ON_DISCONNECT"}  # fmt: skip
    assert open_ids(engine) == {other_session.order_id, untagged.order_id, other_account.order_id}
    assert engine.sessions() == [(1, 222), (2, 111)]
    again, events = engine.apply(EndSession(7, 1, 111, True))
    assert again == Done([]) and not events
    engine.validate()


def test_ending_a_session_without_cancelling_leaves_its_orders_untagged() -> None:
    engine = funded(1)
    kept = place(engine, 1, 1, Side.BUY, 9_000, 5, session=111)
    result, events = engine.apply(EndSession(2, 1, 111, False))
    assert result == Done([]) and not events
    assert engine.sessions() == []
    result, events = engine.apply(EndSession(3, 1, 111, True))  # the tag is forgotten
    assert result == Done([]) and not events
    assert open_ids(engine) == {kept.order_id}


def test_an_order_keeps_its_tag_through_amendments_and_loses_it_when_it_closes() -> None:
    engine = funded(1, 2)
    amended = place(engine, 1, 1, Side.BUY, 9_000, 10, session=111)
    engine.apply(AmendOrder(2, 1, amended.order_id, None, 9_100, 20))  # new price: re-queued
    engine.apply(AmendOrder(3, 1, amended.order_id, None, None, 15))  # smaller: stays in place
    place(engine, 4, 1, Side.SELL, 12_000, 4, session=111)  # filled below
    partly = place(engine, 5, 1, Side.SELL, 12_001, 6, session=111)
    gone = place(engine, 6, 1, Side.SELL, 12_002, 6, session=111)
    engine.apply(CancelOrder(7, 1, gone.order_id, None))
    ioc = place(engine, 8, 1, Side.SELL, 13_000, 1, session=111, tif=IOC)  # never rests
    assert ioc.status == "cancelled"
    place(engine, 9, 2, Side.BUY, 12_001, 7)  # fills `filled` and 3 of `partly`

    result, events = engine.apply(EndSession(10, 1, 111, True))

    assert result == Done([amended.order_id, partly.order_id])
    assert set(cancelled(events)) == {amended.order_id, partly.order_id}
    engine.validate()


def test_journal_entries_from_before_the_session_tag_still_decode() -> None:
    # PlaceOrder(1763779226123, 7, "ETH_USD", BUY, LIMIT, 300000, 2000, GTC, False, "c-1", 500,
    # 1000) as the journal stored it before PlaceOrder had its trailing ``session`` field.
    before = bytes.fromhex(
        "9da5706c616365cf0000019aa96f2a0b07a74554485f5553440101ce000493e0cd07d001c2a3632d31cd01f4"
        "cd03e8"
    )
    command = decoder.decode(before)
    assert command == PlaceOrder(1763779226123, 7, "ETH_USD", 1, 1, 300000, 2000, 1, False,
                                 "c-1", 500, 1000)  # fmt: skip
    assert isinstance(command, PlaceOrder) and command.session == 0
    tagged = msgspec.structs.replace(command, session=2**62 - 1)
    assert decoder.decode(encoder.encode(tagged)) == tagged
    for new in (EndSession(1, 7, 2**62 - 1, True), CancelAllAfter(2, 7, 60_000),
                ExpireDeadlines(3)):  # fmt: skip
        assert decoder.decode(encoder.encode(new)) == new


# States and snapshots from before ----------------------------------------------------------------


def pre_liveness_commands() -> list[AnyCommand]:
    return [
        Deposit(1, 1, "Q", 10**12, "d1"),
        Deposit(2, 2, "B", 10**10, "d2"),
        Deposit(3, 50, "B", 10**10, "h1"),
        PlaceOrder(4, 1, "B_Q", Side.BUY, LIMIT, 9_990, 20, GTC, False, "b1", 500, 1000),
        PlaceOrder(5, 1, "B_Q", Side.BUY, LIMIT, 9_980, 30, GTC, True, None, 500, 1000),
        PlaceOrder(6, 2, "B_Q", Side.SELL, LIMIT, 10_010, 15, GTC, False, "s1", 500, 1000),
        PlaceOrder(7, 2, "B_Q", Side.SELL, LIMIT, 9_990, 5, IOC, False, None, 500, 1000),
        AmendOrder(8, 2, None, "s1", 10_020, None),
        CancelOrder(9, 1, 2, None),
        AcceptQuote(10, 1, "q-1", 1, "B_Q", Side.BUY, 10_000, 3, 1_000, 50),
    ]


# What the engine before cancel-on-disconnect and dead-man's switches made of those commands:
# its state hash, and its snapshot (version 1) as stored in existing databases.
PRE_LIVENESS_HASH = "a18662b3eb4002682bd54cfe1a85a7b874b05e3e66051cdb9b0a9b4f4d2f06f5"
PRE_LIVENESS_SNAPSHOT = bytes.fromhex(
    "8ca17601a37365710aad6e6578745f6f726465725f696405ad6e6578745f74726164655f696403a87072696f72"
    "69747905a66f726465727392dc00110101a3425f510101cd2706140f01c2a2623101ce08ee8790cd01f4cd03e8"
    "04b07061727469616c6c795f66696c6c6564dc00110302a3425f510201cd27240f0f01c2a2733105ce0016e360"
    "cd01f4cd03e806a36e6577a673746174657392de0010a373657107aa6163636f756e745f696401a86f72646572"
    "5f696401af636c69656e745f6f726465725f6964a26231a673796d626f6ca3425f51a47369646501a474797065"
    "01a57072696365cd2706a87175616e7469747914a972656d61696e696e670fa374696601a9706f73745f6f6e6c"
    "79c2a6737461747573b07061727469616c6c795f66696c6c6564a6726561736f6ec0aa637265617465645f6174"
    "04a2617407de0010a373657108aa6163636f756e745f696402a86f726465725f696403af636c69656e745f6f72"
    "6465725f6964a27331a673796d626f6ca3425f51a47369646502a47479706501a57072696365cd2724a8717561"
    "6e746974790fa972656d61696e696e670fa374696601a9706f73745f6f6e6c79c2a6737461747573a36e6577a6"
    "726561736f6ec0aa637265617465645f617406a2617408a862616c616e63657398929201a14292ce000c340600"
    "929201a15192cf000000e8c6f297c0ce08ee8790929202a14292cf0000000253ed5f80ce0016e360929202a151"
    "92ce02f96a1200929232a14292cf000000025407502000929232a15192ce01c9c38000929263a14292ccfa0092"
    "9263a15192cdc31e00a6746f74616c7382a151cf000000e8d4a51000a142cf00000004a817c800aa636c69656e"
    "745f696473929401a2623197a3425f510101cd27061401c2019402a2733197a3425f510201cd271a0f01c203a4"
    "726566739392a2643194a76465706f73697401a151cf000000e8d4a5100092a2643294a76465706f73697402a1"
    "42cf00000002540be40092a2683194a76465706f73697432a142cf00000002540be400ab757365645f71756f74"
    "65739192a3712d31cd03e8"
)


def test_a_state_without_tags_or_deadlines_hashes_and_snapshots_as_before() -> None:
    engine = Engine([INSTRUMENT], fee_account_id=FEES)
    for command in pre_liveness_commands():
        engine.apply(command)
    assert engine.state_hash() == PRE_LIVENESS_HASH
    assert engine.snapshot() == PRE_LIVENESS_SNAPSHOT
    # Arming and disarming a switch, or tagging an order that then closes, leaves nothing.
    engine.apply(CancelAllAfter(11, 1, 5_000))
    assert engine.state_hash() != PRE_LIVENESS_HASH
    engine.apply(CancelAllAfter(12, 1, 0))
    tagged = place(engine, 13, 1, Side.BUY, 9_000, 1, session=5)
    engine.apply(CancelOrder(14, 1, tagged.order_id, None))
    assert msgspec.msgpack.decode(engine.snapshot())["v"] == 1


def test_a_version_1_snapshot_restores_and_carries_on() -> None:
    restored = Engine.restore([INSTRUMENT], PRE_LIVENESS_SNAPSHOT, fee_account_id=FEES)
    assert restored.state_hash() == PRE_LIVENESS_HASH
    restored.validate()
    assert restored.sessions() == [] and restored.next_deadline() is None
    tagged = place(restored, 11, 1, Side.BUY, 9_000, 1, session=5)
    restored.apply(CancelAllAfter(12, 2, 5_000))
    assert msgspec.msgpack.decode(restored.snapshot())["v"] == 2
    again = Engine.restore([INSTRUMENT], restored.snapshot(), fee_account_id=FEES)
    assert again.state_hash() == restored.state_hash()
    assert again.sessions() == [(1, 5)] and again.next_deadline() == 12 + 5_000
    assert again.apply(EndSession(13, 1, 5, True))[0] == Done([tagged.order_id])


def test_the_state_hash_tells_tags_and_deadlines_apart() -> None:
    def run(session: int, timeout_ms: int) -> str:
        engine = funded(1)
        place(engine, 1, 1, Side.BUY, 9_000, 5, session=session)
        engine.apply(CancelAllAfter(2, 1, timeout_ms))
        return engine.state_hash()

    hashes = {run(0, 0), run(1, 0), run(2, 0), run(0, 1_000), run(0, 2_000), run(1, 1_000)}
    assert len(hashes) == 6


# Dead-man's switch -------------------------------------------------------------------------------


def test_a_switch_fires_at_its_deadline_and_cancels_every_order_of_its_account() -> None:
    engine = funded(1, 2)
    mine = [place(engine, 1, 1, Side.BUY, 9_000, 5, session=7),
            place(engine, 1, 1, Side.SELL, 11_000, 5)]  # fmt: skip
    theirs = place(engine, 1, 2, Side.BUY, 9_001, 5)
    assert engine.next_deadline() is None
    assert engine.apply(CancelAllAfter(100, 1, 1_000))[0] == Done(1_100)
    assert engine.next_deadline() == 1_100

    early, events = engine.apply(ExpireDeadlines(1_099))
    assert early == Done([]) and not events
    result, events = engine.apply(ExpireDeadlines(1_100))

    ids = [o.order_id for o in mine]
    assert result == Done([(1, ids)])
    assert cancelled(events) == dict.fromkeys(ids, "CANCEL_ALL_AFTER")
    assert open_ids(engine) == {theirs.order_id}
    assert engine.next_deadline() is None  # fired once: disarmed
    assert engine.sessions() == []  # the tagged order is gone with it
    engine.validate()


def test_rearming_postpones_a_switch_and_zero_disarms_it() -> None:
    engine = funded(1, 2)
    order = place(engine, 1, 1, Side.BUY, 9_000, 5)
    engine.apply(CancelAllAfter(0, 1, 1_000))
    for at in range(500, 5_000, 500):  # a heartbeat every 500 ms
        assert engine.apply(CancelAllAfter(at, 1, 1_000))[0] == Done(at + 1_000)
        assert engine.apply(ExpireDeadlines(at + 1))[0] == Done([])
    assert engine.next_deadline() == 5_500
    assert engine.apply(CancelAllAfter(5_000, 1, 0))[0] == Done(None)
    assert engine.next_deadline() is None
    assert engine.apply(ExpireDeadlines(10**9))[0] == Done([])
    assert open_ids(engine) == {order.order_id}


def test_due_switches_fire_earliest_first_and_the_rest_wait() -> None:
    engine = funded(1, 2, 3)
    orders = {a: place(engine, 1, a, Side.BUY, 9_000 + a, 1).order_id for a in (1, 2, 3)}
    engine.apply(CancelAllAfter(0, 3, 2_000))
    engine.apply(CancelAllAfter(0, 2, 1_000))
    engine.apply(CancelAllAfter(0, 1, 3_000))
    assert engine.next_deadline() == 1_000
    assert engine.apply(ExpireDeadlines(2_500))[0] == Done([(2, [orders[2]]), (3, [orders[3]])])
    assert engine.next_deadline() == 3_000 and open_ids(engine) == {orders[1]}


def test_heartbeats_do_not_grow_the_deadline_heap_without_bound() -> None:
    engine = funded(1)
    for at in range(10_000):
        engine.apply(CancelAllAfter(at, 1 + at % 3, 600_000))
    assert len(engine._deadline_heap) <= 2 * 3 + 64
    assert engine.next_deadline() == 9_997 + 600_000


def test_a_deadline_out_of_range_is_refused() -> None:
    engine = funded(1)
    result, _ = engine.apply(CancelAllAfter(2**63 - 10, 1, 600_000))
    assert isinstance(result, Rejected) and result.reason.value == "OUT_OF_RANGE"
    assert engine.next_deadline() is None


# Random commands: model, replay and snapshots ---------------------------------------------------

ACCOUNTS = (1, 2, 3)
TAGS = (0, 11, 22)


class LivenessMachine(RuleBasedStateMachine):
    """Random orders under random session tags, sessions ended, switches armed and fired,
    snapshots taken: the engine must cancel exactly what a plain model says, and a replay of
    every command, and a restored snapshot, must reach the same state hash."""

    @initialize()
    def setup(self) -> None:
        self.engine = funded(*ACCOUNTS)
        self.commands: list[AnyCommand] = []
        self.t = 10
        self.tag_of: dict[int, tuple[int, int]] = {}  # open orders placed under a tag
        self.deadlines: dict[int, int] = {}

    def apply(self, command: AnyCommand) -> tuple[Any, list[Any]]:
        self.commands.append(command)
        result, events = self.engine.apply(command)
        for order_id in list(self.tag_of):
            if order_id not in self.engine.open_orders:
                del self.tag_of[order_id]
        return result, events

    def now(self) -> int:
        self.t += 100
        return self.t

    @rule(account=st.sampled_from(ACCOUNTS), tag=st.sampled_from(TAGS),
          side=st.sampled_from([Side.BUY, Side.SELL]), price=st.integers(9_995, 10_005),
          qty=st.integers(1, 20), tif=st.sampled_from([GTC, GTC, IOC]))  # fmt: skip
    def place(self, account: int, tag: int, side: Side, price: int, qty: int,
              tif: TimeInForce) -> None:  # fmt: skip
        command = PlaceOrder(self.now(), account, "B_Q", side, LIMIT, price, qty, tif, False, None,
                             0, 0, tag)  # fmt: skip
        result, _ = self.apply(command)
        if (
            isinstance(result, OrderResult)
            and tag
            and result.order.order_id in self.engine.open_orders
        ):
            self.tag_of[result.order.order_id] = (account, tag)

    @precondition(lambda self: self.engine.open_orders)
    @rule(data=st.data(), price=st.none() | st.integers(9_995, 10_005),
          qty=st.none() | st.integers(1, 30))  # fmt: skip
    def amend(self, data: st.DataObject, price: int | None, qty: int | None) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.engine.open_orders)))
        account = self.engine.open_orders[order_id].account_id
        tag = self.tag_of.get(order_id)
        self.apply(AmendOrder(self.now(), account, order_id, None, price, qty))
        if order_id in self.engine.open_orders:
            assert self.tag_of.get(order_id) == tag  # an amendment keeps the tag

    @precondition(lambda self: self.engine.open_orders)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.engine.open_orders)))
        account = self.engine.open_orders[order_id].account_id
        self.apply(CancelOrder(self.now(), account, order_id, None))

    @rule(account=st.sampled_from(ACCOUNTS), tag=st.sampled_from(TAGS[1:]), cancel=st.booleans())
    def end_session(self, account: int, tag: int, cancel: bool) -> None:
        ended = sorted(o for o, key in self.tag_of.items() if key == (account, tag))
        others = set(self.engine.open_orders) - set(ended)
        result, events = self.apply(EndSession(self.now(), account, tag, cancel))
        assert result == Done(ended if cancel else [])
        assert set(cancelled(events)) == (set(ended) if cancel else set())
        assert set(self.engine.open_orders) == others | (set() if cancel else set(ended))
        for order_id in ended:
            self.tag_of.pop(order_id, None)

    @rule(account=st.sampled_from(ACCOUNTS), timeout=st.sampled_from([0, 150, 450, 1_000]))
    def cancel_all_after(self, account: int, timeout: int) -> None:
        at = self.now()
        result, _ = self.apply(CancelAllAfter(at, account, timeout))
        if timeout:
            self.deadlines[account] = at + timeout
            assert result == Done(at + timeout)
        else:
            self.deadlines.pop(account, None)
            assert result == Done(None)

    @rule()
    def expire(self) -> None:
        at = self.now()
        due = sorted((d, a) for a, d in self.deadlines.items() if d <= at)
        expected = [(a, sorted(o for o, order in self.engine.open_orders.items()
                               if order.account_id == a)) for _, a in due]  # fmt: skip
        result, _ = self.apply(ExpireDeadlines(at))
        assert result == Done(expected)
        for _, account in due:
            del self.deadlines[account]
            assert all(o.account_id != account for o in self.engine.open_orders.values())

    @rule()
    def snapshot_and_restore(self) -> None:
        before = self.engine.state_hash()
        restored = Engine.restore([INSTRUMENT], self.engine.snapshot(), fee_account_id=FEES)
        assert restored.state_hash() == before
        self.engine = restored

    @rule()
    def replay(self) -> None:
        fresh = funded(*ACCOUNTS)
        for command in self.commands:
            fresh.apply(command)
        assert fresh.state_hash() == self.engine.state_hash()

    @invariant()
    def agrees_with_the_model(self) -> None:
        self.engine.validate()
        assert self.engine.sessions() == sorted(set(self.tag_of.values()))
        expected = min(self.deadlines.values()) if self.deadlines else None
        assert self.engine.next_deadline() == expected


TestLiveness = LivenessMachine.TestCase
TestLiveness.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
