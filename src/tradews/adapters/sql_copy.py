"""Copying every row of one database into another of this release's schema, whichever the two
backends (``tradews db migrate``: a SQLite file into PostgreSQL).

The source is read inside one read-only transaction, so the copy is of one consistent state
even if the command line writes meanwhile; the target is written inside one transaction, so a
failed copy leaves it as empty as it was. Each table is read a page at a time in key order
(keyset paging: memory stays bounded, and every page is one index range)."""

from __future__ import annotations

from tradews.adapters.sql import Database, StoreError
from tradews.adapters.sql_schema import GENERATED_IDS, TABLES

PAGE = 2000


def row_counts(db: Database) -> dict[str, int]:
    return {table: int(db.scalar(f"SELECT COUNT(*) FROM {table}")) for table, _ in TABLES}


def copy_rows(source: Database, target: Database) -> dict[str, int]:
    """Copy every table's rows; return how many per table. StoreError if the target holds
    any data already."""
    with source.snapshot(), target.transaction():
        held = {table: n for table, n in row_counts(target).items() if n}
        if held:
            listed = ", ".join(f"{table} ({n})" for table, n in held.items())
            raise StoreError(f"the target database is not empty: {listed}")
        counts = {table: _copy_table(source, target, table, key) for table, key in TABLES}
        through = source.scalar("SELECT through FROM account_events_indexed")
        target.execute("UPDATE account_events_indexed SET through = ?", (through,))
        follow = target.dialect.follow_ids
        if follow is not None:
            for table in GENERATED_IDS:
                target.execute(follow.format(table=table))
    return counts


def _copy_table(source: Database, target: Database, table: str, key: tuple[str, ...]) -> int:
    cursor = source.execute(f"SELECT * FROM {table} LIMIT 0")
    columns = [d[0] for d in cursor.description]
    cursor.fetchall()
    listed = ", ".join(columns)
    order = ", ".join(key)
    positions = [columns.index(k) for k in key]
    insert = f"INSERT INTO {table}({listed}) VALUES ({', '.join('?' * len(columns))})"
    first = f"SELECT {listed} FROM {table} ORDER BY {order} LIMIT ?"
    after = (
        f"SELECT {listed} FROM {table} WHERE ({order}) > ({', '.join('?' * len(key))})"
        f" ORDER BY {order} LIMIT ?"
    )
    copied = 0
    rows = source.all(first, (PAGE,))
    while rows:
        target.executemany(insert, rows)
        copied += len(rows)
        if len(rows) < PAGE:
            break
        last = [rows[-1][p] for p in positions]
        rows = source.all(after, (*last, PAGE))
    return copied
