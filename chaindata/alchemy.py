"""Balances from Alchemy's enhanced JSON-RPC API (``SYNC_PROVIDER=alchemy``), which lists every ERC-20 a wallet holds.

Alchemy does not take JSON-RPC batches of its Token API methods
(``alchemy_*``), so a read is: one request batching the standard methods
(``eth_chainId`` the first time, to check the endpoint serves the chain it is
configured for, and ``eth_getBalance``); then one request per page of
``alchemy_getTokenBalances`` (``"erc20"``, ``maxCount`` 100), following
``pageKey`` to the end, at most ``MAX_PAGES`` pages; then one request per
batch of extra candidate tokens (given by the caller, read by address); then
one ``alchemy_getTokenMetadata`` request per held token not seen yet, a few at
a time.  Each request spends the provider's rate budget in compute units
(:data:`COMPUTE_UNITS`), and is retried within the attempt as every read is.

Choices worth knowing:

* A token whose balance comes with an ``error`` is reported as a per-token
  error (``balance_unreadable``) and left out; one that is ``null``, ``"0x"``
  or zero is simply not held.
* Metadata with ``decimals: null`` (Alchemy does not know it) keeps the
  token with unknown decimals (``None``): its integer balance stays exact,
  and it is never valued (a guessed 0 could value it 10^decimals too high).  Such
  incomplete metadata, or a metadata call that failed for good, is not
  cached, so a later sync can learn better; complete metadata is cached for
  the life of the provider, as it never changes, in a bounded LRU
  (:data:`chaindata.lru.DEFAULT_SIZE` tokens).
* Past ``MAX_PAGES`` pages (airdrop spam can make lists huge) the remaining
  tokens are left out and the read says ``truncated``, which the chain's
  result records, rather than failing the wallet forever.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from chaindata.base import (ChainRead, PermanentProviderError, ProviderError, TokenBalance, TokenError, TokenInfo,
                            check_wallet)
from chaindata.budget import ProviderBudget
from chaindata.chains import get_chain, native_balance
from chaindata.evm.abi import MAX_NAME_LEN, MAX_SYMBOL_LEN, clean_text
from chaindata.jsonrpc import JsonRpcClient, parse_quantity
from chaindata.lru import DEFAULT_SIZE, LruCache
from chaindata.retrying import RetryPolicy

_log = logging.getLogger(__name__)

#: Most pages of ``alchemy_getTokenBalances`` read per sync.
MAX_PAGES = 20
#: Tokens asked for per page, and most contract addresses per by-address request.
PAGE_SIZE = 100
#: Metadata requests in flight at once for one read (Alchemy prefers concurrent single requests to batches).
METADATA_CONCURRENCY = 8
#: Compute units per method, for the rate budget: Alchemy's published costs of the standard methods; the
#: Token API's are an upper estimate (its costs change with plans), so the budget errs on the safe side.
COMPUTE_UNITS = {"eth_chainId": 0, "eth_getBalance": 20, "alchemy_getTokenBalances": 50,
                 "alchemy_getTokenMetadata": 50}
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class AlchemyProvider:
    """``BalanceProvider`` backed by Alchemy's ``alchemy_getTokenBalances`` and ``alchemy_getTokenMetadata``.

    :param urls: the base URL of each supported chain id, e.g. ``https://eth-mainnet.g.alchemy.com/v2``;
        the endpoint is that URL, without a trailing slash, followed by ``/`` and ``api_key``.
        A chain absent here is unsupported.
    :param api_key: the Alchemy API key (secret: it is in no message or log line).
    :param timeout_s: timeout, in seconds, of every HTTP request.
    :param budget: the provider's rate budget shared by all workers, in requests and compute units (None: none).
    :param retry: how requests are retried within an attempt (see :mod:`chaindata.retrying`).
    :param metadata_cache_size: most tokens whose metadata is kept (default :data:`chaindata.lru.DEFAULT_SIZE`).

    Safe to share between threads.  Call :meth:`close` to release its connections.
    """

    name = "alchemy"

    def __init__(self, urls: Mapping[int, str], api_key: str, timeout_s: float, *,
                 budget: ProviderBudget | None = None, retry: RetryPolicy = RetryPolicy(),
                 metadata_cache_size: int = DEFAULT_SIZE):
        self._http = httpx.Client(timeout=timeout_s)
        self._clients = {
            chain_id: JsonRpcClient(self._http, url.rstrip("/") + "/" + api_key, timeout_s=timeout_s,
                                    where=f"chain {chain_id}", peer="the alchemy provider", budget=budget,
                                    units=lambda method: COMPUTE_UNITS.get(method, 26), retry=retry)
            for chain_id, url in urls.items()
        }
        self._info: LruCache[tuple[int, str], TokenInfo] = LruCache(metadata_cache_size)
        self._lock = threading.Lock()  # guards _verified_chains
        self._verified_chains: set[int] = set()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def read_chain(self, chain_id: int, wallet: str, tokens: Sequence[str] = ()) -> ChainRead:
        """Every non-zero balance of ``wallet`` on ``chain_id`` (native coin first, then tokens in Alchemy's
        order, then those of ``tokens`` Alchemy did not list), with the tokens whose balance it could not read."""
        client = self._clients.get(chain_id)
        if client is None:
            raise PermanentProviderError("unsupported_chain", f"chain {chain_id}: no alchemy URL is configured")
        wallet = check_wallet(chain_id, wallet)
        with self._lock:
            verify = chain_id not in self._verified_chains
        requests = 0

        calls: list[tuple[str, list[Any]]] = [("eth_chainId", [])] if verify else []
        outcomes = client.batch(calls + [("eth_getBalance", [wallet, "latest"])])  # standard methods batch fine
        requests += 1
        *first, native_outcome = (_result(o) for o in outcomes)
        if verify:
            self._check_chain_id(chain_id, first[0])
        native = _parse(chain_id, "eth_getBalance", parse_quantity, native_outcome)

        balances: dict[str, int] = {}
        errors: dict[str, TokenError] = {}
        truncated = False
        page_key: str | None = None
        for pages in range(1, MAX_PAGES + 1):
            options: dict[str, Any] = {"maxCount": PAGE_SIZE}
            if page_key is not None:
                options["pageKey"] = page_key
            page = client.call("alchemy_getTokenBalances", [wallet, "erc20", options])
            requests += 1
            page_key = _read_page(chain_id, page, balances, errors)
            if page_key is None:
                break
            if pages == MAX_PAGES:
                truncated = True
                _log.warning("chain %d: wallet %s lists more than %d pages of tokens; the rest are left out",
                             chain_id, wallet, MAX_PAGES)

        extra = [t for t in dict.fromkeys(t.lower() for t in tokens) if t not in balances and t not in errors]
        for start in range(0, len(extra), PAGE_SIZE):
            page = client.call("alchemy_getTokenBalances", [wallet, extra[start:start + PAGE_SIZE]])
            requests += 1
            _read_page(chain_id, page, balances, errors)

        infos, metadata_requests = self._token_infos(chain_id, client, list(balances))
        holdings = [native_balance(get_chain(chain_id), native)] if native else []
        holdings += [
            TokenBalance(chain_id=chain_id, token_address=token, symbol=infos[token].symbol, name=infos[token].name,
                         decimals=infos[token].decimals, raw_balance=raw)
            for token, raw in balances.items()
        ]
        return ChainRead(chain_id=chain_id, balances=holdings, block_number=None, token_errors=list(errors.values()),
                         truncated=truncated, requests=requests + metadata_requests)

    def _check_chain_id(self, chain_id: int, outcome: Any) -> None:
        served = _parse(chain_id, "eth_chainId", parse_quantity, outcome)
        if served != chain_id:
            raise PermanentProviderError("provider_misconfigured",
                                         f"chain {chain_id}: the alchemy URL configured for it serves chain {served}")
        with self._lock:
            self._verified_chains.add(chain_id)

    def _token_infos(self, chain_id: int, client: JsonRpcClient,
                     tokens: list[str]) -> tuple[dict[str, TokenInfo], int]:
        """The metadata of each of ``tokens`` (cached, or read one request per token and cached when
        complete), and the number of requests made."""
        infos = {t: info for (_, t), info in self._info.get_many((chain_id, t) for t in tokens).items()}
        unseen = [t for t in tokens if t not in infos]
        if not unseen:
            return infos, 0

        def metadata(token: str) -> Any:
            try:
                return client.call("alchemy_getTokenMetadata", [token])
            except ProviderError as exc:
                if exc.transient:
                    raise
                return exc  # this token's metadata is unknown; the others are not

        # Each thread runs in a copy of this one's context, so the attempt's deadline goes with it.
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(METADATA_CONCURRENCY, len(unseen))) as pool:
            futures = [pool.submit(contextvars.copy_context().run, metadata, token) for token in unseen]
            outcomes = [future.result() for future in futures]
        complete: dict[tuple[int, str], TokenInfo] = {}
        for token, outcome in zip(unseen, outcomes):
            info, is_complete = _token_info(chain_id, token, outcome)
            infos[token] = info
            if is_complete:
                complete[(chain_id, token)] = info
        self._info.put_many(complete)
        return infos, len(unseen)


def _result(outcome: Any) -> Any:
    """``outcome`` itself, raised if it is a (permanent) error of its call."""
    if isinstance(outcome, ProviderError):
        raise outcome
    return outcome


def _parse(chain_id: int, method: str, parse: Callable[[Any], int], value: Any) -> int:
    try:
        return parse(value)
    except ValueError:
        raise PermanentProviderError("provider_bad_response",
                                     f"chain {chain_id}: bad answer from the alchemy provider to {method}") from None


def _read_page(chain_id: int, page: Any, balances: dict[str, int], errors: dict[str, TokenError]) -> str | None:
    """Add the non-zero balances of one ``alchemy_getTokenBalances`` page to ``balances``, and the tokens
    it could not read to ``errors``; return its ``pageKey``."""
    items = page.get("tokenBalances") if isinstance(page, dict) else None
    if not isinstance(items, list):
        raise _bad_page(chain_id, "no tokenBalances list")
    for item in items:
        address = item.get("contractAddress") if isinstance(item, dict) else None
        if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
            raise _bad_page(chain_id, "an entry has no contract address")
        raw = item.get("tokenBalance")
        if item.get("error") is not None:
            errors.setdefault(address.lower(), TokenError(address.lower(), "balance_unreadable",
                                                          "the alchemy provider could not read this balance"))
            continue
        if raw is None or raw == "0x":
            continue  # there is none
        try:
            value = parse_quantity(raw)
        except ValueError:
            raise _bad_page(chain_id, "a tokenBalance is not hex") from None
        if value:
            balances.setdefault(address.lower(), value)  # a token repeated on a later page counts once
    page_key = page.get("pageKey")
    if page_key is not None and not (isinstance(page_key, str) and page_key):
        raise _bad_page(chain_id, "pageKey is not a string")
    return page_key


def _bad_page(chain_id: int, detail: str) -> PermanentProviderError:
    return PermanentProviderError("provider_bad_response",
                                  f"chain {chain_id}: bad answer from the alchemy provider to "
                                  f"alchemy_getTokenBalances: {detail}")


def _token_info(chain_id: int, token: str, outcome: Any) -> tuple[TokenInfo, bool]:
    """The metadata in one ``alchemy_getTokenMetadata`` outcome, and whether it is complete enough to cache."""
    meta = outcome if isinstance(outcome, dict) else {}
    symbol, name, decimals = meta.get("symbol"), meta.get("name"), meta.get("decimals")
    symbol_text = clean_text(symbol, MAX_SYMBOL_LEN) if isinstance(symbol, str) else ""
    name_text = (clean_text(name, MAX_NAME_LEN) if isinstance(name, str) else "") or symbol_text
    # type() rather than isinstance(): JSON true is no number of decimals.
    known_decimals = decimals if type(decimals) is int and 0 <= decimals <= 255 else None
    if known_decimals is None:
        _log.warning("chain %d: token %s has no known decimals; it is stored unvalued", chain_id, token)
    info = TokenInfo(symbol=symbol_text, name=name_text, decimals=known_decimals)
    return info, isinstance(outcome, dict) and known_decimals is not None
