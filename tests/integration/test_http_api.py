"""The web process's HTTP intake, health, readiness and metrics, over real HTTP (werkzeug's server on
127.0.0.1, in a thread), against the run's Redis and PostgreSQL; and schemathesis against the
OpenAPI document the server serves."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import flask
import httpx
import pytest
from werkzeug.serving import make_server

import actors
import actors.worker
import settings
import web
from actors.redis_backed.inspection import queue_states
from api import app as api
from dashboard import access

pytestmark = pytest.mark.integration

TOKEN = "tok-" + "a1b2c3d4" * 4
OTHER_TOKEN = "tok-" + "z9y8x7w6" * 4
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPENAPI = "/api/v1/openapi.json"  # public, no token: what the Host allow-list alone decides
BIN = Path(sys.executable).parent


def api_settings(**env: str) -> settings.Settings:
    return settings.load({**os.environ, "API_TOKENS": f"{TOKEN},{OTHER_TOKEN}", "API_RATE_LIMIT": "off",
                          "METRICS_ENABLED": "true", **env})


class Served:
    """A WSGI app on 127.0.0.1:<free port>, served by werkzeug in a thread until ``close()``."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def close(self) -> None:
        self.client.close()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def served(database, redis_client):
    server = Served(api.create_app(api_settings()))
    yield server
    server.close()


@pytest.fixture
def http(served, clean_queues):
    return served.client


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -------------------------------------------------------------------------------- intake --

def test_a_request_is_accepted_then_read_back_and_listed(http, user_id, wallet):
    response = http.post("/api/v1/syncs", headers=AUTH,
                         json={"user_id": user_id, "wallet_address": wallet.upper().replace("0X", "0x"),
                               "chain_ids": [1, 10], "priority": "high"})
    assert response.status_code == 202, response.text
    body = response.json()
    op_id = body["operation_id"]
    assert body == {"operation_id": op_id, "status": "queued", "admission": "accepted",
                    "url": f"/api/v1/syncs/{op_id}"}
    assert response.headers["Location"] == f"/api/v1/syncs/{op_id}"

    read = http.get(response.headers["Location"], headers=AUTH)
    assert read.status_code == 200
    op = read.json()
    assert op["operation_id"] == op_id and op["status"] == "queued" and op["trigger"] == "api"
    assert op["wallet_address"] == wallet.lower() and op["chain_ids"] == [1, 10] and op["priority"] == "high"
    assert "worker_id" not in op and "message_id" not in op

    listed = http.get(f"/api/v1/wallets/{wallet}/syncs", headers=AUTH, params={"user_id": user_id, "limit": 5})
    assert listed.status_code == 200
    assert [s["operation_id"] for s in listed.json()["syncs"]] == [op_id]
    assert http.get(f"/api/v1/wallets/{wallet}/syncs", headers=AUTH,
                    params={"user_id": "someone-else"}).json() == {"wallet_address": wallet.lower(), "syncs": []}


def test_dedup_answers_200_with_the_operation_in_flight_and_409_when_it_lacks_chains(http, user_id, wallet):
    first = http.post("/api/v1/syncs", headers=AUTH,
                      json={"user_id": user_id, "wallet_address": wallet, "chain_ids": [1, 10]}).json()
    again = http.post("/api/v1/syncs", headers=AUTH,
                      json={"user_id": user_id, "wallet_address": wallet, "chain_ids": [10]})
    assert again.status_code == 200
    assert again.json()["operation_id"] == first["operation_id"] and again.json()["admission"] == "duplicate"

    wider = http.post("/api/v1/syncs", headers=AUTH,
                      json={"user_id": user_id, "wallet_address": wallet, "chain_ids": [1, 137]})
    assert wider.status_code == 409
    assert wider.json()["error"] == "conflict" and wider.json()["operation_id"] == first["operation_id"]
    assert "137" in wider.json()["message"]


def test_cooldown_answers_200_with_the_last_success_or_409_with_retry_after(http, user_id, wallet, db_conn):
    op_id = http.post("/api/v1/syncs", headers=AUTH,
                      json={"user_id": user_id, "wallet_address": wallet, "chain_ids": [1]}).json()["operation_id"]
    # What a worker does when the operation succeeds: the row is final, the wallet released with a cooldown.
    db_conn.execute("UPDATE sync_operations SET status = 'succeeded', finished_at = now() WHERE id = %s", (op_id,))
    from actors.services import context

    context.admissions().release(user_id, wallet.lower(), op_id, succeeded=True)

    same = http.post("/api/v1/syncs", headers=AUTH, json={"user_id": user_id, "wallet_address": wallet,
                                                           "chain_ids": [1]})
    assert same.status_code == 200 and same.json() == {
        "operation_id": op_id, "status": "succeeded", "admission": "cooldown", "url": f"/api/v1/syncs/{op_id}"}
    more = http.post("/api/v1/syncs", headers=AUTH, json={"user_id": user_id, "wallet_address": wallet})
    assert more.status_code == 409 and more.json()["admission"] == "cooldown"
    assert 1 <= int(more.headers["Retry-After"]) <= 60
    forced = http.post("/api/v1/syncs", headers=AUTH, json={"user_id": user_id, "wallet_address": wallet,
                                                             "force": True})
    assert forced.status_code == 202 and forced.json()["operation_id"] != op_id


def _hold_wallet(redis_client, user_id: str, wallet: str, op_id: str) -> None:
    """What admission leaves while another producer, between its steps, holds the wallet for ``op_id``."""
    from actors.services import context

    redis_client.set(context.admissions()._keys(user_id, wallet.lower())[0], op_id, px=60_000)


def _counts(db_conn, redis_client) -> tuple[int, list]:
    return (db_conn.execute("SELECT count(*) AS n FROM sync_operations").fetchone()["n"],
            [(q.queue, q.waiting, q.in_flight, q.delayed, q.dead) for q in queue_states(actors.worker.broker)])


def test_a_duplicate_of_an_operation_never_recorded_is_a_retryable_503_not_a_success(http, user_id, wallet,
                                                                                     db_conn, redis_client):
    ghost = str(uuid.uuid4())
    _hold_wallet(redis_client, user_id, wallet, ghost)
    before = _counts(db_conn, redis_client)

    response = http.post("/api/v1/syncs", headers=AUTH, json={"user_id": user_id, "wallet_address": wallet})

    assert response.status_code == 503, response.text
    assert response.json()["error"] == "unavailable" and response.headers["Retry-After"]
    assert ghost not in response.text
    assert _counts(db_conn, redis_client) == before


def test_a_duplicate_whose_row_is_written_a_moment_later_answers_that_operation(http, user_id, wallet, db_conn,
                                                                                redis_client):
    from actors.services import intake
    from storage import operations

    ghost = str(uuid.uuid4())
    _hold_wallet(redis_client, user_id, wallet, ghost)
    late = threading.Timer(0.15, operations.insert_operations, args=([operations.NewOperation(
        ghost, user_id, wallet.lower(), (1,), "normal", "api", intake.sync_message("normal", ghost).options[
            "redis_message_id"])],), kwargs={"provider": "simulated"})
    late.start()
    try:
        response = http.post("/api/v1/syncs", headers=AUTH,
                             json={"user_id": user_id, "wallet_address": wallet, "chain_ids": [1]})
    finally:
        late.join()

    assert response.status_code == 200, response.text
    assert response.json() == {"operation_id": ghost, "status": "queued", "admission": "duplicate",
                               "url": f"/api/v1/syncs/{ghost}"}
    assert http.get(response.json()["url"], headers=AUTH).status_code == 200


@pytest.mark.parametrize("body, message", [
    ({"wallet_address": "0x" + "1" * 40}, "user_id and wallet_address are required"),
    ({"user_id": "u", "wallet_address": "0x123"}, "wallet_address must be"),
    ({"user_id": "u", "wallet_address": "0x" + "1" * 40, "chain_ids": [999]}, "unknown chain id 999"),
    ({"user_id": "u", "wallet_address": "0x" + "1" * 40, "priority": "urgent"}, "priority must be one of"),
    ({"user_id": "u", "wallet_address": "0x" + "1" * 40, "force": "yes"}, "force must be true or false"),
    ({"user_id": "u", "wallet_address": "0x" + "1" * 40, "trigger": "scheduled"}, "unknown field(s): trigger"),
    (["not", "an", "object"], "the body must be a JSON object"),
])
def test_invalid_requests_get_400_naming_the_problem_and_nothing_is_queued(http, body, message, redis_client):
    response = http.post("/api/v1/syncs", headers=AUTH, json=body)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == "invalid_request" and message in response.json()["message"]
    assert all(q.waiting == 0 for q in queue_states(actors.worker.broker))


def test_bodies_that_are_not_json_or_too_large_are_refused(http):
    assert http.post("/api/v1/syncs", headers=AUTH, content="user_id=u").status_code == 415
    huge = http.post("/api/v1/syncs", headers={**AUTH, "Content-Type": "application/json"},
                     content=json.dumps({"user_id": "u" * 20_000, "wallet_address": "0x" + "1" * 40}))
    assert huge.status_code == 413 and huge.json()["error"] == "payload_too_large"
    broken = http.post("/api/v1/syncs", headers={**AUTH, "Content-Type": "application/json"}, content="{nope")
    assert broken.status_code == 400


def test_unknown_and_malformed_operations(http):
    missing = http.get(f"/api/v1/syncs/{uuid.uuid4()}", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    # Version 7 ids whose time is at the end of what a date holds, or past it: no operation of ours either.
    for far in ("e677c7d3-2400-7000-8000-000000000001", "ffffffff-ffff-7fff-bfff-ffffffffffff"):
        assert http.get(f"/api/v1/syncs/{far}", headers=AUTH).status_code == 404, far
    assert http.get("/api/v1/syncs/not-a-uuid", headers=AUTH).status_code == 400
    assert http.get("/api/v1/wallets/0x12/syncs", headers=AUTH).status_code == 400
    assert http.get(f"/api/v1/wallets/0x{'1' * 40}/syncs", headers=AUTH, params={"limit": 0}).status_code == 400
    assert http.get("/api/v1/nothing-here", headers=AUTH).json()["error"] == "not_found"
    wrong_method = http.delete("/api/v1/syncs", headers=AUTH)
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]


def test_every_api_call_needs_one_of_the_tokens(http, wallet):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}):
        response = http.get(f"/api/v1/syncs/{uuid.uuid4()}", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN not in response.text
    assert http.post("/api/v1/syncs", json={"user_id": "u", "wallet_address": wallet}).status_code == 401
    assert http.get(f"/api/v1/syncs/{uuid.uuid4()}",
                    headers={"Authorization": f"Bearer {OTHER_TOKEN}"}).status_code == 404
    assert http.get("/api/v1/openapi.json").status_code == 200  # the document is public


def test_no_tokens_configured_means_the_api_refuses_everything(database, redis_client):
    served = Served(api.create_app(settings.load({**os.environ, "API_TOKENS": ""})))
    try:
        response = served.client.get(f"/api/v1/syncs/{uuid.uuid4()}", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 401 and "no API_TOKENS" in response.json()["message"]
    finally:
        served.close()


def test_the_rate_limit_answers_429_with_retry_after(database, redis_client, clean_queues):
    served = Served(api.create_app(api_settings(API_RATE_LIMIT="3/minute")))
    try:
        statuses = [served.client.get(f"/api/v1/syncs/{uuid.uuid4()}", headers=AUTH).status_code for _ in range(4)]
        assert statuses == [404, 404, 404, 429]
        limited = served.client.get(f"/api/v1/syncs/{uuid.uuid4()}", headers=AUTH)
        assert limited.json()["error"] == "rate_limited" and int(limited.headers["Retry-After"]) >= 1
        other = served.client.get(f"/api/v1/syncs/{uuid.uuid4()}", headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
        assert other.status_code == 404  # counted per token
        assert not [k for k in redis_client.scan_iter(match="LIMITS*")]  # kept under the namespace
    finally:
        served.close()


def test_unavailable_storage_answers_503(http, monkeypatch, user_id, wallet):
    def down(*args, **kwargs):
        raise actors.SyncUnavailable("Redis did not accept the request(s): Connection refused")

    monkeypatch.setattr(actors, "request_sync", down)
    monkeypatch.setattr(actors, "get_sync", down)
    response = http.post("/api/v1/syncs", headers=AUTH, json={"user_id": user_id, "wallet_address": wallet})
    assert response.status_code == 503 and response.json()["error"] == "unavailable"
    assert response.headers["Retry-After"] == "5"
    assert http.get(f"/api/v1/syncs/{uuid.uuid4()}", headers=AUTH).status_code == 503


# ---------------------------------------------------------------------------- health --

def test_health_and_readiness(http, database):
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"]["schema"] == {"ok": True, "missing_tables": []}


def test_readiness_fails_when_redis_or_postgres_is_unreachable_or_the_schema_missing(database):
    port = closed_port()
    maintenance = urlunsplit(urlsplit(database)._replace(path="/postgres"))
    cases = [
        ({"REDIS_URL": f"redis://127.0.0.1:{port}/0"}, {"redis"}),
        ({"DATABASE_URL": f"postgresql://127.0.0.1:{port}/nothing"}, {"postgres", "schema"}),
        ({"DATABASE_URL": maintenance}, {"schema"}),  # reachable, but schema.sql was never applied there
    ]
    for env, failing in cases:
        served = Served(api.create_app(api_settings(**env)))
        try:
            response = served.client.get("/readyz")
            assert response.status_code == 503, env
            checks = response.json()["checks"]
            assert {name for name, check in checks.items() if not check["ok"]} == failing, checks
            assert str(port) not in response.text
            assert served.client.get("/healthz").status_code == 200  # alive all the same
        finally:
            served.close()
    schema_missing = checks["schema"]["missing_tables"]
    assert "sync_operations" in schema_missing


def test_metrics_of_the_web_process_need_a_token_and_name_no_user(http, user_id, wallet):
    http.post("/api/v1/syncs", headers=AUTH, json={"user_id": user_id, "wallet_address": wallet})
    assert http.get("/metrics").status_code == 401
    response = http.get("/metrics", headers=AUTH)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    text = response.text
    assert 'portfolio_sync_admissions_total{decision="accepted"}' in text
    assert 'portfolio_sync_http_requests_total{endpoint="api.post_sync",method="POST",status="202"}' in text
    assert 'portfolio_sync_queue_messages{queue="sync",state="waiting"} 1.0' in text
    assert user_id not in text and wallet.lower() not in text


# ------------------------------------------------------------- beside the dashboard --

def test_mounted_beside_a_dashboard_with_a_login_the_api_uses_tokens_and_health_no_auth(database, redis_client):
    """What ``web.py`` does: the dashboard's login guards its pages, not the API or health."""
    login = settings.load({**os.environ, "DASHBOARD_USERNAME": "analyst", "DASHBOARD_PASSWORD": "correct horse battery"})
    dashboard_server = flask.Flask("dashboard-under-test")
    dashboard_server.get("/")(lambda: "the dashboard")
    access.install(dashboard_server, login)
    served = Served(web.compose(dashboard_server, api_settings()))
    try:
        assert served.client.get("/").status_code == 401
        basic = {"Authorization": "Basic " + base64.b64encode(b"analyst:correct horse battery").decode()}
        assert served.client.get("/", headers=basic).text == "the dashboard"
        assert served.client.get("/healthz").status_code == 200
        assert served.client.get("/readyz").status_code == 200
        assert served.client.get(f"/api/v1/syncs/{uuid.uuid4()}", headers=AUTH).status_code == 404
        assert served.client.get(f"/api/v1/syncs/{uuid.uuid4()}", headers=basic).status_code == 401
        # A cross-origin POST is fine for the API (a bearer token is never sent by a browser on its own).
        cross = served.client.post("/api/v1/syncs", headers={**AUTH, "Origin": "https://elsewhere.example",
                                                              "Sec-Fetch-Site": "cross-site"}, json={})
        assert cross.status_code == 400
    finally:
        served.close()


def test_the_web_process_serves_the_dashboard_and_the_api_together(database, redis_client):
    """``web:application`` (the Procfile's ``web``): the API's paths go to the API, the others to the dashboard."""
    served = Served(web.application)
    try:
        assert served.client.get("/healthz").json() == {"status": "ok"}
        assert served.client.get("/api/v1/nothing-here").json()["error"] == "not_found"
        assert served.client.get("/api/v1/openapi.json").json()["info"]["title"] == "portfolio-sync intake"
        page = served.client.get("/users")
        assert page.status_code == 200 and "<title>portfolio-sync</title>" in page.text
    finally:
        served.close()


def test_a_host_not_allowed_gets_400_from_the_dashboard_and_the_api_and_nothing_is_done(
        database, redis_client, db_conn, clean_queues, user_id, wallet):
    """DNS rebinding: a page of attacker.example resolving to 127.0.0.1 sends its own name as Host and as
    Origin, which the dashboard's cross-site check (Origin against Host) cannot tell apart."""
    served = Served(web.application)
    attacker = {"Host": "attacker.example", "Origin": "http://attacker.example"}
    before = _counts(db_conn, redis_client)
    try:
        callback = served.client.post("/_dash-update-component", headers=attacker, json={
            "output": "page.children", "outputs": {"id": "page", "property": "children"},
            "inputs": [{"id": "url", "property": "pathname", "value": "/dead-letters"}], "changedPropIds": []})
        assert callback.status_code == 400 and "WEB_ALLOWED_HOSTS" in callback.text
        assert served.client.get("/users", headers=attacker).status_code == 400
        refused = served.client.post("/api/v1/syncs", headers={**AUTH, **attacker},
                                     json={"user_id": user_id, "wallet_address": wallet})
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"
        for host in ("127.0.0.1.attacker.example", "localhost:99999", "[::1", "local host", "localhost@evil"):
            assert served.client.get(OPENAPI, headers={"Host": host}).status_code == 400, host
        # The names of this machine's loopback, any case and port, are answered.
        for host in ("localhost", "LOCALHOST:8050", "127.0.0.1", "[::1]:8050", "localhost."):
            assert served.client.get(OPENAPI, headers={"Host": host}).status_code == 200, host
        # Probes reach a process by its address: health and readiness answer whatever the Host.
        for host in ("10.1.2.3:8050", "attacker.example"):
            assert served.client.get("/healthz", headers={"Host": host}).status_code == 200, host
            assert served.client.get("/readyz", headers={"Host": host}).status_code in (200, 503), host
    finally:
        served.close()
    assert _counts(db_conn, redis_client) == before


def test_the_allowed_hosts_are_configurable(database, redis_client):
    cfg = api_settings(WEB_ALLOWED_HOSTS="sync.example.com, .internal.example")
    served = Served(web.compose(flask.Flask("dashboard-under-test"), cfg))
    try:
        for host, status in (("sync.example.com", 200), ("SYNC.example.com:443", 200), ("a.internal.example", 200),
                             ("internal.example", 200), ("localhost", 400), ("evilinternal.example", 400)):
            assert served.client.get(OPENAPI, headers={"Host": host}).status_code == status, host
    finally:
        served.close()
    alone = Served(api.create_app(cfg))
    try:
        assert alone.client.get(OPENAPI).status_code == 400  # 127.0.0.1 is not among them
        assert alone.client.get(OPENAPI, headers={"Host": "sync.example.com"}).status_code == 200
    finally:
        alone.close()


# ----------------------------------------------------------------------- schemathesis --

def test_the_api_conforms_to_its_openapi_document(served, clean_queues, tmp_path):
    """schemathesis's every check (status codes, schemas, headers, negative data, auth, stateful
    links), against the document the server serves; bounded, with a fixed seed."""
    result = subprocess.run(
        [str(BIN / "st"), "run", f"{served.url}/api/v1/openapi.json", "--checks", "all",
         "-H", f"Authorization: Bearer {TOKEN}", "--max-examples", "10", "--workers", "1", "--seed", "20241",
         "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Authentication failed" not in output, output[-3000:]
    assert "passed" in output


@pytest.mark.parametrize("path, params", [
    ("/api/v1/wallets/0x" + "1" * 40 + "/syncs", {"limit": "²"}),
    ("/api/v1/wallets/0x" + "1" * 40 + "/portfolio", {"user_id": "u1", "chain_ids": "²"}),
    ("/api/v1/wallets/0x" + "1" * 40 + "/portfolio", {"user_id": "u1", "chain_ids": "1,٣"}),
])
def test_digits_of_other_scripts_are_a_400_not_a_500(http, path, params):
    response = http.get(path, params=params, headers=AUTH)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
