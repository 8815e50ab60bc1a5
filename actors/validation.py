"""Validation of sync requests, at the edge (``request_sync``) and again in the actor."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterable, Sequence

from settings.addresses import InvalidAddress, normalize_address

PRIORITIES = ("high", "normal", "low")
TRIGGERS = ("api", "scheduled", "cli", "demo", "redrive")
MAX_USER_ID_LENGTH = 128
_WALLET = re.compile(r"0x[0-9a-fA-F]{40}")


class InvalidSyncRequest(ValueError):
    """A sync request was rejected before anything was enqueued or written; the message says why."""


@dataclasses.dataclass(frozen=True)
class SyncRequest:
    """A validated request: wallet in lower case, chains sorted and unique."""

    user_id: str
    wallet_address: str
    chain_ids: tuple[int, ...]
    priority: str = "normal"
    force: bool = False
    trigger: str = "api"


def validate_wallet(wallet_address: object) -> str:
    """``wallet_address`` in lower case; a mixed-case address must carry a right EIP-55 checksum."""
    if not isinstance(wallet_address, str) or not _WALLET.fullmatch(wallet_address):
        raise InvalidSyncRequest(
            f"wallet_address must be '0x' followed by 40 hex digits, got {_preview(wallet_address)}")
    try:
        return normalize_address(wallet_address)
    except InvalidAddress as exc:
        raise InvalidSyncRequest(f"wallet_address {exc}, got {_preview(wallet_address)}") from None


def validate_user_id(user_id: object) -> str:
    if not isinstance(user_id, str) or not user_id.strip():
        raise InvalidSyncRequest(f"user_id must be a non-empty string, got {_preview(user_id)}")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise InvalidSyncRequest(f"user_id must be at most {MAX_USER_ID_LENGTH} characters, got {len(user_id)}")
    if "\x00" in user_id:
        raise InvalidSyncRequest("user_id must not contain NUL characters")
    # A lone surrogate cannot be encoded in UTF-8: not in a Redis key, not in a column.  Surrogates are
    # exactly what a strict UTF-8 encoding refuses, so that encoding is the check (in C, not per character).
    if not user_id.isascii() and _has_surrogate(user_id):
        raise InvalidSyncRequest("user_id must not contain lone surrogates (it must be valid Unicode text)")
    return user_id


def validate_request(user_id: object, wallet_address: object, chain_ids: Iterable[object] | None = None, *,
                     priority: object = "normal", force: object = False, trigger: object = "api",
                     supported_chains: Sequence[int]) -> SyncRequest:
    """Check every field of a request; raise :class:`InvalidSyncRequest` naming the first bad one."""
    validate_user_id(user_id)
    wallet = validate_wallet(wallet_address)
    if priority not in PRIORITIES:
        raise InvalidSyncRequest(f"priority must be one of {', '.join(PRIORITIES)}, got {_preview(priority)}")
    if trigger not in TRIGGERS:
        raise InvalidSyncRequest(f"trigger must be one of {', '.join(TRIGGERS)}, got {_preview(trigger)}")
    if not isinstance(force, bool):
        raise InvalidSyncRequest(f"force must be true or false, got {_preview(force)}")
    return SyncRequest(user_id, wallet, validate_chains(chain_ids, supported_chains), priority, force, trigger)


def validate_chains(chain_ids: Iterable[object] | None, supported_chains: Sequence[int]) -> tuple[int, ...]:
    if chain_ids is None:
        return tuple(sorted(supported_chains))
    if isinstance(chain_ids, (str, bytes)) or not isinstance(chain_ids, Iterable):
        raise InvalidSyncRequest(f"chain_ids must be a list of chain ids or None, got {_preview(chain_ids)}")
    chains = list(chain_ids)
    if not chains:
        raise InvalidSyncRequest("chain_ids must not be empty (pass None for all supported chains)")
    for chain in chains:
        # bool is an int subclass; True is not chain 1.
        if not isinstance(chain, int) or isinstance(chain, bool):
            raise InvalidSyncRequest(f"chain id must be an integer, got {_preview(chain)}")
        if chain not in supported_chains:
            raise InvalidSyncRequest(
                f"unknown chain id {chain}; supported: {', '.join(map(str, sorted(supported_chains)))}")
    return tuple(sorted(set(chains)))


def parse_operation_id(value: object) -> str | None:
    """``value`` as a canonical UUID string, or ``None`` if it is not one."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
