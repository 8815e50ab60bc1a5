"""The OpenAPI 3.0 document of the HTTP intake (``api.app``), served at ``/api/v1/openapi.json``.

Written by hand, next to the code it describes; ``tests/integration/test_http_api.py`` runs
schemathesis against it, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from actors.validation import MAX_USER_ID_LENGTH, PRIORITIES

API_VERSION = "1.0.0"
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
#: One case only; a mixed-case address is also accepted when its EIP-55 checksum is right, which no pattern can say.
WALLET_PATTERN = "^0x([0-9a-f]{40}|[0-9A-F]{40})$"


def _error(description: str, *, headers: dict | None = None) -> dict:
    response = {"description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.",
                                "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
_UNAUTHORIZED = _error("No bearer token, or not one of API_TOKENS.", headers={
    "WWW-Authenticate": {"description": "`Bearer realm=\"portfolio-sync\"`", "schema": {"type": "string"}}})
_RATE_LIMITED = _error("The token made more requests than API_RATE_LIMIT allows.", headers=_RETRY_AFTER)
_UNAVAILABLE = _error("Redis or PostgreSQL did not answer; nothing was accepted.", headers=_RETRY_AFTER)
_NULLABLE_STRING = {"type": "string", "nullable": True}
_NULLABLE_INT = {"type": "integer", "nullable": True}
_DECIMAL = {"type": "string", "nullable": True, "pattern": r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$",
            "description": "An exact decimal, as a string."}


def document(chains: tuple[int, ...]) -> dict:
    """The document, with the chain ids this deployment supports (``SYNC_CHAINS``)."""
    chain = "|".join(map(str, chains))  # one supported chain id, in a pattern
    operation_id_param = {"name": "operation_id", "in": "path", "required": True,
                          "schema": {"type": "string", "format": "uuid", "pattern": UUID_PATTERN}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "portfolio-sync intake",
            "version": API_VERSION,
            "description": (
                "Ask for wallet syncs and read their state, from services that are not written in Python. "
                "Every operation needs `Authorization: Bearer <token>` with one of API_TOKENS. Validation, "
                "deduplication and cooldown are those of `actors.request_sync`. Errors are JSON objects with "
                "`error` (a code) and `message`. Request bodies are limited to API_MAX_BODY_BYTES (413)."),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": {
            "/api/v1/syncs": {
                "post": {
                    "operationId": "requestSync",
                    "summary": "Request a sync of a wallet",
                    "description": (
                        "202: a new operation was accepted and queued. 200: the operation that already covers "
                        "the request is returned instead (one queued or running for the same user and wallet, "
                        "or, within SYNC_COOLDOWN_SECONDS, the last successful one), and nothing is queued. "
                        "409: such an operation exists but does not cover every requested chain: retry once it "
                        "has finished (in flight), or after Retry-After or with `force` (cooldown); its id is in "
                        "the body."),
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/SyncRequest"}}}},
                    "responses": {
                        "202": {"description": "A new operation was queued.",
                                "headers": {"Location": {"description": "The operation's URL.",
                                                         "schema": {"type": "string"}}},
                                "content": {"application/json": {
                                    "schema": {"$ref": "#/components/schemas/SyncAccepted"}}}},
                        "200": {"description": "An existing operation covers the request.",
                                "content": {"application/json": {
                                    "schema": {"$ref": "#/components/schemas/SyncAccepted"}}}},
                        "400": _error("A field is invalid (the message names it)."),
                        "401": _UNAUTHORIZED,
                        "409": _error("An operation of this wallet is in flight or within its cooldown, and does "
                                      "not cover every requested chain (`operation_id` names it).",
                                      headers={"Retry-After": {**_RETRY_AFTER["Retry-After"], "required": False}}),
                        "413": _error("The body is larger than API_MAX_BODY_BYTES."),
                        "415": _error("The body is not `application/json`."),
                        "429": _RATE_LIMITED,
                        "503": _UNAVAILABLE,
                    },
                },
            },
            "/api/v1/syncs/{operation_id}": {
                "get": {
                    "operationId": "getSync",
                    "summary": "Read an operation",
                    "parameters": [operation_id_param],
                    "responses": {
                        "200": {"description": "The operation's current record.",
                                "content": {"application/json": {
                                    "schema": {"$ref": "#/components/schemas/Operation"}}}},
                        "400": _error("The id is not a UUID."),
                        "401": _UNAUTHORIZED,
                        "404": _error("No such operation (or it is older than SYNC_RETENTION_DAYS)."),
                        "429": _RATE_LIMITED,
                        "503": _UNAVAILABLE,
                    },
                },
            },
            "/api/v1/wallets/{wallet_address}/syncs": {
                "get": {
                    "operationId": "listWalletSyncs",
                    "summary": "A wallet's latest operations, newest first",
                    "parameters": [
                        {"name": "wallet_address", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": WALLET_PATTERN}},
                        {"name": "user_id", "in": "query", "required": False, "description": "Only this user's.",
                         "schema": {"type": "string", "minLength": 1, "maxLength": MAX_USER_ID_LENGTH}},
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                    ],
                    "responses": {
                        "200": {"description": "The operations (an empty list for a wallet never synced).",
                                "content": {"application/json": {
                                    "schema": {"$ref": "#/components/schemas/WalletSyncs"}}}},
                        "400": _error("The address, user id or limit is invalid."),
                        "401": _UNAUTHORIZED,
                        "429": _RATE_LIMITED,
                        "503": _UNAVAILABLE,
                    },
                },
            },
            "/api/v1/wallets/{wallet_address}/portfolio": {
                "get": {
                    "operationId": "getPortfolio",
                    "summary": "A wallet's portfolio for one user: holdings per chain, freshness and totals",
                    "description": (
                        "The holdings each chain's latest stored read holds, with the read's time and block, "
                        "whether it is fresh (read within SCHEDULER_ACTIVE_INTERVAL_S), how the latest sync went "
                        "for the chain, and the totals of priced holdings (unpriced ones are counted apart and "
                        "never valued). Amounts are exact decimal strings, raw balances integer strings. Send "
                        "the `ETag` back as `If-None-Match`: 304 with no body while nothing changed."),
                    "parameters": [
                        {"name": "wallet_address", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": WALLET_PATTERN}},
                        {"name": "user_id", "in": "query", "required": True,
                         "schema": {"type": "string", "minLength": 1, "maxLength": MAX_USER_ID_LENGTH}},
                        {"name": "chain_ids", "in": "query", "required": False,
                         "description": "Only these chains, comma separated (each a supported chain).",
                         "schema": {"type": "string", "pattern": f"^({chain})(,({chain}))*$"}},
                        {"name": "If-None-Match", "in": "header", "required": False,
                         "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {"description": "The portfolio.",
                                "headers": {"ETag": {"description": "The portfolio's version (weak).",
                                                     "schema": {"type": "string"}}},
                                "content": {"application/json": {
                                    "schema": {"$ref": "#/components/schemas/Portfolio"}}}},
                        "304": {"description": "Unchanged since the version of `If-None-Match`.",
                                "headers": {"ETag": {"description": "The portfolio's version (weak).",
                                                     "schema": {"type": "string"}}}},
                        "400": _error("The address, user id or a chain id is invalid, or user_id is missing."),
                        "401": _UNAUTHORIZED,
                        "404": _error("No sync of this wallet was ever requested for this user."),
                        "429": _RATE_LIMITED,
                        "503": _UNAVAILABLE,
                    },
                },
            },
            "/api/v1/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "The OpenAPI document.",
                                          "content": {"application/json": {"schema": {"type": "object"}}}}},
                },
            },
        },
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "One of the tokens of API_TOKENS."}},
            "schemas": {
                "SyncRequest": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["user_id", "wallet_address"],
                    "properties": {
                        "user_id": {"type": "string", "minLength": 1, "maxLength": MAX_USER_ID_LENGTH,
                                    "description": "The product's user id (not blank)."},
                        "wallet_address": {"type": "string", "pattern": WALLET_PATTERN,
                                           "description": "All lower or all upper case, or mixed case with a right EIP-55 checksum; "
                                                          "stored in lower case."},
                        "chain_ids": {"type": "array", "nullable": True, "minItems": 1,
                                      "items": {"type": "integer", "enum": list(chains)},
                                      "description": "Chains to sync; omitted or null: every supported chain."},
                        "priority": {"type": "string", "enum": list(PRIORITIES), "default": "normal"},
                        "force": {"type": "boolean", "default": False,
                                  "description": "Sync even within the cooldown of the last success."},
                    },
                    "example": {"user_id": "user-42", "wallet_address": "0x" + "1" * 40, "chain_ids": [1, 8453],
                                "priority": "high"},
                },
                "SyncAccepted": {
                    "type": "object",
                    "required": ["operation_id", "status", "admission", "url"],
                    "properties": {
                        "operation_id": {"type": "string", "format": "uuid"},
                        "status": {"$ref": "#/components/schemas/Status"},
                        "admission": {"type": "string", "enum": ["accepted", "duplicate", "cooldown"],
                                      "description": "accepted: a new operation; duplicate: the one in flight; "
                                                     "cooldown: the last successful one."},
                        "url": {"type": "string"},
                    },
                },
                "Status": {"type": "string", "enum": ["queued", "running", "retrying", "succeeded", "partial", "failed"]},
                "ChainResult": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok", "error"]},
                        "holdings": {"type": "integer"},
                        "value_usd": {"type": "string"},
                        "unpriced": {"type": "integer"},
                        "duration_ms": {"type": "integer"},
                        "as_of": {"type": "string"},
                        "error_code": {"type": "string"},
                        "error_message": {"type": "string"},
                        "transient": {"type": "boolean"},
                    },
                },
                "Operation": {
                    "type": "object",
                    "required": ["operation_id", "user_id", "wallet_address", "chain_ids", "priority", "trigger",
                                 "status", "attempts", "enqueued_at", "chain_results"],
                    "properties": {
                        "operation_id": {"type": "string", "format": "uuid"},
                        "user_id": {"type": "string"},
                        "wallet_address": {"type": "string", "pattern": "^0x[0-9a-f]{40}$"},
                        "chain_ids": {"type": "array", "items": {"type": "integer"}},
                        "priority": {"type": "string", "enum": list(PRIORITIES)},
                        "trigger": {"type": "string"},
                        "provider": _NULLABLE_STRING,
                        "status": {"$ref": "#/components/schemas/Status"},
                        "attempts": {"type": "integer", "minimum": 0},
                        "enqueued_at": {"type": "string", "format": "date-time"},
                        "started_at": {**_NULLABLE_STRING, "format": "date-time"},
                        "finished_at": {**_NULLABLE_STRING, "format": "date-time"},
                        "queue_wait_ms": _NULLABLE_INT,
                        "duration_ms": _NULLABLE_INT,
                        "holdings_count": _NULLABLE_INT,
                        "total_value_usd": _DECIMAL,
                        "unpriced_count": _NULLABLE_INT,
                        "chain_results": {"type": "object",
                                          "additionalProperties": {"$ref": "#/components/schemas/ChainResult"},
                                          "description": "Per chain id (as a string)."},
                        "error_code": _NULLABLE_STRING,
                        "error_message": _NULLABLE_STRING,
                    },
                },
                "WalletSyncs": {
                    "type": "object",
                    "required": ["wallet_address", "syncs"],
                    "properties": {
                        "wallet_address": {"type": "string", "pattern": "^0x[0-9a-f]{40}$"},
                        "syncs": {"type": "array", "items": {"$ref": "#/components/schemas/Operation"}},
                    },
                },
                "Holding": {
                    "type": "object",
                    "required": ["token_address", "symbol", "name", "decimals", "raw_balance", "balance",
                                 "price_usd", "value_usd", "flags"],
                    "properties": {
                        "token_address": {"type": "string", "pattern": "^0x[0-9a-f]{40}$"},
                        "symbol": {"type": "string"},
                        "name": {"type": "string"},
                        "decimals": {**_NULLABLE_INT, "description": "null: unknown, so never valued."},
                        "raw_balance": {"type": "string", "pattern": "^[0-9]+$",
                                        "description": "The integer on chain, as a string."},
                        "balance": _DECIMAL,
                        "price_usd": _DECIMAL,
                        "value_usd": _DECIMAL,
                        "price_source": _NULLABLE_STRING,
                        "priced_at": {**_NULLABLE_STRING, "format": "date-time"},
                        "price_age_seconds": {"type": "number", "nullable": True},
                        "flags": {"type": "array", "items": {
                            "type": "string", "enum": ["unpriced", "unknown_decimals", "possible_spam", "listed"]}},
                    },
                },
                "PortfolioChain": {
                    "type": "object",
                    "required": ["chain_id", "status", "read_at", "block_number", "fresh", "holdings", "value_usd",
                                 "priced_count", "unpriced_count"],
                    "properties": {
                        "chain_id": {"type": "integer"},
                        "status": {"type": "string", "enum": ["ok", "error", "pending", "never_read"],
                                   "description": "ok: holdings from a stored read; error: never read, and the "
                                                  "latest sync failed for it; pending: being read; never_read."},
                        "read_at": {**_NULLABLE_STRING, "format": "date-time"},
                        "block_number": _NULLABLE_INT,
                        "age_seconds": {"type": "number", "nullable": True},
                        "fresh": {"type": "boolean"},
                        "operation_id": {**_NULLABLE_STRING, "format": "uuid"},
                        "last_result": {"type": "object", "nullable": True, "properties": {
                            "operation_id": {"type": "string", "format": "uuid"},
                            "operation_status": {"$ref": "#/components/schemas/Status"},
                            "status": {**_NULLABLE_STRING, "enum": ["ok", "error", None]},
                            "error_code": _NULLABLE_STRING,
                            "error_message": _NULLABLE_STRING}},
                        "value_usd": _DECIMAL,
                        "priced_count": {"type": "integer"},
                        "unpriced_count": {"type": "integer"},
                        "holdings": {"type": "array", "items": {"$ref": "#/components/schemas/Holding"}},
                    },
                },
                "Portfolio": {
                    "type": "object",
                    "required": ["user_id", "wallet_address", "last_operation", "totals", "chains"],
                    "properties": {
                        "user_id": {"type": "string"},
                        "wallet_address": {"type": "string", "pattern": "^0x[0-9a-f]{40}$"},
                        "last_operation": {"type": "object", "properties": {
                            "id": {"type": "string", "format": "uuid"},
                            "status": {"$ref": "#/components/schemas/Status"},
                            "enqueued_at": {"type": "string", "format": "date-time"},
                            "finished_at": {**_NULLABLE_STRING, "format": "date-time"}}},
                        "totals": {"type": "object", "properties": {
                            "value_usd": _DECIMAL, "holdings_count": {"type": "integer"},
                            "priced_count": {"type": "integer"}, "unpriced_count": {"type": "integer"}}},
                        "chains": {"type": "array", "items": {"$ref": "#/components/schemas/PortfolioChain"}},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string", "enum": [
                            "invalid_request", "unauthorized", "not_found", "method_not_allowed", "conflict",
                            "payload_too_large", "unsupported_media_type", "rate_limited", "unavailable",
                            "internal_error"]},
                        "message": {"type": "string"},
                        "operation_id": {"type": "string", "format": "uuid"},
                        "admission": {"type": "string", "enum": ["duplicate", "cooldown"]},
                    },
                },
            },
        },
    }
