"""The portfolio, read, through the real worker, Redis, PostgreSQL, the web process (gunicorn) and the CLI:
exactly the stored holdings, an entity tag a poller can send back for a bodiless 304, clear 404s and
400s; and one provider read per chain when many users sync one wallet at once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

import actors
import actors.worker
from chaindata.portfolio import exact_sum
from storage import operations
from tests.acceptance.test_multicall_wallet import HOLDER, NATIVE
from harness.anvil import Anvil, ManyTokens, plant_many_tokens, recording_relay, running_anvil
from tests.processes import CommandProcess
from tests.waiting import wait_for, wait_until

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKEN = "portfolio-test-token-" + "x" * 24


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def web(tmp_path, database) -> Iterator[httpx.Client]:
    """The Procfile's ``web`` process (gunicorn, the dashboard and the API), with one API token."""
    port = free_port()
    process = CommandProcess([str(BIN / "gunicorn"), "web:application", "--bind", f"127.0.0.1:{port}",
                              "--workers", "1", "--threads", "2"], tmp_path / "web.log",
                             env={"API_TOKENS": TOKEN, "API_RATE_LIMIT": "off"})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            wait_until(lambda: _answers(client), timeout=30, message=f"web did not start:\n{process.log}")
            yield client
    finally:
        process.stop()


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "portfolio-sync"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=os.environ.copy())


def stored(user_id: str, wallet: str) -> dict[tuple[int, str], int]:
    return {(h["chain_id"], h["token_address"]): int(h["raw_balance"]) for h in operations.get_holdings(user_id, wallet)}


def without_ages(value):
    """``value`` without the ages, which grow between two reads."""
    if isinstance(value, dict):
        return {k: without_ages(v) for k, v in value.items() if not k.endswith("age_seconds")}
    if isinstance(value, list):
        return [without_ages(v) for v in value]
    return value


def test_the_api_and_the_cli_answer_exactly_the_stored_holdings(start_worker, web, user_id, wallet):
    start_worker()
    op_id = actors.request_sync(user_id, wallet, [1, 10])
    assert wait_for(op_id)["status"] == "succeeded"
    holdings = stored(user_id, wallet)
    assert holdings

    # The Python API.
    portfolio = actors.get_portfolio(user_id, wallet)
    assert {(c["chain_id"], h["token_address"]): h["raw_balance"]
            for c in portfolio["chains"] for h in c["holdings"]} == holdings
    assert [c["status"] for c in portfolio["chains"]] == ["ok", "ok"] and all(c["fresh"] for c in portfolio["chains"])
    assert portfolio["last_operation"]["id"] == op_id

    # HTTP: raw balances as integer strings, amounts as exact decimal strings.
    response = web.get(f"/api/v1/wallets/{wallet}/portfolio", params={"user_id": user_id})
    assert response.status_code == 200, response.text
    body = response.json()
    assert {(c["chain_id"], h["token_address"]): int(h["raw_balance"])
            for c in body["chains"] for h in c["holdings"]} == holdings
    assert all(isinstance(h["raw_balance"], str) for c in body["chains"] for h in c["holdings"])
    assert Decimal(body["totals"]["value_usd"]) == portfolio["totals"]["value_usd"] == exact_sum(
        h["value_usd"] for c in portfolio["chains"] for h in c["holdings"] if h["value_usd"] is not None)

    # The CLI, as JSON (what the API answers) and as a table.
    done = cli("portfolio", wallet, "--user", user_id, "--json")
    assert done.returncode == 0, done.stderr
    assert without_ages(json.loads(done.stdout)) == without_ages(body)
    done = cli("portfolio", wallet, "--user", user_id)
    assert done.returncode == 0, done.stderr
    for (_chain, token), raw in holdings.items():
        assert token in done.stdout and str(raw) in done.stdout

    # Piped into a reader that went away (`| head -1` once it has its line): no error, no traceback.
    piped = subprocess.Popen([str(BIN / "portfolio-sync"), "portfolio", wallet, "--user", user_id], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    piped.stdout.close()  # before the command writes: its first write finds no reader
    assert piped.wait(60) == 1 and piped.stderr.read() == b""


def test_an_unchanged_portfolio_answers_304_until_a_new_sync_stores_a_read(start_worker, web, user_id, wallet):
    start_worker()
    assert wait_for(actors.request_sync(user_id, wallet, [1]))["status"] == "succeeded"
    url, params = f"/api/v1/wallets/{wallet}/portfolio", {"user_id": user_id}
    first = web.get(url, params=params)
    etag = first.headers["ETag"]
    assert first.status_code == 200 and etag.startswith('W/"')

    again = web.get(url, params=params, headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", etag)
    assert web.get(url, params=params, headers={"If-None-Match": '"something-else"'}).status_code == 200

    assert wait_for(actors.request_sync(user_id, wallet, [1], force=True))["status"] == "succeeded"
    changed = web.get(url, params=params, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_never_synced_is_404_and_bad_input_400_at_every_edge(web, database, user_id, wallet):
    url = f"/api/v1/wallets/{wallet}/portfolio"
    never = web.get(url, params={"user_id": user_id})
    assert never.status_code == 404 and "never synced" in never.json()["message"]
    assert actors.get_portfolio(user_id, wallet) is None
    done = cli("portfolio", wallet, "--user", user_id)
    assert done.returncode == 3 and "never synced" in done.stderr

    for bad_url, params in ((url, {}),  # no user
                            (url, {"user_id": ""}),
                            (url, {"user_id": "x" * 129}),
                            (url, {"user_id": user_id, "chain_ids": "1,mainnet"}),
                            (url, {"user_id": user_id, "chain_ids": "999999"}),
                            ("/api/v1/wallets/0x1234/portfolio", {"user_id": user_id}),
                            # A mixed-case address with a wrong EIP-55 checksum.
                            ("/api/v1/wallets/0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB49/portfolio",
                             {"user_id": user_id})):
        response = web.get(bad_url, params=params)
        assert response.status_code == 400, (bad_url, params, response.text)
        assert response.json()["error"] == "invalid_request"
    assert web.get(url, params={"user_id": user_id}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    for args in (("0x1234", "--user", user_id), (wallet, "--user", "")):
        done = cli("portfolio", *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr


def test_a_chain_never_read_appears_with_its_status(start_worker, user_id, wallet):
    start_worker()
    assert wait_for(actors.request_sync(user_id, wallet, [1]))["status"] == "succeeded"
    portfolio = actors.get_portfolio(user_id, wallet, [1, 10])
    by_chain = {c["chain_id"]: c for c in portfolio["chains"]}
    assert by_chain[1]["status"] == "ok" and by_chain[1]["holdings"]
    assert (by_chain[10]["status"], by_chain[10]["holdings"], by_chain[10]["read_at"]) == ("never_read", [], None)


# ------------------------------------------------------------------- one read per wallet --

@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Anvil, ManyTokens]]:
    with running_anvil(tmp_path_factory.mktemp("anvil"), 31337) as anvil:
        anvil.install_multicall3()
        many = plant_many_tokens(anvil, HOLDER, count=20)
        anvil.set_balance(HOLDER, NATIVE)
        yield anvil, many


def test_twenty_users_syncing_one_wallet_at_once_cost_one_provider_read(start_worker, node):
    anvil, many = node
    users = [f"user-{uuid.uuid4().hex[:12]}" for _ in range(20)]
    with recording_relay(anvil.url) as relay:
        start_worker(threads=8, env={"SYNC_PROVIDER": "rpc", "SYNC_CHAINS": "31337", "RPC_URLS": f"31337={relay.url}",
                                     "RPC_TOKENS": "31337=" + " ".join(many.all),
                                     "SYNC_READ_SHARE_WINDOW_MS": "30000"})
        relay.requests.clear()  # the worker's start-up check of the endpoint
        # All at once: the twenty audit rows in one statement, the twenty messages in one round trip (as
        # ``enqueue_directly`` does one by one: this process's producer does not support chain 31337).
        op_ids = [str(uuid.uuid4()) for _ in users]
        operations.insert_operations([operations.NewOperation(op_id, user, HOLDER, (31337,), "normal", "api")
                                      for op_id, user in zip(op_ids, users)], provider="rpc")
        broker = actors.worker.broker
        broker.enqueue_batch([broker.get_actor("sync_portfolio").message(op_id) for op_id in op_ids])
        ops = [wait_for(op_id, timeout=60) for op_id in op_ids]
        provider_requests = len(relay.requests)

    assert [op["status"] for op in ops] == ["succeeded"] * 20
    results = [op["chain_results"]["31337"] for op in ops]
    # One sync read the chain; the nineteen others took its read, and the audit trail says so.
    assert sorted(r["shared_read"] for r in results) == [False] + [True] * 19
    reader = next(r for r in results if not r["shared_read"])
    assert provider_requests == reader["requests"] and all(r["requests"] == 0 for r in results if r["shared_read"])
    assert len({r["block_number"] for r in results}) == 1
    # Each user's operation stored the user's own holdings, every balance exact.
    for user in users:
        held = {h["token_address"]: int(h["raw_balance"]) for h in operations.get_holdings(user, HOLDER)}
        assert held.pop("0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee") == NATIVE
        assert held == many.balances
