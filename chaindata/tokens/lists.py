"""Token lists in the Uniswap token-list format: which tokens are *known*, and what they are.

A token on a list is a candidate the balance provider reads on every sync of
its chain, and its holding is flagged ``listed`` (the opposite of
``possible_spam``).  The list's metadata (symbol, name, decimals) is what
the list says; the chain's own answer still wins when the provider reads it.

Lists come from two places:

* the list shipped in this package (``default.tokenlist.json``, the major
  tokens of every default chain; see ``NOTICE`` for why it is not the Uniswap
  default list), always loaded;
* the URLs of ``TOKEN_LIST_URLS`` (``https://``, ``http://`` or ``file://``),
  loaded at start and refreshed every ``TOKEN_LIST_TTL_S``.  Each fetched
  list is validated against the token-list JSON schema and kept in Redis with
  that TTL, so the workers of a deployment fetch it once per TTL between them.

A list that does not parse or validate at start is refused with a
:class:`~settings.ConfigError` naming ``TOKEN_LIST_URLS``: a typo in the
configuration should stop the process, not silently shrink what is found.  A
list that fails later (the server now answers junk) keeps the last good copy,
and a warning says why.  A list that cannot be *reached* at start is no
configuration error: the process starts with what it has, and tries again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
import jsonschema
import redis

from chaindata.base import TokenBalance
from settings import ConfigError

_log = logging.getLogger(__name__)

_EVM_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
#: A fetched list larger than this is refused (the biggest public lists are a few MB).
MAX_LIST_BYTES = 8 * 1024 * 1024
_VARIABLE = "TOKEN_LIST_URLS"


class TokenListError(ValueError):
    """A token list that is not JSON, or not valid against the token-list schema."""


@dataclasses.dataclass(frozen=True)
class ListedToken:
    """What a token list says of one token."""

    chain_id: int
    address: str  # lower case
    symbol: str
    name: str
    decimals: int


_SCHEMA = json.loads(resources.files(__package__).joinpath("tokenlist.schema.json").read_text())
_VALIDATOR = jsonschema.Draft7Validator(_SCHEMA, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def parse_token_list(data: bytes | str, *, source: str) -> list[ListedToken]:
    """The EVM tokens of the token list ``data``; ``TokenListError`` naming ``source`` if it is not a valid list.

    Entries of non-EVM chains (e.g. Solana's base58 addresses, which the schema admits) are skipped.
    """
    if len(data) > MAX_LIST_BYTES:
        raise TokenListError(f"{source}: larger than {MAX_LIST_BYTES} bytes")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise TokenListError(f"{source}: not JSON ({type(exc).__name__})") from None
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(document))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(top)"
        raise TokenListError(f"{source}: not a valid token list at {where}: {error.message[:200]}")
    return [
        ListedToken(chain_id=t["chainId"], address=t["address"].lower(), symbol=t["symbol"], name=t["name"],
                    decimals=t["decimals"])
        for t in document["tokens"]
        if _EVM_ADDRESS.fullmatch(t["address"])
    ]


def shipped_list() -> list[ListedToken]:
    """The list shipped with this package (validated like any other)."""
    data = resources.files(__package__).joinpath("default.tokenlist.json").read_bytes()
    return parse_token_list(data, source="the shipped default token list")


class TokenIndex:
    """Tokens by chain and address, from one or more lists; the first list naming a token wins."""

    def __init__(self, lists: Iterable[Sequence[ListedToken]]):
        self._by_key: dict[tuple[int, str], ListedToken] = {}
        for tokens in lists:
            for token in tokens:
                self._by_key.setdefault((token.chain_id, token.address), token)
        by_chain: dict[int, list[str]] = {}
        for chain_id, address in self._by_key:
            by_chain.setdefault(chain_id, []).append(address)
        self._by_chain = {chain_id: tuple(addresses) for chain_id, addresses in by_chain.items()}

    def get(self, chain_id: int, address: str) -> ListedToken | None:
        """The listed token ``address`` (lower case) of ``chain_id``, or ``None`` if no list names it."""
        return self._by_key.get((chain_id, address))

    def is_listed(self, chain_id: int, address: str) -> bool:
        return (chain_id, address) in self._by_key

    def addresses(self, chain_id: int) -> tuple[str, ...]:
        """Every listed token address of ``chain_id``, lower case, in list order."""
        return self._by_chain.get(chain_id, ())

    def __len__(self) -> int:
        return len(self._by_key)


def complete_from_list(balances: Iterable[TokenBalance], index: TokenIndex) -> list[TokenBalance]:
    """``balances``, each listed token's missing metadata taken from its list.

    The chain's own answer wins; a list fills in only what the token could not say: a ``decimals``
    of ``None`` (so a listed token is valued on its list's decimals, never on a guess), an empty
    symbol or name.
    """
    completed = []
    for b in balances:
        listed = index.get(b.chain_id, b.token_address)
        if listed is not None and (b.decimals is None or not b.symbol or not b.name):
            b = dataclasses.replace(b, decimals=listed.decimals if b.decimals is None else b.decimals,
                                    symbol=b.symbol or listed.symbol, name=b.name or listed.name)
        completed.append(b)
    return completed


class TokenLists:
    """The shipped list plus the lists of ``TOKEN_LIST_URLS``, refreshed every ``ttl_s``; safe to share between threads.

    :param urls: the lists to fetch (``https://``, ``http://`` or ``file://``), in order of precedence
        after the shipped list.
    :param client: Redis, where fetched lists are cached for ``ttl_s`` for every process of the deployment.
    :param namespace: prefix of the Redis keys.
    :param ttl_s: how long a fetched list is used before it is fetched again.
    :param timeout_s: timeout of each HTTP request.
    :param clock: seconds, monotonic (tests pass their own).

    Call :meth:`start` once before :meth:`index`.
    """

    def __init__(self, urls: Sequence[str], *, client: redis.Redis, namespace: str, ttl_s: int,
                 timeout_s: float, clock=time.monotonic):
        self._urls = tuple(urls)
        self._redis = client
        self._namespace = namespace
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._shipped = shipped_list()
        self._good: dict[str, list[ListedToken]] = {}  # the last good copy of each URL's list
        self._index = TokenIndex([self._shipped])
        self._next_refresh = 0.0
        self._refreshing = False  # a thread is fetching: the others go on with the current index
        self._lock = threading.Lock()  # guards the four fields above, never held while fetching

    def start(self) -> None:
        """Load every configured list; ``ConfigError`` naming ``TOKEN_LIST_URLS`` if one is no valid token list."""
        self._refresh_if_due(strict=True)

    def index(self) -> TokenIndex:
        """The current index, refreshed first if the TTL has passed (a failed refresh keeps the last good lists).

        One thread refreshes, outside the lock; every other thread meanwhile gets the index as it is, so
        the chain reads of the process never wait for a list server.
        """
        self._refresh_if_due(strict=False)
        return self._index

    def _refresh_if_due(self, *, strict: bool) -> None:
        with self._lock:
            if self._refreshing or (not strict and self._clock() < self._next_refresh):
                return
            self._refreshing = True
            good = dict(self._good)
        try:
            self._fetch_all(good, strict=strict)
            index = TokenIndex([self._shipped, *(good[u] for u in self._urls if u in good)])
            with self._lock:
                self._good, self._index = good, index  # swapped in whole: a reader sees old or new
        finally:
            with self._lock:
                self._next_refresh = self._clock() + self._ttl_s
                self._refreshing = False

    def _fetch_all(self, good: dict[str, list[ListedToken]], *, strict: bool) -> None:
        for position, url in enumerate(self._urls, start=1):
            label = f"{_VARIABLE} list {position} ({_display(url)})"
            try:
                good[url] = self._load(url, label)
            except TokenListError as exc:
                if strict:
                    raise ConfigError(str(exc)) from None
                _log.warning("%s; keeping the last good copy (%s tokens).", exc,
                             len(good[url]) if url in good else "no")
            except (httpx.HTTPError, OSError, redis.RedisError) as exc:
                _log.warning("%s could not be fetched (%s); keeping the last good copy.", label, type(exc).__name__)

    def _load(self, url: str, label: str) -> list[ListedToken]:
        key = f"{self._namespace}:token-list:{hashlib.sha256(url.encode()).hexdigest()[:32]}"
        cached = self._redis.get(key)
        if cached is not None:
            try:
                return parse_token_list(cached, source=label)
            except TokenListError:
                pass  # a copy written by an older version, say: fetch it again
        data = _fetch(url, self._timeout_s)
        tokens = parse_token_list(data, source=label)
        # Only a list that validated is shared with the other processes.
        self._redis.set(key, data, ex=self._ttl_s)
        return tokens


def _fetch(url: str, timeout_s: float) -> bytes:
    parts = urlsplit(url)
    if parts.scheme == "file":
        return Path(url2pathname(parts.path)).read_bytes()  # a file URL's path is percent-encoded (%40 for @)
    with httpx.Client(timeout=timeout_s, follow_redirects=True) as http:
        response = http.get(url)
        response.raise_for_status()
        return response.content


def _display(url: str) -> str:
    """``url`` without user info or query, which may hold a key."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{parts.path}"[:120]
