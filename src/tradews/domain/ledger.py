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


class Ledger:
    __slots__ = ("_balances", "_totals")

    def __init__(self) -> None:
        # (account_id, asset) -> [available, locked]
        self._balances: dict[tuple[int, str], list[int]] = {}
        self._totals: dict[str, int] = {}

    def _row(self, account_id: int, asset: str) -> list[int]:
        key = (account_id, asset)
        row = self._balances.get(key)
        if row is None:
            row = self._balances[key] = [0, 0]
        return row

    def balance(self, account_id: int, asset: str) -> tuple[int, int]:
        row = self._balances.get((account_id, asset))
        return (0, 0) if row is None else (row[0], row[1])

    def available(self, account_id: int, asset: str) -> int:
        row = self._balances.get((account_id, asset))
        return 0 if row is None else row[0]

    def balances_of(self, account_id: int) -> dict[str, tuple[int, int]]:
        return {
            asset: (row[0], row[1])
            for (acct, asset), row in self._balances.items()
            if acct == account_id
        }

    # External movements ---------------------------------------------------------------------

    def deposit(self, account_id: int, asset: str, amount: int) -> None:
        if amount <= 0:
            raise InvariantViolation(f"deposit of {amount} {asset} to account {account_id}")
        self._row(account_id, asset)[0] += amount
        self._totals[asset] = self._totals.get(asset, 0) + amount

    def withdraw(self, account_id: int, asset: str, amount: int) -> None:
        if amount <= 0:
            raise InvariantViolation(f"withdrawal of {amount} {asset} from account {account_id}")
        row = self._row(account_id, asset)
        if row[0] < amount:
            raise InsufficientFunds
        row[0] -= amount
        self._totals[asset] -= amount

    # Internal movements ---------------------------------------------------------------------

    def lock(self, account_id: int, asset: str, amount: int) -> bool:
        """Move ``amount`` from available to locked; False (and no change) if not enough."""
        row = self._row(account_id, asset)
        if row[0] < amount:
            return False
        if amount < 0:
            raise InvariantViolation(f"lock of {amount} {asset} for account {account_id}")
        row[0] -= amount
        row[1] += amount
        return True

    def unlock(self, account_id: int, asset: str, amount: int) -> None:
        row = self._row(account_id, asset)
        if not 0 <= amount <= row[1]:
            raise InvariantViolation(
                f"unlock of {amount} {asset} for account {account_id}, which has {row[1]} locked"
            )
        row[1] -= amount
        row[0] += amount

    def pay_from_locked(self, payer: int, asset: str, amount: int, payee: int) -> None:
        """Move ``amount`` out of ``payer``'s locked funds into ``payee``'s available funds."""
        src = self._row(payer, asset)
        if not 0 <= amount <= src[1]:
            raise InvariantViolation(
                f"payment of {amount} {asset} from account {payer}'s locked funds ({src[1]}) "
                f"to account {payee}"
            )
        src[1] -= amount
        self._row(payee, asset)[0] += amount

    def pay_from_available(self, payer: int, asset: str, amount: int, payee: int) -> None:
        src = self._row(payer, asset)
        if not 0 <= amount <= src[0]:
            raise InvariantViolation(
                f"payment of {amount} {asset} from account {payer}'s available funds ({src[0]}) "
                f"to account {payee}"
            )
        src[0] -= amount
        self._row(payee, asset)[0] += amount

    # Checking -------------------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        """Net deposits minus withdrawals per asset (what the balances must add up to)."""
        return dict(self._totals)

    def sums(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (_, asset), (available, locked) in self._balances.items():
            out[asset] = out.get(asset, 0) + available + locked
        return out

    def locked_by_account(self) -> dict[tuple[int, str], int]:
        return {key: row[1] for key, row in self._balances.items() if row[1]}

    def validate(self) -> None:
        """Raise :class:`InvariantViolation` if a balance is negative or an asset's balances do
        not add up to its net deposits."""
        for (account_id, asset), (available, locked) in self._balances.items():
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
        ledger._balances = {
            (acct, asset): [avail, locked] for (acct, asset), (avail, locked) in items
        }
        ledger._totals = dict(totals)
        return ledger

    def items(self) -> list[tuple[tuple[int, str], tuple[int, int]]]:
        return sorted((k, (v[0], v[1])) for k, v in self._balances.items())
