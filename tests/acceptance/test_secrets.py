"""Secrets in a worker's configuration never come out: not in its log (tracebacks included), not in the
audit trail, not in what ``actors.get_sync`` returns, not in the holdings nor in Redis.

Every secret is given to a real ``dramatiq`` worker the way an operator would: a password in
``DATABASE_URL`` (the test server trusts local connections, so it is accepted and ignored), the two API
keys, and passwords in the user info of the rpc and price API URLs.  The worker is then made to fail on a
service whose URL carries a secret, at ``LOG_LEVEL=DEBUG`` so that every library's chatter is written too.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import json
import os
import socket
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis

import actors
from chaindata.base import NATIVE_TOKEN
from storage import operations
from harness.anvil import Anvil, running_anvil, token_args
from tests.conftest import NAMESPACE
from harness.fake_http import FakeHttpServer
from tests.waiting import wait_for

pytestmark = pytest.mark.acceptance

DB_PASSWORD = "Pg-Secret-7781"
ALCHEMY_KEY = "Alchemy-Secret-5521"
PRICE_KEY = "Price-Secret-9931"
RPC_USER, RPC_PASSWORD = "rpcuser", "Rpc-Secret-3319"
PRICE_USER, PRICE_URL_PASSWORD = "priceuser", "Price-Url-Secret-4417"




def basic_auth(user: str, password: str) -> str:
    """The ``Authorization: Basic`` value httpx derives from a URL's user info: a secret too, encoded."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def secret_forms(*secrets: str) -> list[str]:
    return [*secrets, basic_auth(RPC_USER, RPC_PASSWORD), basic_auth(PRICE_USER, PRICE_URL_PASSWORD)]


def assert_no_secret(where: str, text: str, secrets: Iterable[str]) -> None:
    for secret in secrets:
        at = text.find(secret)
        assert at < 0, f"{where} leaks {secret!r}: ...{text[max(0, at - 300):at + 100]}..."


def database_url_with_password() -> str:
    """The run's DATABASE_URL with ``DB_PASSWORD`` in its user info (user: the URL's, else the OS user's,
    the role that trust authentication lets in as itself)."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    host = parts.hostname or "127.0.0.1"
    netloc = f"{parts.username or getpass.getuser()}:{DB_PASSWORD}@{f'[{host}]' if ':' in host else host}"
    if parts.port:
        netloc += f":{parts.port}"
    url = urlunsplit(parts._replace(netloc=netloc))
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"the test PostgreSQL does not let a URL with a password in (no trust auth?): "
                    f"{str(exc).replace(DB_PASSWORD, '***')}")
    return url


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 that refuses connections: bound (so nobody else takes it) but not listening."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def with_user_info(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))


def redis_dump(client: redis.Redis) -> str:
    """Everything the run keeps in Redis (queues, dead letters with their tracebacks, caches), as text."""
    chunks = []
    for key in client.scan_iter(match=f"{NAMESPACE}*", count=1000):
        kind = client.type(key)
        if kind == b"string":
            values: Any = [client.get(key)]
        elif kind == b"hash":
            values = [v for pair in client.hgetall(key).items() for v in pair]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = client.zrange(key, 0, -1)
        else:
            values = []
        chunks.append(key.decode() + " " + " ".join(v.decode(errors="replace") for v in values if v is not None))
    return "\n".join(chunks)


def stored_rows(db_conn: psycopg.Connection, op_id: str, user_id: str) -> dict[str, str]:
    """Every column of every row the operation wrote, as JSON text, by table."""
    queries = {
        "sync_operations": ("SELECT * FROM sync_operations WHERE id = %s", op_id),
        "tracked_wallets": ("SELECT * FROM tracked_wallets WHERE user_id = %s", user_id),
        "holdings": ("SELECT * FROM holdings WHERE user_id = %s", user_id),
    }
    return {table: json.dumps(db_conn.execute(query, [arg]).fetchall(), default=str)
            for table, (query, arg) in queries.items()}


def assert_nothing_leaks(worker, db_conn, redis_client, op_id: str, user_id: str, secrets: list[str]) -> str:
    """Check every place a secret could end up; return the worker's log."""
    for table, text in stored_rows(db_conn, op_id, user_id).items():
        assert_no_secret(f"table {table}", text, secrets)
    assert_no_secret("actors.get_sync()", json.dumps(actors.get_sync(op_id), default=str), secrets)
    assert_no_secret("Redis", redis_dump(redis_client), secrets)
    worker.stop()  # its whole log, shutdown included, is written once it has exited
    log = worker.log
    assert_no_secret("the worker's log", log, secrets)
    return log


def secret_config() -> dict[str, str]:
    return {"DATABASE_URL": database_url_with_password(), "ALCHEMY_API_KEY": ALCHEMY_KEY, "PRICE_API_KEY": PRICE_KEY,
            "SYNC_PROVIDER": "rpc", "SYNC_CHAINS": "1", "LOG_LEVEL": "DEBUG", "SYNC_MAX_ATTEMPTS": "2"}


def test_an_unreachable_rpc_node_fails_the_sync_without_leaking_a_secret(start_worker, db_conn, redis_client,
                                                                         user_id, wallet):
    secrets = secret_forms(DB_PASSWORD, ALCHEMY_KEY, PRICE_KEY, RPC_PASSWORD)
    with closed_port() as port:
        worker = start_worker(env={**secret_config(),
                                   "RPC_URLS": f"1=http://{RPC_USER}:{RPC_PASSWORD}@127.0.0.1:{port}/"})
        op = wait_for(actors.request_sync(user_id, wallet, [1]))

        assert (op["status"], op["attempts"], op["error_code"]) == ("failed", 2, "provider_unavailable"), op
        assert op["chain_results"]["1"]["transient"] is True
        # Redacted, yet still useful: which chain, and that its provider could not be reached.
        assert op["error_message"].startswith("chain 1: "), op
        assert "cannot reach the rpc provider" in op["error_message"], op
        log = assert_nothing_leaks(worker, db_conn, redis_client, op["id"], user_id, secrets)

    # The log did follow the operation, down to the DEBUG chatter of the libraries underneath.
    assert op["id"] in log
    assert "connect_tcp.failed" in log  # httpcore, at DEBUG
    assert operations.get_holdings(user_id, wallet.lower()) == []


@contextlib.contextmanager
def price_api_port(kind: str) -> Iterator[tuple[int, FakeHttpServer | None]]:
    if kind == "refused":
        with closed_port() as port:
            yield port, None
        return
    with FakeHttpServer(lambda request: (500, b'{"error": "internal"}')) as server:  # every request: HTTP 500
        yield server.port, server


@pytest.fixture(scope="module")
def mainnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Anvil, str]]:
    """An Anvil serving chain id 1 with a TestToken deployed.  Chain 1, not Anvil's 31337: the price API is
    only asked about chains it lists (chaindata.http_prices.PLATFORMS), and a failing call is the point."""
    with running_anvil(tmp_path_factory.mktemp("anvil"), 1) as node:
        yield node, node.deploy("TestToken", token_args("Secretive Token", "SECRT", 18))


@pytest.mark.parametrize("price_api", ["refused", "http_500"])
def test_a_failing_price_api_stores_balances_unpriced_without_leaking_a_secret(start_worker, db_conn, redis_client,
                                                                               mainnet, price_api, user_id, wallet):
    node, token = mainnet
    node.mint(token, wallet, 10**21)
    node.set_balance(wallet, 10**18)
    secrets = secret_forms(DB_PASSWORD, ALCHEMY_KEY, PRICE_KEY, RPC_PASSWORD, PRICE_URL_PASSWORD)

    with price_api_port(price_api) as (port, server):
        worker = start_worker(env={
            **secret_config(),
            # Anvil ignores the user info; httpx still logs the URL (at INFO) of each request it answers.
            "RPC_URLS": f"1={with_user_info(node.url, RPC_USER, RPC_PASSWORD)}",
            "RPC_TOKENS": f"1={token}",
            "PRICE_API_URL": f"http://{PRICE_USER}:{PRICE_URL_PASSWORD}@127.0.0.1:{port}/",
            "PRICE_API_PLAN": "pro",
            "SYNC_READ_TRIES": "2",  # the price request is tried twice within the attempt, then given up
        })
        # Chain 1 is one of the producer's default chains: the real API takes the request.
        op = wait_for(actors.request_sync(user_id, wallet, [1]))

        # Balances were read; the price API then failed, transiently, twice: the balances are stored unpriced.
        assert (op["status"], op["attempts"], op["error_code"]) == ("succeeded", 1, None), op
        result = op["chain_results"]["1"]
        assert (result["prices"], result["price_error_code"]) == ("unavailable", "provider_unavailable"), op
        holdings = operations.get_holdings(user_id, wallet.lower())
        assert {h["token_address"]: int(h["raw_balance"]) for h in holdings} == {NATIVE_TOKEN: 10**18,
                                                                                  token: 10**21}
        assert all(h["price_usd"] is None and h["value_usd"] is None for h in holdings)
        log = assert_nothing_leaks(worker, db_conn, redis_client, op["id"], user_id, secrets)

    # Why the prices are missing is logged, without a secret (checked above).
    expected = "cannot reach the price API" if price_api == "refused" else "HTTP 500 from the price API"
    assert f"chain 1: {expected}" in log
    # httpx's one line per request, with the full URL, is not written at all (actors.logs quiets it).
    assert "HTTP Request:" not in log
    if server is not None:
        assert len(server.requests) == 2 and server.requests[0].target.startswith("/simple/price?ids=ethereum")
        assert server.requests[0].headers["x-cg-pro-api-key"] == PRICE_KEY  # the key did go where it belongs


RPC_URL_KEY = "Rpc-Url-Key-6620"


@pytest.mark.parametrize("where", ["query", "path"])
def test_an_api_key_in_an_rpc_url_stays_out_of_the_log(start_worker, db_conn, redis_client, mainnet, where,
                                                       user_id, wallet):
    node, token = mainnet
    node.set_balance(wallet, 10**18)
    # Anvil answers at any query string (the sync succeeds) but only at "/" (a path key: HTTP 404, the sync
    # fails); either way, the request was made and logged.
    url = f"{node.url}/?apikey={RPC_URL_KEY}" if where == "query" else f"{node.url}/v3/{RPC_URL_KEY}"
    # At the run's LOG_LEVEL=INFO, the level of production.
    worker = start_worker(env={"SYNC_PROVIDER": "rpc", "SYNC_CHAINS": "1", "RPC_URLS": f"1={url}",
                               "RPC_TOKENS": f"1={token}"})
    op = wait_for(actors.request_sync(user_id, wallet, [1]))

    if where == "query":
        assert op["status"] == "succeeded", op
    else:
        assert (op["status"], op["attempts"], op["error_code"]) == ("failed", 1, "provider_rejected"), op
        assert "HTTP 404 from the rpc provider" in op["error_message"], op
    # The audit trail, get_sync and Redis keep the key out; the log is where it leaks.
    assert_nothing_leaks(worker, db_conn, redis_client, op["id"], user_id, [RPC_URL_KEY])
