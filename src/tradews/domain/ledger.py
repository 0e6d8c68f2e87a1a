"""Multi-asset balances: ``available`` and ``locked`` per account and asset, in integer atoms.

One atom is 10^-8 of an asset unit for every asset (a satoshi, for bitcoin). Instruments are
checked at listing to have ``tick * lot`` (the smallest notional) a whole number of atoms, so every
trade settles exactly. Eight decimals keep any balance up to 92 billion units within a signed
64-bit integer, which is what the journal and the database store.

Every movement is a pair of equal and opposite changes, so the sum of an asset over all accounts
moves only through :meth:`Ledger.deposit` and :meth:`Ledger.withdraw`. :meth:`Ledger.totals` and
the conservation property tests check exactly that.

A movement the state cannot allow (more than is there, a negative amount) is a bug in the caller,
not a business refusal: it raises :class:`InvariantViolation` *before* changing anything, and the
engine host stops trading. Only :meth:`Ledger.lock` and :meth:`Ledger.withdraw` refuse
insufficient funds as a normal outcome.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tradews.domain.invariants import InvariantViolation

ATOMS_PER_UNIT = 10**8
_ATOM = Decimal(1) / ATOMS_PER_UNIT


def to_atoms(amount: Decimal) -> int | None:
    """``amount`` in atoms, or None if it is not a whole number of atoms."""
    try:
        atoms, rest = divmod(amount * ATOMS_PER_UNIT, 1)
    except ArithmeticError:
        return None
    return int(atoms) if rest == 0 else None


def format_atoms(atoms: int) -> str:
    """A plain decimal string without trailing zeros (``"1250.5"``, ``"0"``)."""
    text = f"{Decimal(atoms) * _ATOM:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


class InsufficientFunds(Exception):
    pass


class Balance:
    """One account's balance in one asset. The engine holds on to these rows (an order keeps the
    rows it pays from and receives into) so that settling a fill looks nothing up."""

    __slots__ = ("account_id", "asset", "available", "locked", "mark")

    def __init__(self, account_id: int, asset: str) -> None:
        # Any: compiled, kept as a Python int made once, not boxed anew for every BalanceChanged.
        self.account_id: Any = account_id
        self.asset = asset
        self.available = 0
        self.locked = 0
        self.mark = 0  # for the engine: the command that last reported this balance


class Ledger:
    __slots__ = ("_assets", "_totals")

    def __init__(self) -> None:
        # asset -> account_id -> balance: keyed by asset then account, so that no lookup builds
        # an (account, asset) tuple, and so that the engine can hold on to an asset's rows
        # (rows_of) and find an account's with one lookup.
        self._assets: dict[str, dict[int, Balance]] = {}
        self._totals: dict[str, int] = {}

    def rows_of(self, asset: str) -> dict[int, Balance]:
        """The rows in ``asset`` by account: the ledger's own dict, for looking rows up (a row
        that is not there yet is made with :meth:`row`, never by the caller)."""
        rows = self._assets.get(asset)
        if rows is None:
            rows = self._assets[asset] = {}
        return rows

    def row(self, account_id: int, asset: str) -> Balance:
        """The balance row, created (empty) on first use. Rows exist exactly for the pairs some
        movement or lock attempt has touched: :meth:`items` (and so the state hash) lists them."""
        rows = self.rows_of(asset)
        row = rows.get(account_id)
        if row is None:
            row = rows[account_id] = Balance(account_id, asset)
        return row

    def _find(self, account_id: int, asset: str) -> Balance | None:
        rows = self._assets.get(asset)
        return None if rows is None else rows.get(account_id)

    def balance(self, account_id: int, asset: str) -> tuple[int, int]:
        row = self._find(account_id, asset)
        return (0, 0) if row is None else (row.available, row.locked)

    def available(self, account_id: int, asset: str) -> int:
        row = self._find(account_id, asset)
        return 0 if row is None else row.available

    def balances_of(self, account_id: int) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for asset in sorted(self._assets):
            row = self._assets[asset].get(account_id)
            if row is not None:
                out[asset] = (row.available, row.locked)
        return out

    # External movements ---------------------------------------------------------------------

    def deposit(self, account_id: int, asset: str, amount: int) -> None:
        if amount <= 0:
            raise InvariantViolation(f"deposit of {amount} {asset} to account {account_id}")
        self.row(account_id, asset).available += amount
        self._totals[asset] = self._totals.get(asset, 0) + amount

    def withdraw(self, account_id: int, asset: str, amount: int) -> None:
        if amount <= 0:
            raise InvariantViolation(f"withdrawal of {amount} {asset} from account {account_id}")
        row = self.row(account_id, asset)
        if row.available < amount:
            raise InsufficientFunds
        row.available -= amount
        self._totals[asset] -= amount

    # Internal movements: by account and asset, or on rows already in hand -------------------

    def lock(self, account_id: int, asset: str, amount: int) -> bool:
        """Move ``amount`` from available to locked; False (and no change) if not enough."""
        return lock(self.row(account_id, asset), amount)

    def unlock(self, account_id: int, asset: str, amount: int) -> None:
        unlock(self.row(account_id, asset), amount)

    def pay_from_locked(self, payer: int, asset: str, amount: int, payee: int) -> None:
        """Move ``amount`` out of ``payer``'s locked funds into ``payee``'s available funds."""
        src = self.row(payer, asset)
        if not 0 <= amount <= src.locked:  # before the payee's row is made: nothing changes
            raise _bad_payment(src, amount, "locked", src.locked, payee)
        pay_from_locked(src, amount, self.row(payee, asset))

    def pay_from_available(self, payer: int, asset: str, amount: int, payee: int) -> None:
        src = self.row(payer, asset)
        if not 0 <= amount <= src.available:
            raise _bad_payment(src, amount, "available", src.available, payee)
        pay_from_available(src, amount, self.row(payee, asset))

    # Checking -------------------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        """Net deposits minus withdrawals per asset (what the balances must add up to)."""
        return dict(self._totals)

    def sums(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for asset, rows in self._assets.items():
            for row in rows.values():
                out[asset] = out.get(asset, 0) + row.available + row.locked
        return out

    def locked_by_account(self) -> dict[tuple[int, str], int]:
        return {
            (account_id, asset): row.locked
            for asset, rows in self._assets.items()
            for account_id, row in rows.items()
            if row.locked
        }

    def validate(self) -> None:
        """Raise :class:`InvariantViolation` if a balance is negative or an asset's balances do
        not add up to its net deposits."""
        for (account_id, asset), (available, locked) in self.items():
            if available < 0 or locked < 0:
                raise InvariantViolation(
                    f"negative balance of account {account_id} in {asset}: "
                    f"available {available}, locked {locked}"
                )
        sums = self.sums()
        for asset in sorted(sums.keys() | self._totals.keys()):
            if sums.get(asset, 0) != self._totals.get(asset, 0):
                raise InvariantViolation(
                    f"{asset} balances add up to {sums.get(asset, 0)}, "
                    f"net deposits are {self._totals.get(asset, 0)}"
                )

    @classmethod
    def restore(
        cls, items: list[tuple[tuple[int, str], tuple[int, int]]], totals: dict[str, int]
    ) -> Ledger:
        """A ledger with exactly these balances and net deposits (from :meth:`items`, :meth:`totals`)."""
        ledger = cls()
        for (acct, asset), (avail, locked) in items:
            row = ledger.row(acct, asset)
            row.available = avail
            row.locked = locked
        ledger._totals = dict(totals)
        return ledger

    def items(self) -> list[tuple[tuple[int, str], tuple[int, int]]]:
        return sorted(
            ((account_id, asset), (row.available, row.locked))
            for asset, rows in self._assets.items()
            for account_id, row in rows.items()
        )


# Movements on rows. Each checks before it changes anything: a movement the state cannot allow
# is a bug in the caller (InvariantViolation), never a half-done change.


def lock(row: Balance, amount: int) -> bool:
    """Move ``amount`` from available to locked; False (and no change) if not enough."""
    if row.available < amount:
        return False
    if amount < 0:
        raise InvariantViolation(f"lock of {amount} {row.asset} for account {row.account_id}")
    row.available -= amount
    row.locked += amount
    return True


def unlock(row: Balance, amount: int) -> None:
    if not 0 <= amount <= row.locked:
        raise InvariantViolation(
            f"unlock of {amount} {row.asset} for account {row.account_id}, "
            f"which has {row.locked} locked"
        )
    row.locked -= amount
    row.available += amount


def pay_from_locked(src: Balance, amount: int, dst: Balance) -> None:
    """Move ``amount`` out of ``src``'s locked funds into ``dst``'s available funds."""
    if not 0 <= amount <= src.locked:
        raise _bad_payment(src, amount, "locked", src.locked, dst.account_id)
    src.locked -= amount
    dst.available += amount


def pay_from_available(src: Balance, amount: int, dst: Balance) -> None:
    if not 0 <= amount <= src.available:
        raise _bad_payment(src, amount, "available", src.available, dst.account_id)
    src.available -= amount
    dst.available += amount


def _bad_payment(
    src: Balance, amount: int, which: str, held: int, payee: int
) -> InvariantViolation:
    return InvariantViolation(
        f"payment of {amount} {src.asset} from account {src.account_id}'s {which} funds "
        f"({held}) to account {payee}"
    )
