"""Hostile raw messages, generated with hypothesis, sent to ONE real ``dramatiq`` worker.

Each test draws a batch of messages (``max_examples`` per batch, no shrinking), puts them all in the
``sync`` queue at once, waits for the worker to settle, and checks once:

- a clear outcome for every message: dead-lettered (``{ns}:sync.XQ``), quarantined
  (``{ns}:quarantine``), or run; an operation a rejected message names is failed with a reason;
- never a dead worker: no worker or consumer thread died, and the worker still completes valid
  requests afterwards (more of them than it has threads);
- never a partial write: an operation that failed has no holdings; one that succeeded has exactly
  the holdings its audit row counts.

A failing batch is printed in the assertion message (its messages are generated afresh each run).
"""

from __future__ import annotations

import inspect
import json
import time
import uuid

import pytest
from dramatiq import Message
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import actors
import actors.worker
from actors.services import lifecycle
from actors.validation import parse_operation_id
from storage import operations
from tests.waiting import wait_for

pytestmark = pytest.mark.acceptance

MAX_EXAMPLES = 40
THREADS = 4
FINAL = ("succeeded", "failed")
ENVELOPE_FIELDS = ("queue_name", "actor_name", "args", "kwargs", "options", "message_id", "message_timestamp")


def draw(strategy: st.SearchStrategy, n: int = MAX_EXAMPLES) -> list:
    """Up to ``n`` values of ``strategy`` (generation only: they are checked together, afterwards)."""
    drawn: list = []

    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value):
        drawn.append(value)

    collect()
    return drawn


def wallets(n: int) -> list[str]:
    return ["0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(n)]


def new_operations(user_id: str, chain_lists: list[tuple[int, ...]]) -> list[tuple[str, str]]:
    """Queued audit rows written directly (no message): ``(operation_id, wallet)`` each."""
    made = [(str(uuid.uuid4()), w, chains) for w, chains in zip(wallets(len(chain_lists)), chain_lists)]
    operations.insert_operations([operations.NewOperation(op, user_id, w, chains, "normal", "api")
                                  for op, w, chains in made], provider="simulated")
    return [(op, w) for op, w, _ in made]


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def dead_lettered(redis_client, namespace: str) -> set[str]:
    """Dramatiq message ids in the ``sync`` dead-letter queue."""
    ids = set()
    for body in redis_client.hvals(f"{namespace}:sync.XQ.msgs"):
        ids.add(json.loads(body)["message_id"])
    return ids


def in_limbo(redis_client, namespace: str, redis_ids: set[str]) -> set[str]:
    """Which of ``redis_ids`` are still waiting or held (neither acked, dead-lettered nor quarantined)."""
    held = set()
    for key in redis_client.scan_iter(match=f"{namespace}:__acks__.*", count=1000):
        held |= {m.decode() for m in redis_client.smembers(key)}
    waiting = {m.decode() for m in redis_client.lrange(f"{namespace}:sync", 0, -1)}
    stored = {m.decode() for m in redis_client.hkeys(f"{namespace}:sync.msgs")}
    return redis_ids & (held | waiting | stored)


def dead_threads(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if line.startswith("Exception in thread") or "Consumer encountered an unexpected error" in line]


def worker_still_serves(user_id: str, n: int = 2 * THREADS, timeout: float = 20) -> list[str]:
    """Statuses of ``n`` valid requests made now (all waited for at most ``timeout`` seconds)."""
    ids = actors.request_syncs([{"user_id": user_id, "wallet_address": w, "chain_ids": [1]} for w in wallets(n)])
    statuses = []
    deadline = time.monotonic() + timeout
    for op_id in ids:
        try:
            statuses.append(wait_for(op_id, timeout=max(0.1, deadline - time.monotonic()))["status"])
        except AssertionError:
            statuses.append(actors.get_sync(op_id)["status"])
    return statuses


def holdings_problems(user_id: str, op_ids: list[str]) -> list:
    """Operations whose stored holdings do not match their audit row: any holdings for a failed one,
    a count different from ``holdings_count`` for a succeeded one."""
    problems = []
    for op_id in op_ids:
        op = actors.get_sync(op_id)
        stored = len(operations.get_holdings(user_id, op["wallet_address"]))
        if op["status"] == "failed" and stored:
            problems.append((op_id, "failed", stored))
        if op["status"] == "succeeded" and stored != op["holdings_count"]:
            problems.append((op_id, "succeeded", op["holdings_count"], stored))
    return problems


def preview(values: list, limit: int = 2000) -> str:
    text = repr(values)
    return text if len(text) <= limit else text[:limit] + f"... ({len(values)} in all)"


# ----------------------------------------------------------------------------------- strategies --

def operation_refs(op_ids: list[str]) -> st.SearchStrategy[str]:
    """An existing operation's id, in any spelling ``uuid.UUID`` accepts."""
    spell = st.sampled_from([str, str.upper, lambda s: "{" + s + "}", lambda s: "urn:uuid:" + s,
                             lambda s: s.replace("-", "")])
    return st.builds(lambda op, f: f(op), st.sampled_from(op_ids), spell)


scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2**80, max_value=2**80),          # chain ids: negative, zero, huge
    st.sampled_from([-1, 0, 2**31 - 1, 2**31, -2**63, 2**64, 2**53 + 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),                                    # any unicode
    st.integers(min_value=65, max_value=100_000).map(lambda n: "\u00e9\U0001f600x"[n % 3] * n),  # huge strings
    st.uuids().map(str),                                     # operations that do not exist
)


def hostile_values(op_ids: list[str]) -> st.SearchStrategy:
    leaf = st.one_of(scalars, operation_refs(op_ids))
    return st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=10), inner, max_size=3)),
                        max_leaves=6)


def call_shapes(op_ids: list[str]) -> st.SearchStrategy[tuple[list, dict]]:
    """``(args, kwargs)`` of a sync message: wrong types, missing or extra fields, and some that fit."""
    value = hostile_values(op_ids)
    keys = st.one_of(st.sampled_from(["operation_id", "chain_ids", "user_id", "wallet_address", "priority"]),
                     st.text(max_size=20))
    return st.one_of(
        st.tuples(st.lists(value, max_size=3), st.dictionaries(keys, value, max_size=3)),
        st.tuples(st.just([]), st.fixed_dictionaries({"operation_id": value})),
        st.tuples(value.map(lambda v: [v]), st.just({})),
        st.tuples(operation_refs(op_ids).map(lambda v: [v]), st.just({})),
        st.tuples(operation_refs(op_ids).map(lambda v: [v]),
                  st.dictionaries(keys, value, min_size=1, max_size=2)),
    )


def decodes(body: bytes) -> bool:
    """Whether Dramatiq decodes a message from ``body``."""
    try:
        Message.decode(body)
    except Exception:  # noqa: BLE001 - DecodeError, whatever its cause
        return False
    return True


def envelope(**fields) -> dict:
    body = {"queue_name": "sync", "actor_name": "sync_portfolio", "args": [str(uuid.uuid4())], "kwargs": {},
            "options": {}, "message_id": str(uuid.uuid4()), "message_timestamp": int(time.time() * 1000)}
    body.update(fields)
    return body


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8)

#: Bodies no message can be decoded from: bytes, broken JSON, JSON that is not a message object.
undecodable_bodies = st.one_of(
    st.binary(max_size=200),
    st.integers(min_value=1000, max_value=200_000).map(lambda n: b"\xff\xfe" * n),
    st.text(max_size=100).map(lambda t: ("{" + t).encode()),
    st.text(max_size=100).map(lambda t: (json.dumps(envelope())[:-1] + t).encode()),   # truncated or trailing junk
    json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
    st.sets(st.sampled_from(ENVELOPE_FIELDS[:5]), min_size=1).map(                      # a required field missing
        lambda missing: json.dumps({k: v for k, v in envelope().items() if k not in missing}).encode()),
    st.dictionaries(st.text(min_size=1, max_size=10).filter(lambda k: k not in ENVELOPE_FIELDS), json_values,
                    min_size=1, max_size=2).map(lambda extra: json.dumps({**envelope(), **extra}).encode()),
    st.sampled_from([5, None, True, 1.5]).map(lambda args: json.dumps(envelope(args=args)).encode()),
).filter(lambda body: not decodes(body))

#: Bodies that decode into a message whose envelope has the wrong types or names what this worker
#: has not: another queue, an unknown actor, options or kwargs that are not objects...
wrong_field_values = {
    "queue_name": st.one_of(st.text(max_size=20), json_values).filter(lambda q: q not in ("sync", "sync.DQ")),
    "actor_name": st.one_of(st.text(max_size=30), json_values),
    "kwargs": json_values.filter(lambda v: not isinstance(v, dict)),
    "options": json_values.filter(lambda v: not isinstance(v, dict)),
    "message_id": json_values.filter(lambda v: not isinstance(v, str)),
    "message_timestamp": json_values.filter(lambda v: not isinstance(v, int) or isinstance(v, bool)),
    "args": st.text(max_size=5),
}
wrong_envelopes = st.sampled_from(sorted(wrong_field_values)).flatmap(
    lambda field: wrong_field_values[field].map(lambda value: {field: value}))


def place_by_hand(redis_client, namespace: str, bodies: list[bytes]) -> list[str]:
    """``HSET {ns}:sync.msgs <id> <body>`` and ``RPUSH {ns}:sync <id>`` for each body; their Redis ids."""
    ids = [str(uuid.uuid4()) for _ in bodies]
    pipe = redis_client.pipeline(transaction=False)
    for redis_id, body in zip(ids, bodies):
        pipe.hset(f"{namespace}:sync.msgs", redis_id, body)
        pipe.rpush(f"{namespace}:sync", redis_id)
    pipe.execute()
    return ids


# ---------------------------------------------------------------------------------------- tests --

def test_hostile_arguments_fail_clearly_and_write_nothing(start_worker, redis_client, user_id):
    """Guarantee: sync messages (well-formed envelopes) with hostile arguments -- wrong types, missing
    or extra fields, huge strings, unicode, negative and huge chain ids, unknown or oddly spelled
    operation ids -- each end clearly: a message whose arguments do not fit the actor, or name no
    operation, is dead-lettered, and the operation it names is failed (`malformed_message`); one that
    fits runs its operation, which succeeds, or fails (`unsupported_chain`) when its stored chains are
    bogus.  No message is left waiting or held, no thread dies, the worker then serves valid requests,
    and no failed operation has holdings."""
    ns = actors.worker.broker.namespace
    good = [op for op, _ in new_operations(user_id, [(1,)] * 8)]
    bogus = [op for op, _ in new_operations(user_id, [(-1,), (0,), (2**31 - 1,), (-2**31,)])]
    shapes = draw(call_shapes(good + bogus))
    messages = [Message(queue_name="sync", actor_name="sync_portfolio", args=tuple(args), kwargs=kwargs, options={})
                for args, kwargs in shapes]

    # What each message must do, by the actor's signature alone.
    signature = inspect.signature(lifecycle.sync_portfolio)
    runs: dict[str, set[str]] = {}      # operation -> message ids that run it
    rejected: dict[str, set[str]] = {}  # operation -> message ids rejected while naming it
    must_dead_letter, may_dead_letter = set(), set()
    for message in messages:
        try:
            named = parse_operation_id(signature.bind(*message.args, **message.kwargs).arguments["operation_id"])
        except TypeError:
            must_dead_letter.add(message.message_id)
            first = next(filter(None, map(parse_operation_id, [message.kwargs.get("operation_id"), *message.args,
                                                               *message.kwargs.values()])), None)
            if first:
                rejected.setdefault(first, set()).add(message.message_id)
            continue
        if named is None:
            must_dead_letter.add(message.message_id)
        else:
            runs.setdefault(named, set()).add(message.message_id)
            if named in bogus:
                may_dead_letter.add(message.message_id)  # its attempt fails for good: dead-lettered too

    worker = start_worker(threads=THREADS)
    sent = actors.worker.broker.enqueue_batch(messages)
    redis_ids = {m.options["redis_message_id"] for m in sent}
    settled = wait_until(lambda: not in_limbo(redis_client, ns, redis_ids), 60)
    served = worker_still_serves(user_id)

    assert dead_threads(worker.log) == [], preview(shapes)
    assert settled, f"messages never settled: {in_limbo(redis_client, ns, redis_ids)}; {preview(shapes)}"
    assert served == ["succeeded"] * len(served), served
    letters = dead_lettered(redis_client, ns)
    assert must_dead_letter <= letters, preview([s for s, m in zip(shapes, messages)
                                                 if m.message_id in must_dead_letter - letters])
    assert letters <= must_dead_letter | may_dead_letter, preview([s for s, m in zip(shapes, messages)
                                                                   if m.message_id in letters - must_dead_letter])
    for op_id in good + bogus:
        op = actors.get_sync(op_id)
        expected = set()
        if op_id in runs:
            expected.add(("failed", "unsupported_chain") if op_id in bogus else ("succeeded", None))
        if op_id in rejected:
            expected.add(("failed", "malformed_message"))
        if not expected:
            assert op["status"] == "queued", op  # nothing named it
            continue
        assert (op["status"], op["error_code"]) in expected, (op_id, op["status"], op["error_code"], expected)
        if op["status"] == "failed":
            assert op["error_message"], op
    assert holdings_problems(user_id, [op for op in good + bogus if op in runs or op in rejected]) == []
    assert worker.alive()


def test_undecodable_bodies_placed_by_hand_are_quarantined(start_worker, redis_client, user_id):
    """Guarantee: bodies put in the queue by hand from which no message can be decoded (random
    bytes, broken or truncated JSON, JSON nested too deep to parse, JSON that is not an object, an
    object missing a field or with an unknown one) are each moved to `{ns}:quarantine` with the error
    and a copy of the body; valid messages queued among them still run; no thread dies; the worker
    serves valid requests."""
    ns = actors.worker.broker.namespace
    too_deep = b"[" * 10_000 + b"]" * 10_000  # the JSON parser's RecursionError, not a ValueError
    bodies = list(dict.fromkeys([*draw(undecodable_bodies), too_deep]))  # distinct: a body is found by its content
    quarantined_before = redis_client.llen(f"{ns}:quarantine")
    worker = start_worker(threads=THREADS)

    # Valid requests first, garbage in the middle, valid requests after: fetched in the same batches.
    first = actors.request_syncs([{"user_id": user_id, "wallet_address": w, "chain_ids": [1]} for w in wallets(4)])
    redis_ids = set(place_by_hand(redis_client, ns, bodies))
    then = actors.request_syncs([{"user_id": user_id, "wallet_address": w, "chain_ids": [1]} for w in wallets(4)])
    settled = wait_until(lambda: not in_limbo(redis_client, ns, redis_ids), 60)
    finals = [wait_for(op_id, timeout=30)["status"] for op_id in first + then]
    served = worker_still_serves(user_id)

    assert dead_threads(worker.log) == [], preview(bodies)
    assert settled, f"bodies never settled: {len(in_limbo(redis_client, ns, redis_ids))}; {preview(bodies)}"
    assert finals == ["succeeded"] * len(finals)
    assert served == ["succeeded"] * len(served), served
    entries = [json.loads(e) for e in
               redis_client.lrange(f"{ns}:quarantine", 0, redis_client.llen(f"{ns}:quarantine") - quarantined_before - 1)]
    assert len(entries) == len(bodies), (len(entries), len(bodies))
    assert {rid for e in entries for rid in e["redis_message_ids"]} == redis_ids
    assert all(e["queue"] == "sync" and e["error"] for e in entries)
    assert holdings_problems(user_id, first + then) == []
    assert worker.alive()


def test_wrongly_typed_envelopes_placed_by_hand_never_stop_the_worker(start_worker, redis_client, user_id):
    """Guarantee: bodies put in the queue by hand that decode as JSON objects with every field but the
    wrong types or foreign values in them (another queue, an unknown actor, options or kwargs that are
    not objects, a message_id that is not a string...) each end clearly -- quarantined or
    dead-lettered, never left waiting or held -- no thread dies, valid messages queued among them
    run, and the worker serves valid requests afterwards."""
    ns = actors.worker.broker.namespace
    # Always among them, whatever hypothesis draws: one of each kind that the worker mishandles today.
    known = [{"queue_name": "elsewhere"}, {"kwargs": [1]}, {"options": 5}, {"message_id": ["x"]}]
    redis_ids, bodies = [], []
    for fields in draw(wrong_envelopes) + known:
        redis_ids.append(str(uuid.uuid4()))
        body = envelope(**fields)
        if isinstance(body["options"], dict):
            body["options"]["redis_message_id"] = redis_ids[-1]  # as the broker's enqueue would
        bodies.append(json.dumps(body).encode())
    worker = start_worker(threads=THREADS)

    first = actors.request_syncs([{"user_id": user_id, "wallet_address": w, "chain_ids": [1]} for w in wallets(4)])
    pipe = redis_client.pipeline(transaction=False)
    for redis_id, body in zip(redis_ids, bodies):
        pipe.hset(f"{ns}:sync.msgs", redis_id, body)
        pipe.rpush(f"{ns}:sync", redis_id)
    pipe.execute()
    then = actors.request_syncs([{"user_id": user_id, "wallet_address": w, "chain_ids": [1]} for w in wallets(4)])
    settled = wait_until(lambda: not in_limbo(redis_client, ns, set(redis_ids)), 10)
    finals = [wait_for(op_id, timeout=30)["status"] for op_id in first + then]
    served = worker_still_serves(user_id, timeout=8)

    assert dead_threads(worker.log) == [], preview(bodies)
    assert settled, f"{len(in_limbo(redis_client, ns, set(redis_ids)))} bodies left waiting or held: {preview(bodies)}"
    assert finals == ["succeeded"] * len(finals), finals
    assert served == ["succeeded"] * len(served), served
    assert worker.alive()
