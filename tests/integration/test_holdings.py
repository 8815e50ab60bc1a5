"""Holdings semantics on the real PostgreSQL: replaced whole per chain, never by older data,
never erased by a failed chain, unchanged by a repeated delivery."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import threading
import uuid
from decimal import Decimal

import psycopg
import pytest
import redis

import actors
from actors.errors import SyncAttemptFailed
from actors.redis_backed.attempt_reads import AttemptReads
from actors.services import context, lifecycle
from chaindata.base import PermanentProviderError
from storage import operations
from storage.group_commit import GroupCommit
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _clean(clean_queues):
    yield


def holdings_by_chain(user_id, wallet):
    result: dict[int, dict[str, dict]] = {}
    for h in operations.get_holdings(user_id, wallet):
        result.setdefault(h["chain_id"], {})[h["token_address"]] = h
    return result


def test_repeated_delivery_of_a_finished_operation_changes_nothing(user_id, wallet):
    op_id = actors.request_sync(user_id, wallet, [1, 10])
    lifecycle.sync_portfolio(op_id)
    before = operations.get_holdings(user_id, wallet.lower())
    record = actors.get_sync(op_id)

    lifecycle.sync_portfolio(op_id)  # the same message delivered again

    assert operations.get_holdings(user_id, wallet.lower()) == before
    assert actors.get_sync(op_id) == record


class _FailingChain:
    """Wraps the real provider; one chain answers with a permanent error."""

    def __init__(self, inner, chain_id):
        self.inner, self.chain_id, self.name = inner, chain_id, inner.name

    def read_chain(self, chain_id, wallet, tokens=()):
        if chain_id == self.chain_id:
            raise PermanentProviderError("provider_rejected", f"chain {chain_id}: HTTP 400 from the provider")
        return self.inner.read_chain(chain_id, wallet, tokens)


def test_a_failed_chain_keeps_its_previous_holdings(user_id, wallet, monkeypatch):
    first = actors.request_sync(user_id, wallet, [1, 10])
    lifecycle.sync_portfolio(first)
    before = holdings_by_chain(user_id, wallet.lower())

    failing = _FailingChain(context.provider(), 10)
    monkeypatch.setattr(context, "provider", lambda: failing)
    second = actors.request_sync(user_id, wallet, [1, 10], force=True)
    lifecycle.sync_portfolio(second)  # chain 1 stored, chain 10 failed for good: partial, no retry, no dead letter

    op = actors.get_sync(second)
    assert op["status"] == "partial" and op["error_code"] == "provider_rejected" and op["attempts"] == 1
    assert op["finished_at"] is not None
    after = holdings_by_chain(user_id, wallet.lower())
    assert {h["operation_id"] for h in after[10].values()} == {first}  # chain 10 untouched
    assert {h["operation_id"] for h in after[1].values()} == {second}  # chain 1 rewritten
    assert after[10].keys() == before[10].keys()


def _write(op_id: str, *, as_of: dt.datetime, tokens: dict[str, int], block: int | None = None) -> None:
    holdings = [{"chain_id": 1, "token_address": addr, "symbol": "T", "name": "Token", "decimals": 0,
                 "raw_balance": raw, "balance": Decimal(raw), "price_usd": None, "value_usd": None,
                 "price_source": None, "priced_at": None} for addr, raw in tokens.items()]
    assert operations.start_attempt(op_id, worker_id="test", message_id=None)
    assert operations.finish_attempt(op_id, operations.AttemptOutcome(
        status="succeeded", holdings=holdings, synced_chains=[1], chain_results={}, holdings_count=len(holdings),
        total_value_usd=Decimal(0), unpriced_count=len(holdings), as_of=as_of, provider="test",
        chain_blocks={1: block}))


def _new_operation(user_id, wallet) -> str:
    op_id = str(uuid.uuid4())
    operations.insert_operations([operations.NewOperation(op_id, user_id, wallet, (1,), "normal", "api")],
                                 provider="test")
    return op_id


def test_newer_data_replaces_a_chain_whole_and_older_data_never_does(user_id, wallet):
    wallet = wallet.lower()
    a, b, c = "0x" + "a" * 40, "0x" + "b" * 40, "0x" + "c" * 40
    now = dt.datetime.now(dt.timezone.utc)
    _write(_new_operation(user_id, wallet), as_of=now, tokens={a: 1, b: 2**200})

    late = _new_operation(user_id, wallet)  # read earlier, finished later (a reordered delivery)
    _write(late, as_of=now - dt.timedelta(seconds=30), tokens={c: 3})
    assert {t: h["raw_balance"] for t, h in holdings_by_chain(user_id, wallet)[1].items()} == {a: 1, b: 2**200}

    newer = _new_operation(user_id, wallet)
    _write(newer, as_of=now + dt.timedelta(seconds=30), tokens={b: 5, c: 6})
    after = holdings_by_chain(user_id, wallet)[1]
    assert {t: h["raw_balance"] for t, h in after.items()} == {b: 5, c: 6}  # a is no longer held: removed
    assert {h["operation_id"] for h in after.values()} == {newer}


def test_block_numbers_order_reads_whatever_the_clocks_say(user_id, wallet):
    wallet = wallet.lower()
    a, b, c = "0x" + "a" * 40, "0x" + "b" * 40, "0x" + "c" * 40
    now = dt.datetime.now(dt.timezone.utc)
    first = _new_operation(user_id, wallet)
    _write(first, as_of=now, tokens={a: 1}, block=100)

    # Read at an older block by a worker whose clock runs ahead: older data, refused.
    _write(_new_operation(user_id, wallet), as_of=now + dt.timedelta(minutes=5), tokens={b: 2}, block=99)
    after = holdings_by_chain(user_id, wallet)[1]
    assert ({t: h["raw_balance"] for t, h in after.items()}, after[a]["block_number"]) == ({a: 1}, 100)

    # Read at a newer block by a worker whose clock runs behind: newer data, taken.
    newer = _new_operation(user_id, wallet)
    _write(newer, as_of=now - dt.timedelta(minutes=5), tokens={c: 3}, block=101)
    after = holdings_by_chain(user_id, wallet)[1]
    assert {t: (h["raw_balance"], h["block_number"], h["operation_id"]) for t, h in after.items()} == {
        c: (3, 101, newer)}


def test_a_token_of_unknown_decimals_is_stored_with_its_integer_and_no_value(user_id, wallet):
    wallet = wallet.lower()
    op_id = _new_operation(user_id, wallet)
    token = "0x" + "f" * 40
    holding = {"chain_id": 1, "token_address": token, "symbol": "ND", "name": "No Decimals", "decimals": None,
               "raw_balance": 12345, "balance": None, "price_usd": None, "value_usd": None,
               "price_source": None, "priced_at": None}
    assert operations.start_attempt(op_id, worker_id="test", message_id=None)
    assert operations.finish_attempt(op_id, operations.AttemptOutcome(
        status="succeeded", holdings=[holding], synced_chains=[1], chain_results={}, holdings_count=1,
        total_value_usd=Decimal(0), unpriced_count=1, as_of=dt.datetime.now(dt.timezone.utc), provider="test",
        chain_blocks={1: 7}))
    (h,) = operations.get_holdings(user_id, wallet)
    assert (h["decimals"], h["balance"], h["value_usd"], int(h["raw_balance"]), h["block_number"]) == (
        None, None, None, 12345, 7)


def test_raw_balances_keep_every_digit(user_id, wallet):
    wallet = wallet.lower()
    big = 2**256 - 1  # the largest uint256
    _write(_new_operation(user_id, wallet), as_of=dt.datetime.now(dt.timezone.utc), tokens={"0x" + "d" * 40: big})
    (h,) = operations.get_holdings(user_id, wallet)
    assert int(h["raw_balance"]) == big


def test_a_late_read_does_not_refill_a_chain_emptied_since(user_id, wallet):
    wallet = wallet.lower()
    now = dt.datetime.now(dt.timezone.utc)
    _write(_new_operation(user_id, wallet), as_of=now, tokens={})  # the wallet holds nothing on chain 1
    _write(_new_operation(user_id, wallet), as_of=now - dt.timedelta(seconds=5), tokens={"0x" + "e" * 40: 7})
    assert operations.get_holdings(user_id, wallet) == []


def _outcome(as_of: dt.datetime, tokens: dict[str, int], chains: tuple[int, ...] = (1,)) -> operations.AttemptOutcome:
    """A successful read of ``chains``, each holding ``tokens`` (address -> raw balance)."""
    holdings = [{"chain_id": chain, "token_address": addr, "symbol": "T", "name": "Token", "decimals": 0,
                 "raw_balance": raw, "balance": Decimal(raw), "price_usd": None, "value_usd": None,
                 "price_source": None, "priced_at": None} for chain in chains for addr, raw in tokens.items()]
    return operations.AttemptOutcome(
        status="succeeded", holdings=holdings, synced_chains=list(chains), chain_results={},
        holdings_count=len(holdings), total_value_usd=Decimal(0), unpriced_count=len(holdings), as_of=as_of,
        provider="test")


def _attempt(op_id: str, as_of: dt.datetime, tokens: dict[str, int]) -> dict:
    """A call of the finish's group commit: the attempt as the statement takes it."""
    return operations._attempt_json(op_id, _outcome(as_of, tokens))


def test_one_batch_of_attempts_writes_each_operation_its_own_rows(user_id):
    """The group commit's set-based statements: each attempt of a batch keeps to its own wallet, and
    an operation already final is reported (False) and left alone."""
    wallets = [f"0x{i:040x}" for i in range(7001, 7004)]
    ops = [_new_operation(user_id, w) for w in wallets]
    done = _new_operation(user_id, "0x" + "9" * 40)
    _write(done, as_of=dt.datetime.now(dt.timezone.utc), tokens={"0x" + "1" * 40: 1})

    started = operations._start_batch([(op, "test", f"m-{op}") for op in [*ops, done, str(uuid.uuid4())]])
    assert [row["attempts"] if row else None for row in started] == [1, 1, 1, None, None]
    assert [str(row["id"]) for row in started[:3]] == ops

    now = dt.datetime.now(dt.timezone.utc)
    tokens = [{"0x" + "a" * 40: i + 1, "0x" + "b" * 40: 10 * (i + 1)} for i in range(3)]
    finished = operations._finish_batch([*((op, _attempt(op, now, t)) for op, t in zip(ops, tokens)),
                                         (done, _attempt(done, now, {"0x" + "2" * 40: 2}))])
    assert finished == [True, True, True, False]
    for op, wallet, t in zip(ops, wallets, tokens):
        held = holdings_by_chain(user_id, wallet)[1]
        assert {a: h["raw_balance"] for a, h in held.items()} == t
        assert {h["operation_id"] for h in held.values()} == {op}
        assert actors.get_sync(op)["status"] == "succeeded" and actors.get_sync(op)["message_id"] == f"m-{op}"
    assert set(holdings_by_chain(user_id, "0x" + "9" * 40)[1]) == {"0x" + "1" * 40}  # the final one: unchanged


def test_two_attempts_of_one_wallet_in_a_batch_are_written_one_by_one(user_id, wallet, caplog):
    """PostgreSQL refuses to touch a row twice in one statement; the group commit then writes the
    batch's attempts one at a time, and the newer read wins as always."""
    # Its own level: another test of the same process may have configured the root logger above WARNING.
    caplog.set_level(logging.WARNING, logger="storage.group_commit")
    wallet = wallet.lower()
    older, newer = _new_operation(user_id, wallet), _new_operation(user_id, wallet)
    operations._start_batch([(older, "test", None), (newer, "test", None)])
    now = dt.datetime.now(dt.timezone.utc)
    batch = [(newer, _attempt(newer, now, {"0x" + "c" * 40: 2})),
             (older, _attempt(older, now - dt.timedelta(seconds=1), {"0x" + "c" * 40: 1}))]
    with pytest.raises(psycopg.errors.CardinalityViolation):
        operations._finish_batch(batch)

    writer = GroupCommit(operations._finish_batch, name="test")
    results: dict[str, bool] = {}
    first_done = threading.Event()
    original = writer.write_batch

    def slow_first(calls):  # hold the first write until the next two calls wait, so they form one batch
        if not first_done.is_set():
            first_done.set()
            wait_until(lambda: len(writer._waiting) == 2, 5, "the two calls never queued behind the first")
            return [False] * len(calls)
        return original(calls)

    writer.write_batch = slow_first
    nobody = "00000000-0000-0000-0000-000000000000"
    threads = [threading.Thread(target=lambda: writer((nobody, _attempt(nobody, now, {}))))]
    threads += [threading.Thread(target=lambda c=c: results.__setitem__(c[0], writer(c))) for c in batch]
    threads[0].start()
    assert first_done.wait(5)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {newer: True, older: True}
    assert "A batch of 2 test writes failed (CardinalityViolation); writing them one by one." in caplog.text
    (held,) = operations.get_holdings(user_id, wallet)
    assert held["raw_balance"] == 2 and str(held["operation_id"]) == newer


def test_a_resync_writes_only_what_changed_and_reads_show_the_latest_read(user_id, wallet, db_conn):
    """An equal row is not rewritten (same row version), a changed one is, a vanished one is deleted, a new
    one inserted; every row of the chain shows the latest read (operation, time, block) all the same."""
    wallet = wallet.lower()
    a, b, c = "0x" + "a" * 40, "0x" + "b" * 40, "0x" + "c" * 40
    now = dt.datetime.now(dt.timezone.utc)

    def versions() -> dict[str, str]:
        return {r["token_address"]: r["xmin"] for r in db_conn.execute(
            "SELECT token_address, xmin::text FROM holdings WHERE user_id = %s AND wallet_address = %s",
            (user_id, wallet)).fetchall()}

    _write(_new_operation(user_id, wallet), as_of=now, tokens={a: 1, b: 2}, block=10)
    first = versions()

    second = _new_operation(user_id, wallet)
    _write(second, as_of=now + dt.timedelta(seconds=10), tokens={a: 1, b: 3, c: 4}, block=11)
    after = versions()
    assert after[a] == first[a]  # equal: not written
    assert after[b] != first[b] and c in after  # changed, and new
    held = holdings_by_chain(user_id, wallet)[1]
    assert {t: (int(h["raw_balance"]), h["operation_id"], h["block_number"], h["as_of"]) for t, h in held.items()} == {
        t: (raw, second, 11, now + dt.timedelta(seconds=10)) for t, raw in {a: 1, b: 3, c: 4}.items()}

    third = _new_operation(user_id, wallet)
    _write(third, as_of=now + dt.timedelta(seconds=20), tokens={a: 1}, block=12)
    assert versions() == {a: first[a]}  # b and c vanished; a still the row first written
    (h,) = operations.get_holdings(user_id, wallet)
    assert (h["operation_id"], h["block_number"], h["as_of"]) == (third, 12, now + dt.timedelta(seconds=20))


def test_a_chain_reads_start_that_fails_fails_its_chains_and_leaves_no_row_running(user_id, wallet, monkeypatch):
    def refused(*_args, **_kwargs):
        raise redis.ResponseError("ERR Error running script: @user_script: attempt to index a nil value")

    monkeypatch.setattr(AttemptReads, "start", refused)
    op_id = actors.request_sync(user_id, wallet, [1, 10])
    with pytest.raises(SyncAttemptFailed):
        lifecycle.sync_portfolio(op_id)

    op = actors.get_sync(op_id)
    assert op["status"] == "failed" and op["error_code"] == "provider_error" and op["finished_at"] is not None
    assert {r["error_code"] for r in op["chain_results"].values()} == {"provider_error"}
    assert operations.get_holdings(user_id, wallet.lower()) == []


def _start(op_id: str) -> dict:
    row = operations.start_attempt(op_id, worker_id="test", message_id=None)
    assert row is not None
    return row


def _finish(op_id: str, row: dict, *, as_of: dt.datetime, tokens: dict[str, int], block: int) -> None:
    outcome = _outcome(as_of, tokens)
    assert operations.finish_attempt(op_id, dataclasses.replace(outcome, chain_blocks={1: block},
                                                                stored_digests=row["holdings_digests"]))


def _first_write(user_id: str, wallet: str, tokens: dict[str, int]) -> tuple[str, dt.datetime]:
    """Chain 1 stored by a first operation, at block 10: that operation and its read's time."""
    now = dt.datetime.now(dt.timezone.utc)
    first = _new_operation(user_id, wallet)
    _finish(first, _start(first), as_of=now, tokens=tokens, block=10)
    return first, now


def _snapshot(db_conn, user_id: str, wallet: str) -> dict:
    return db_conn.execute("SELECT operation_id::text, as_of, block_number, holdings_digest "
                           "FROM wallet_chain_snapshots WHERE user_id = %s AND wallet_address = %s AND chain_id = 1",
                           (user_id, wallet)).fetchone()


def test_a_read_equal_to_the_stored_holdings_moves_only_the_snapshot(user_id, wallet, db_conn, monkeypatch):
    """Holdings whose digest is the one the attempt started with are not sent: the snapshot takes the read,
    the rows stay (same row versions) and show the new read."""
    wallet = wallet.lower()
    a, b = "0x" + "a" * 40, "0x" + "b" * 40
    now = dt.datetime.now(dt.timezone.utc)
    first = _new_operation(user_id, wallet)
    row = _start(first)
    assert row["holdings_digests"] == {}  # nothing stored yet
    _finish(first, row, as_of=now, tokens={a: 1, b: 2}, block=10)
    stored = _snapshot(db_conn, user_id, wallet)["holdings_digest"]
    assert stored == operations.holdings_digest(_outcome(now, {a: 1, b: 2}).holdings, "test")
    rows = "SELECT token_address, xmin::text FROM holdings WHERE user_id = %s AND wallet_address = %s"
    versions = db_conn.execute(rows, (user_id, wallet)).fetchall()

    sent = []
    original = operations._attempt_json
    monkeypatch.setattr(operations, "_attempt_json", lambda *args: sent.append(original(*args)) or sent[-1])
    second = _new_operation(user_id, wallet)
    row = _start(second)
    assert row["holdings_digests"] == {1: stored}
    _finish(second, row, as_of=now + dt.timedelta(seconds=10), tokens={b: 2, a: 1}, block=11)

    assert (sent[-1]["unchanged_chains"], sent[-1]["holdings"]) == ([1], [])
    assert db_conn.execute(rows, (user_id, wallet)).fetchall() == versions
    assert _snapshot(db_conn, user_id, wallet) == {"operation_id": second, "as_of": now + dt.timedelta(seconds=10),
                                                   "block_number": 11, "holdings_digest": stored}
    held = holdings_by_chain(user_id, wallet)[1]
    assert {t: (int(h["raw_balance"]), h["operation_id"], h["block_number"]) for t, h in held.items()} == {
        a: (1, second, 11), b: (2, second, 11)}

    third = _new_operation(user_id, wallet)  # then a change: written in full, with its own digest
    _finish(third, _start(third), as_of=now + dt.timedelta(seconds=20), tokens={a: 5}, block=12)
    assert sent[-1]["unchanged_chains"] == [] and len(sent[-1]["holdings"]) == 1
    assert {t: int(h["raw_balance"]) for t, h in holdings_by_chain(user_id, wallet)[1].items()} == {a: 5}
    assert _snapshot(db_conn, user_id, wallet)["holdings_digest"] == operations.holdings_digest(
        _outcome(now, {a: 5}).holdings, "test")


def test_an_unchanged_read_leaves_a_chain_rewritten_since_its_start_as_stored(user_id, wallet, db_conn):
    """Another writer replaced the chain between the attempt's start and its finish (two operations of one
    wallet at once): the attempt has no holdings to send for it, so the chain keeps the other writer's
    read, older here, whole and consistent, until the next sync."""
    wallet = wallet.lower()
    a, c = "0x" + "a" * 40, "0x" + "c" * 40
    _, now = _first_write(user_id, wallet, {a: 1})

    slow, fast = _new_operation(user_id, wallet), _new_operation(user_id, wallet)
    slow_row = _start(slow)  # compares with {a: 1}
    _finish(fast, _start(fast), as_of=now + dt.timedelta(seconds=5), tokens={c: 3}, block=11)
    _finish(slow, slow_row, as_of=now + dt.timedelta(seconds=9), tokens={a: 1}, block=12)

    assert actors.get_sync(slow)["status"] == "succeeded"
    assert _snapshot(db_conn, user_id, wallet)["operation_id"] == fast
    held = holdings_by_chain(user_id, wallet)[1]
    assert {t: (int(h["raw_balance"]), h["operation_id"]) for t, h in held.items()} == {c: (3, fast)}


def test_a_snapshot_without_a_digest_is_written_in_full_and_gets_one(user_id, wallet, db_conn):
    """Snapshots stored before digests were kept: the next read of equal holdings is sent whole."""
    wallet = wallet.lower()
    a = "0x" + "a" * 40
    _, now = _first_write(user_id, wallet, {a: 1})
    db_conn.execute("UPDATE wallet_chain_snapshots SET holdings_digest = NULL WHERE user_id = %s", (user_id,))

    second = _new_operation(user_id, wallet)
    row = _start(second)
    assert row["holdings_digests"] == {}
    _finish(second, row, as_of=now + dt.timedelta(seconds=1), tokens={a: 1}, block=11)
    snap = _snapshot(db_conn, user_id, wallet)
    assert snap["operation_id"] == second and snap["holdings_digest"] == operations.holdings_digest(
        _outcome(now, {a: 1}).holdings, "test")
    assert {t: int(h["raw_balance"]) for t, h in holdings_by_chain(user_id, wallet)[1].items()} == {a: 1}


def test_a_resync_of_the_worker_sends_no_holdings_for_chains_that_did_not_change(user_id, wallet, monkeypatch):
    """The actor end to end: the second sync of a wallet whose balances and prices are as stored finishes
    each chain without its holdings, and the portfolio reads the same rows under the newer operation."""
    first = actors.request_sync(user_id, wallet, [1, 10])
    lifecycle.sync_portfolio(first)
    before = holdings_by_chain(user_id, wallet.lower())

    sent = []
    original = operations._attempt_json
    monkeypatch.setattr(operations, "_attempt_json", lambda *args: sent.append(original(*args)) or sent[-1])
    second = actors.request_sync(user_id, wallet, [1, 10], force=True)
    lifecycle.sync_portfolio(second)

    assert actors.get_sync(second)["status"] == "succeeded"
    assert (sorted(sent[-1]["unchanged_chains"]), sent[-1]["holdings"]) == ([1, 10], [])
    after = holdings_by_chain(user_id, wallet.lower())
    assert {c: set(rows) for c, rows in after.items()} == {c: set(rows) for c, rows in before.items()}
    assert {h["operation_id"] for rows in after.values() for h in rows.values()} == {second}


def test_an_unchanged_chain_whose_snapshot_is_gone_is_not_stored_without_its_rows(user_id, wallet, db_conn):
    """Of two chains with equal digests, one lost its snapshot since the attempt started: that chain is
    not given a snapshot whose rows were never sent; the other moves as usual."""
    wallet = wallet.lower()
    a = "0x" + "a" * 40
    now = dt.datetime.now(dt.timezone.utc)
    first = _new_operation(user_id, wallet)
    assert operations.start_attempt(first, worker_id="test", message_id=None)
    assert operations.finish_attempt(first, _outcome(now, {a: 1}, (1, 10)))
    second = _new_operation(user_id, wallet)
    row = _start(second)
    assert set(row["holdings_digests"]) == {1, 10}
    db_conn.execute("DELETE FROM wallet_chain_snapshots WHERE user_id = %s AND chain_id = 10", (user_id,))
    db_conn.execute("DELETE FROM holdings WHERE user_id = %s AND chain_id = 10", (user_id,))
    read = _outcome(now + dt.timedelta(seconds=1), {a: 1}, (1, 10))
    assert operations.finish_attempt(second, dataclasses.replace(read, stored_digests=row["holdings_digests"]))

    snapshots = db_conn.execute("SELECT chain_id, operation_id::text FROM wallet_chain_snapshots WHERE user_id = %s",
                                (user_id,)).fetchall()
    assert snapshots == [{"chain_id": 1, "operation_id": second}]


def _waiting_on_a_lock(db_conn, statement: str) -> None:
    wait_until(lambda: db_conn.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                       "AND query LIKE %s", (f"%{statement}%",)).fetchone(),
               10, "the finish never waited for the row")


def test_an_unchanged_read_checks_the_digest_again_on_the_row_it_locks(user_id, wallet, db_conn, database):
    """The snapshot is rewritten by a transaction committing while the unchanged finish waits for its row:
    the finish's own snapshot still showed the old digest, the row it locks does not; it is left alone."""
    wallet = wallet.lower()
    a = "0x" + "a" * 40
    first, now = _first_write(user_id, wallet, {a: 1})
    later = _new_operation(user_id, wallet)
    row = _start(later)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        with psycopg.connect(database) as other:  # another writer, mid-transaction
            other.execute("UPDATE wallet_chain_snapshots SET holdings_digest = 'other', block_number = 11, "
                          "digest_of = operation_id WHERE user_id = %s", (user_id,))
            finishing = pool.submit(
                _finish, later, row, as_of=now + dt.timedelta(seconds=5), tokens={a: 1}, block=12)
            _waiting_on_a_lock(db_conn, "End a batch of attempts")
        finishing.result(timeout=10)

    assert actors.get_sync(later)["status"] == "succeeded"
    snap = _snapshot(db_conn, user_id, wallet)
    assert (snap["operation_id"], snap["block_number"], snap["holdings_digest"]) == (first, 11, "other")


def test_a_digest_is_not_kept_for_rows_another_writer_changed_during_the_finish(user_id, wallet, db_conn, database):
    """A write of the chain commits while a full finish waits for the snapshot row: the finish wins (newer
    read), but its delete did not see the other writer's row, which stays; so no digest is kept, and the
    next equal read is sent whole and takes the stray row away."""
    wallet = wallet.lower()
    a, stray = "0x" + "a" * 40, "0x" + "e" * 40
    _, now = _first_write(user_id, wallet, {a: 1})
    later = _new_operation(user_id, wallet)
    row = _start(later)
    other_op = _new_operation(user_id, wallet)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        with psycopg.connect(database) as other:
            other.execute("INSERT INTO holdings (user_id, wallet_address, chain_id, token_address, symbol, name, "
                          "decimals, raw_balance, balance, provider, operation_id, as_of) "
                          "VALUES (%s, %s, 1, %s, 'S', 'Stray', 0, 9, 9, 'test', %s, %s)",
                          (user_id, wallet, stray, other_op, now + dt.timedelta(seconds=1)))
            other.execute("UPDATE wallet_chain_snapshots SET operation_id = %s, block_number = 11, "
                          "holdings_digest = NULL WHERE user_id = %s", (other_op, user_id))
            finishing = pool.submit(
                _finish, later, row, as_of=now + dt.timedelta(seconds=5), tokens={a: 2}, block=12)
            _waiting_on_a_lock(db_conn, "End a batch of attempts")
        finishing.result(timeout=10)

    snap = _snapshot(db_conn, user_id, wallet)
    assert (snap["operation_id"], snap["block_number"], snap["holdings_digest"]) == (later, 12, None)
    assert {t: int(h["raw_balance"]) for t, h in holdings_by_chain(user_id, wallet)[1].items()} == {a: 2, stray: 9}

    last = _new_operation(user_id, wallet)
    row = _start(last)
    assert row["holdings_digests"] == {}
    _finish(last, row, as_of=now + dt.timedelta(seconds=9), tokens={a: 2}, block=13)
    assert {t: int(h["raw_balance"]) for t, h in holdings_by_chain(user_id, wallet)[1].items()} == {a: 2}
    assert _snapshot(db_conn, user_id, wallet)["holdings_digest"] is not None


def test_a_snapshot_moved_by_a_writer_that_keeps_no_digest_offers_none(user_id, wallet, db_conn):
    """A release before digests, still running beside this one or rolled back to, moves the snapshot and
    rewrites the rows without touching the digest: the digest no longer names the snapshot's read, so the
    next start offers none and the read is sent whole."""
    wallet = wallet.lower()
    a = "0x" + "a" * 40
    _, now = _first_write(user_id, wallet, {a: 1})
    older_release = _new_operation(user_id, wallet)
    db_conn.execute("UPDATE holdings SET raw_balance = 7, balance = 7 WHERE user_id = %s", (user_id,))
    db_conn.execute("UPDATE wallet_chain_snapshots SET operation_id = %s, block_number = 11 WHERE user_id = %s",
                    (older_release, user_id))

    last = _new_operation(user_id, wallet)
    row = _start(last)
    assert row["holdings_digests"] == {}
    _finish(last, row, as_of=now + dt.timedelta(seconds=9), tokens={a: 1}, block=12)
    assert {t: int(h["raw_balance"]) for t, h in holdings_by_chain(user_id, wallet)[1].items()} == {a: 1}
