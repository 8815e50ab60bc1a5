"""Pure logic of the operating surfaces: JSON log lines, completion events, their settings, the
CLI's parser and the OpenAPI document."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from decimal import Decimal
from types import SimpleNamespace

import pytest

import settings
from actors.logs import JobContextFilter, JsonFormatter, RedactingFilter
from actors.middleware.job_log_context import JobLogContext
from actors.redis_backed import events
from api import openapi
from cli.arguments import build_parser

FINISHED = dt.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc)


# ------------------------------------------------------------------------------------ logs --

@pytest.fixture
def json_log():
    cfg = settings.load({"DATABASE_URL": "postgresql://app:pg-Secret-1@db/prod", "ALCHEMY_API_KEY": "alch-Secret-2"})
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(cfg))
    handler.addFilter(JobContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.jsonlog")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, cfg, lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)


def test_json_lines_carry_the_job_ids_while_a_job_runs_and_only_then(json_log):
    logger, _cfg, lines = json_log
    message = SimpleNamespace(actor_name="sync_portfolio_high", message_id="m-1", options={"retries": 2},
                              args=("1f0c1f6e-0000-4000-8000-000000000001",))
    logger.info("before")
    JobLogContext().before_process_message(None, message)
    logger.info("during %s", "the job", extra={"secret_extra": "never written"})
    JobLogContext().after_process_message(None, message, result=None)
    logger.info("after")
    before, during, after = lines()
    assert set(before) == {"time", "level", "logger", "message", "process", "thread"}
    assert during["message"] == "during the job" and during["level"] == "INFO" and during["logger"] == "test.jsonlog"
    assert during["operation_id"] == "1f0c1f6e-0000-4000-8000-000000000001"
    assert (during["message_id"], during["attempt"], during["actor"]) == ("m-1", 3, "sync_portfolio_high")
    assert "secret_extra" not in during
    assert "operation_id" not in after and "message_id" not in after
    assert during["time"].endswith("Z") and dt.datetime.fromisoformat(during["time"].replace("Z", "+00:00"))


def test_json_lines_are_redacted_tracebacks_included(json_log):
    logger, cfg, lines = json_log
    try:
        raise RuntimeError(f"cannot reach {cfg.database.url} with {cfg.alchemy.api_key}")
    except RuntimeError:
        logger.exception("failed with %s", cfg.alchemy.api_key)
    (line,) = lines()
    assert line["message"] == "failed with ***"
    assert "RuntimeError: cannot reach postgresql://app:***@db/prod with ***" in line["exc_info"]
    assert "Secret" not in json.dumps(line)


def test_a_periodic_message_has_no_operation_id(json_log):
    logger, _cfg, lines = json_log
    message = SimpleNamespace(actor_name="housekeeping", message_id="m-2", options={}, args=())
    JobLogContext().before_process_message(None, message)
    logger.warning("tick")
    JobLogContext().after_skip_message(None, message)
    (line,) = lines()
    assert line["attempt"] == 1 and "operation_id" not in line


# ---------------------------------------------------------------------------------- events --

def operation(**overrides):
    op = {"id": "1f0c1f6e-0000-4000-8000-000000000002", "user_id": "user-1", "wallet_address": "0x" + "ab" * 20,
          "chain_ids": [1, 10], "priority": "normal", "trigger": "api", "status": "succeeded", "attempts": 1,
          "holdings_count": 5, "total_value_usd": Decimal("10.50"), "unpriced_count": 1, "error_code": None,
          "chain_results": {"1": {"status": "ok", "holdings": 3, "value_usd": "10.25", "unpriced": 1},
                            "10": {"status": "ok", "holdings": 2, "value_usd": "0.25", "unpriced": 0}}}
    op.update(overrides)
    return op


def test_a_success_is_a_sync_succeeded_and_a_portfolio_updated_event():
    succeeded, updated = events.build(operation(), finished_at=FINISHED)
    assert succeeded == {
        "type": "sync.succeeded", "schema": "1", "operation_id": "1f0c1f6e-0000-4000-8000-000000000002",
        "user_id": "user-1", "wallet_address": "0x" + "ab" * 20, "finished_at": "2025-01-02T03:04:05.678Z",
        "status": "succeeded", "chain_ids": "1,10", "priority": "normal", "trigger": "api", "attempts": "1",
        "holdings_count": "5", "total_value_usd": "10.50", "unpriced_count": "1", "error_code": ""}
    assert updated == {
        "type": "portfolio.updated", "schema": "1", "operation_id": "1f0c1f6e-0000-4000-8000-000000000002",
        "user_id": "user-1", "wallet_address": "0x" + "ab" * 20, "finished_at": "2025-01-02T03:04:05.678Z",
        "chain_ids": "1,10", "holdings_count": "5", "total_value_usd": "10.50", "unpriced_count": "1"}
    assert all(isinstance(v, str) for event in (succeeded, updated) for v in event.values())


def test_a_failure_reports_its_code_and_the_chains_it_stored_if_any():
    partial = operation(status="failed", error_code="provider_timeout", holdings_count=3,
                        total_value_usd=Decimal("10.25"),
                        chain_results={"1": {"status": "ok", "holdings": 3, "value_usd": "10.25", "unpriced": 1},
                                       "10": {"status": "error", "error_code": "provider_timeout"}})
    failed, updated = events.build(partial, finished_at=FINISHED)
    assert failed["type"] == "sync.failed" and failed["error_code"] == "provider_timeout"
    assert updated["chain_ids"] == "1" and updated["total_value_usd"] == "10.25"
    nothing = operation(status="failed", error_code="expired", holdings_count=None, total_value_usd=None,
                        unpriced_count=None, chain_results={})
    (only,) = events.build(nothing, finished_at=FINISHED)
    assert only["type"] == "sync.failed" and only["total_value_usd"] == "" and only["holdings_count"] == ""
    with pytest.raises(ValueError):
        events.build(operation(status="running"), finished_at=FINISHED)


# -------------------------------------------------------------------------------- settings --

def test_operating_settings_defaults_and_validation():
    cfg = settings.load({})
    assert (cfg.logging.format, cfg.api.tokens, cfg.api.rate_limit, cfg.api.max_body_bytes) == ("json", (), (600, "minute"),
                                                                                           16384)
    assert (cfg.metrics.enabled, cfg.metrics.host, cfg.metrics.port, cfg.events.maxlen) == (True, "127.0.0.1", 9191,
                                                                                           100000)
    assert settings.load({"API_RATE_LIMIT": "off"}).api.rate_limit is None
    assert settings.load({"API_RATE_LIMIT": "5 / Second"}).api.rate_limit == (5, "second")
    for env, named in [({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be json or text"),
                       ({"API_RATE_LIMIT": "fast"}, "API_RATE_LIMIT must be"),
                       ({"METRICS_ENABLED": "maybe"}, "METRICS_ENABLED must be true or false"),
                       ({"METRICS_DIR": "relative/dir"}, "METRICS_DIR must be an absolute path"),
                       ({"EVENTS_MAXLEN": "-1"}, "EVENTS_MAXLEN must be between")]:
        with pytest.raises(settings.ConfigError, match=named):
            settings.load(env)


def test_api_tokens_are_secrets_never_repeated_in_errors():
    token = "tok-" + "q" * 30
    cfg = settings.load({"API_TOKENS": f" {token} , {token}"})
    assert cfg.api.tokens == (token,) and token not in repr(cfg)
    assert cfg.redact(f"Authorization: Bearer {token}") == "Authorization: Bearer ***"
    with pytest.raises(settings.ConfigError) as excinfo:
        settings.load({"API_TOKENS": f"{token},short-Secret"})
    assert "token 2 must be 24 to 256" in str(excinfo.value) and "short-Secret" not in str(excinfo.value)


# ------------------------------------------------------------------------------------- CLI --

def test_every_cli_command_has_help():
    parser = build_parser()
    commands = [["request"], ["request-batch"], ["show"], ["wallet"], ["status"], ["dead-letters"],
                ["dead-letters", "list"], ["dead-letters", "redrive"], ["track"], ["pause"], ["resume"],
                ["untrack"], ["events"], ["migrate"]]
    for command in commands:
        with pytest.raises(SystemExit) as excinfo:
            parser.parse_args([*command, "--help"])
        assert excinfo.value.code == 0, command


def test_cli_usage_errors_exit_2():
    parser = build_parser()
    for argv in ([], ["bogus"], ["request", "u"], ["request", "u", "0x1", "--chains", "eth"], ["dead-letters"]):
        with pytest.raises(SystemExit) as excinfo:
            parser.parse_args(argv)
        assert excinfo.value.code == 2, argv


# --------------------------------------------------------------------------------- OpenAPI --

def test_the_openapi_document_loads_and_lists_the_three_operations():
    import schemathesis

    document = openapi.document((1, 10))
    schema = schemathesis.openapi.from_dict(document)
    operations = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert {("POST", "/api/v1/syncs"), ("GET", "/api/v1/syncs/{operation_id}"),
            ("GET", "/api/v1/wallets/{wallet_address}/syncs")} <= operations
    assert document["components"]["schemas"]["SyncRequest"]["properties"]["chain_ids"]["items"]["enum"] == [1, 10]
