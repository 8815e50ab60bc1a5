"""Balances read straight from each chain's JSON-RPC node (``SYNC_PROVIDER=rpc``), through Multicall3.

A node cannot list the tokens a wallet holds, so the ERC-20s read are the
configured ones (``RPC_TOKENS``) and the candidates the caller passes (token
lists, discovery).  A read is, in HTTP requests:

1. one JSON-RPC batch of ``eth_blockNumber`` and, the first time for the
   chain, ``eth_chainId`` (the endpoint must serve the chain it is configured
   for) and ``eth_getCode`` of the chain's Multicall3;
2. one batch of ``eth_call``\\ s of Multicall3's ``aggregate3``, each carrying up
   to ``multicall_batch`` calls (fewer if their gas estimate passes
   ``multicall_gas``) with ``allowFailure: true``: ``getEthBalance(wallet)``
   and ``balanceOf(wallet)`` of every token;
3. for the tokens held whose metadata is not cached yet, one more such batch
   of ``symbol()``, ``name()`` and ``decimals()``.

Every ``eth_call`` names the block number of step 1 rather than ``latest``, so
the whole read is of one block, recorded in the :class:`~chaindata.base.ChainRead`.
Where the chain's Multicall3 address has no code (checked once per chain and
provider), the same calls go out as plain ``eth_getBalance`` / ``eth_call``
items of JSON-RPC batches, still at that block.

Choices worth knowing:

* One token never fails the chain.  A ``balanceOf`` that reverts, or answers
  anything but one 32-byte word (an address without code answers nothing), is
  a :class:`~chaindata.base.TokenError` (``reverted``, ``bad_answer``) and the
  token is left out.  An ``aggregate3`` that fails as a whole (a token burning
  all the gas, say) is split in halves until the culprit stands alone.
* Metadata: a token without ``decimals()`` keeps its balance with decimals
  ``None`` (never valued) and a ``no_decimals`` error; one without ``symbol()``
  or ``name()`` gets ``""`` / its symbol, as both are optional in ERC-20; text
  that is not a well-formed string or ``bytes32`` of UTF-8 is a
  ``bad_metadata`` error.  Complete metadata never changes, so it is cached for
  the life of the provider; incomplete metadata for ``INCOMPLETE_INFO_TTL_S``;
  either way in a bounded LRU (:data:`chaindata.lru.DEFAULT_SIZE` tokens).
* Transient failures of any call (timeouts, rate limits, 5xx) fail the read,
  which is retried whole: a half-read chain is never stored.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from chaindata.base import (ChainRead, PermanentProviderError, ProviderError, TokenBalance, TokenError, TokenInfo,
                            TransientProviderError, check_wallet)
from chaindata.budget import ProviderBudget
from chaindata.chains import get_chain, native_balance
from chaindata.evm import abi
from chaindata.evm.abi import MAX_NAME_LEN, MAX_SYMBOL_LEN, BadAnswer, clean_text
from chaindata.jsonrpc import JsonRpcClient, parse_quantity
from chaindata.lru import DEFAULT_SIZE, LruCache
from chaindata.retrying import RetryPolicy
from settings.addresses import InvalidAddress, normalize_address
from settings.chains import DEFAULT_CHAINS, Chain

#: Gas counted per call inside an ``aggregate3`` when cutting chunks: generous for a ``balanceOf`` or a short
#: ``symbol()`` (a few thousand gas) plus Multicall3's own work, so a chunk of honest tokens never runs out.
GAS_PER_CALL = 50_000
#: How long incomplete metadata (no decimals(), a garbled symbol) is kept before it is read again, in
#: seconds: long enough that a wallet's regular syncs do not re-read it each time, short enough that a
#: node's passing fault taken for the token's own does not stick.
INCOMPLETE_INFO_TTL_S = 3600
#: Longest text kept of a node's error message quoted in a token's error.
_MAX_ERROR_TEXT = 200


@dataclasses.dataclass(frozen=True)
class _Failed:
    """The outcome of one call that failed on its own (code and message as a TokenError takes them)."""

    code: str
    message: str


class RpcProvider:
    """``BalanceProvider`` reading native and ERC-20 balances from JSON-RPC nodes, through Multicall3.

    :param urls: the JSON-RPC endpoint of each supported chain id (``RPC_URLS``); a chain absent here is unsupported.
    :param tokens: the ERC-20 contracts (lower-case 0x addresses) to read on each chain (``RPC_TOKENS``).
    :param timeout_s: timeout, in seconds, of every HTTP request.
    :param chains: what is known of each chain (native coin, Multicall3 address); default
        :data:`settings.chains.DEFAULT_CHAINS`.
    :param multicall_batch: most calls in one ``aggregate3``.
    :param multicall_gas: gas budget of one ``aggregate3``, sent as its ``eth_call``'s gas; also bounds its
        chunk to ``multicall_gas // GAS_PER_CALL`` calls.
    :param max_batch: most JSON-RPC items in one HTTP request.
    :param budget: the provider's rate budget shared by all workers (None: none).
    :param retry: how requests are retried within an attempt (see :mod:`chaindata.retrying`).
    :param metadata_cache_size: most tokens whose metadata is kept (default :data:`chaindata.lru.DEFAULT_SIZE`).

    Safe to share between threads.  Call :meth:`close` to release its connections.
    """

    name = "rpc"

    def __init__(self, urls: Mapping[int, str], tokens: Mapping[int, Sequence[str]], timeout_s: float, *,
                 chains: Mapping[int, Chain] = DEFAULT_CHAINS, multicall_batch: int = 300,
                 multicall_gas: int = 20_000_000, max_batch: int = 100, budget: ProviderBudget | None = None,
                 retry: RetryPolicy = RetryPolicy(), metadata_cache_size: int = DEFAULT_SIZE):
        if multicall_batch < 1 or multicall_gas < GAS_PER_CALL:
            raise ValueError(f"multicall_batch must be at least 1 and multicall_gas at least {GAS_PER_CALL}")
        self._http = httpx.Client(timeout=timeout_s)
        self._max_batch = max_batch
        self._clients = {
            chain_id: JsonRpcClient(self._http, url, timeout_s=timeout_s, where=f"chain {chain_id}",
                                    peer="the rpc provider", max_batch=max_batch, budget=budget, retry=retry)
            for chain_id, url in urls.items()
        }
        self._tokens: dict[int, tuple[str, ...]] = {}
        for chain_id, addresses in tokens.items():
            try:
                # A token listed twice is read once.
                self._tokens[chain_id] = tuple(dict.fromkeys(normalize_address(a) for a in addresses))
            except InvalidAddress as exc:
                raise ValueError(f"chain {chain_id}: a token address {exc}") from None
        self._chains = chains
        self._chunk = min(multicall_batch, multicall_gas // GAS_PER_CALL)
        self._gas = multicall_gas
        self._info: LruCache[tuple[int, str], TokenInfo] = LruCache(metadata_cache_size)
        self._lock = threading.Lock()  # guards the two caches below
        self._verified_chains: set[int] = set()
        self._has_multicall: dict[int, bool] = {}

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def check_endpoints(self) -> list[str]:
        """Ask every endpoint which chain it serves; raise ``PermanentProviderError("provider_misconfigured")``
        naming ``RPC_URLS`` if one serves another chain than its own.  Returns the chains whose endpoint
        gave no chain id now (unreachable, rate limited, an error): each read asks again, and fails the
        chain with the endpoint's own error if it persists."""
        misconfigured, unchecked = [], []
        for chain_id, client in self._clients.items():
            try:
                served = parse_quantity(client.call("eth_chainId", []))
            except (ProviderError, ValueError):
                unchecked.append(f"chain {chain_id}")
                continue
            if served != chain_id:
                misconfigured.append(f"chain {chain_id} serves {served}")
                continue
            with self._lock:
                self._verified_chains.add(chain_id)
        if misconfigured:
            raise PermanentProviderError("provider_misconfigured",
                                         f"RPC_URLS: the endpoint of {'; of '.join(misconfigured)}")
        return unchecked

    def read_chain(self, chain_id: int, wallet: str, tokens: Sequence[str] = ()) -> ChainRead:
        """Every non-zero balance of ``wallet`` on ``chain_id`` at one block: native coin first, then tokens
        in the order configured, then ``tokens``."""
        client = self._clients.get(chain_id)
        if client is None:
            raise PermanentProviderError("unsupported_chain", f"chain {chain_id}: RPC_URLS has no endpoint for it")
        chain = get_chain(chain_id, self._chains)
        wallet = check_wallet(chain_id, wallet)
        read = _Read(self, client, chain, wallet)
        errors: list[TokenError] = []
        candidates = list(self._tokens.get(chain_id, ()))
        for token in tokens:
            try:
                candidates.append(normalize_address(token))
            except InvalidAddress as exc:
                errors.append(TokenError(clean_text(token, 42), "bad_address", f"the token address {exc}"))
        candidates = list(dict.fromkeys(candidates))

        read.start()
        balance_of = abi.address_call(abi.BALANCE_OF, wallet)
        native, *token_outcomes = read.calls([("native", wallet)] + [(token, balance_of) for token in candidates])
        try:
            if isinstance(native, _Failed):
                raise BadAnswer(native.message)
            native_raw = abi.decode_uint256(native)  # the executors hand native balances over as one word
        except BadAnswer as exc:
            raise PermanentProviderError("provider_bad_response",
                                         f"chain {chain_id}: the native balance could not be read: {exc}") from None

        held: dict[str, int] = {}
        for token, outcome in zip(candidates, token_outcomes):
            if isinstance(outcome, _Failed):
                errors.append(TokenError(token, outcome.code, f"balanceOf(): {outcome.message}"))
                continue
            try:
                raw = abi.decode_uint256(outcome)
            except BadAnswer as exc:
                errors.append(TokenError(token, "bad_answer", f"balanceOf(): {exc}"))
                continue
            if raw:
                held[token] = raw

        infos = read.token_infos(list(held))
        balances = [native_balance(chain, native_raw)] if native_raw else []
        for token, raw in held.items():
            info = infos[token]
            balances.append(TokenBalance(chain_id=chain_id, token_address=token, symbol=info.symbol,
                                         name=info.name, decimals=info.decimals, raw_balance=raw))
            errors += [TokenError(token, code, message) for code, message in info.problems]
        return ChainRead(chain_id=chain_id, balances=balances, block_number=read.block, token_errors=errors,
                         requests=read.requests)


class _Read:
    """One read of one wallet on one chain: its block, the calls it makes, the HTTP requests it counts."""

    def __init__(self, provider: RpcProvider, client: JsonRpcClient, chain: Chain, wallet: str):
        self.provider = provider
        self.client = client
        self.chain = chain
        self.wallet = wallet
        self.block = 0
        self.requests = 0
        self.multicall = False

    def start(self) -> None:
        """Read the block every call will name, and, the first time, check the chain id and look for Multicall3."""
        p, chain_id = self.provider, self.chain.chain_id
        with p._lock:
            verify = chain_id not in p._verified_chains
            has_multicall = p._has_multicall.get(chain_id)
        calls: list[tuple[str, list[Any]]] = [("eth_blockNumber", [])]
        if verify:
            calls.append(("eth_chainId", []))
        if has_multicall is None:
            calls.append(("eth_getCode", [self.chain.multicall3, "latest"]))
        outcomes = self._batch(calls)
        for outcome in outcomes:
            if isinstance(outcome, ProviderError):
                raise outcome
        self.block = self._quantity(outcomes[0], "eth_blockNumber")
        if verify:
            served = self._quantity(outcomes[1], "eth_chainId")
            if served != chain_id:
                raise PermanentProviderError(
                    "provider_misconfigured",
                    f"chain {chain_id}: the endpoint RPC_URLS gives for it serves chain {served}")
        if has_multicall is None:
            code = outcomes[-1]
            if not isinstance(code, str) or not code.startswith("0x"):
                raise self._bad("eth_getCode")
            has_multicall = len(code) > 2
        with p._lock:
            p._verified_chains.add(chain_id)
            p._has_multicall[chain_id] = has_multicall
        self.multicall = has_multicall

    def calls(self, calls: list[tuple[str, Any]]) -> list[bytes | _Failed]:
        """The return data (or failure) of each ``(target, calldata)`` at the read's block.  A call
        ``("native", wallet)`` stands for the native balance of ``wallet``, answered as one 32-byte word."""
        if self.multicall:
            return self._multicall(calls)
        return self._plain(calls)

    def token_infos(self, tokens: list[str]) -> dict[str, TokenInfo]:
        """The metadata of ``tokens``: cached, or read in one round (and cached when complete)."""
        p, chain_id = self.provider, self.chain.chain_id
        infos = {t: info for (_, t), info in p._info.get_many((chain_id, t) for t in tokens).items()}
        unseen = [t for t in tokens if t not in infos]
        outcomes = self.calls([(t, selector) for t in unseen for selector in (abi.SYMBOL, abi.NAME, abi.DECIMALS)])
        learned = {t: _token_info(*outcomes[3 * i:3 * i + 3]) for i, t in enumerate(unseen)}
        p._info.put_many({(chain_id, t): info for t, info in learned.items()},
                         ttl_s={(chain_id, t): INCOMPLETE_INFO_TTL_S if info.problems else float("inf")
                                for t, info in learned.items()})
        return infos | learned

    def _multicall(self, calls: list[tuple[str, Any]]) -> list[bytes | _Failed]:
        multicall3 = self.chain.multicall3
        inner = [(multicall3, abi.address_call(abi.GET_ETH_BALANCE, data)) if target == "native" else (target, data)
                 for target, data in calls]
        chunk = self.provider._chunk
        chunks = [inner[i:i + chunk] for i in range(0, len(inner), chunk)]
        results: list[bytes | _Failed] = []
        for part, outcome in zip(chunks, self._batch([self._aggregate3(part) for part in chunks])):
            results += self._chunk_results(part, outcome)
        return results

    def _aggregate3(self, calls: list[tuple[str, bytes]]) -> tuple[str, list[Any]]:
        call = {"to": self.chain.multicall3, "data": "0x" + abi.encode_aggregate3(calls).hex(),
                "gas": hex(self.provider._gas)}
        return "eth_call", [call, hex(self.block)]

    def _chunk_results(self, calls: list[tuple[str, bytes]], outcome: Any) -> list[bytes | _Failed]:
        """Each call's result from one ``aggregate3`` outcome; a chunk that failed whole is split and sent again."""
        if isinstance(outcome, TransientProviderError):
            raise outcome
        failure: _Failed
        if isinstance(outcome, ProviderError):
            failure = _Failed("reverted", _quote(str(outcome)))
        else:
            try:
                return [data if ok else _Failed("reverted", "the call reverted")
                        for ok, data in abi.decode_aggregate3(_hex_bytes(outcome), len(calls))]
            except BadAnswer as exc:
                failure = _Failed("bad_answer", str(exc))
        if len(calls) == 1:
            return [failure]
        # One call may have taken the whole chunk down (gas, a huge answer): halves find it.
        halves = [calls[:len(calls) // 2], calls[len(calls) // 2:]]
        results: list[bytes | _Failed] = []
        for half, again in zip(halves, self._batch([self._aggregate3(half) for half in halves])):
            results += self._chunk_results(half, again)
        return results

    def _plain(self, calls: list[tuple[str, Any]]) -> list[bytes | _Failed]:
        tag = hex(self.block)
        rpc_calls: list[tuple[str, list[Any]]] = [
            ("eth_getBalance", [data, tag]) if target == "native"
            else ("eth_call", [{"to": target, "data": "0x" + data.hex()}, tag])
            for target, data in calls
        ]
        results: list[bytes | _Failed] = []
        for (target, _), outcome in zip(calls, self._batch(rpc_calls)):
            if isinstance(outcome, TransientProviderError):
                raise outcome
            if isinstance(outcome, ProviderError):
                results.append(_Failed("reverted", _quote(str(outcome))))
            elif target == "native":
                results.append(self._quantity(outcome, "eth_getBalance").to_bytes(abi.WORD, "big"))
            else:
                try:
                    results.append(_hex_bytes(outcome))
                except BadAnswer as exc:
                    results.append(_Failed("bad_answer", str(exc)))
        return results

    def _batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        if not calls:
            return []
        self.requests += -(-len(calls) // self.provider._max_batch)
        return self.client.batch(calls)

    def _quantity(self, value: Any, method: str) -> int:
        try:
            number = parse_quantity(value)
        except ValueError:
            raise self._bad(method) from None
        if number >= 2**256:
            raise self._bad(method)
        return number

    def _bad(self, method: str) -> PermanentProviderError:
        return PermanentProviderError("provider_bad_response",
                                      f"chain {self.chain.chain_id}: bad answer from the rpc provider to {method}")


def _token_info(symbol: bytes | _Failed, name: bytes | _Failed, decimals: bytes | _Failed) -> TokenInfo:
    """A token's metadata from the outcomes of its three calls."""
    problems: list[tuple[str, str]] = []

    def text(outcome: bytes | _Failed, what: str, limit: int) -> str:
        if isinstance(outcome, _Failed) or not outcome:
            return ""  # symbol() and name() are optional in ERC-20: a revert or no answer means none
        try:
            return abi.decode_text(outcome, limit)
        except BadAnswer as exc:
            problems.append(("bad_metadata", f"{what}(): {exc}"))
            return ""

    symbol_text = text(symbol, "symbol", MAX_SYMBOL_LEN)
    name_text = text(name, "name", MAX_NAME_LEN) or symbol_text
    known_decimals: int | None = None
    if isinstance(decimals, _Failed):
        problems.append(("no_decimals", f"decimals(): {decimals.message}; the balance is never valued"))
    else:
        try:
            known_decimals = abi.decode_decimals(decimals)
        except BadAnswer as exc:
            problems.append(("no_decimals", f"decimals(): {exc}; the balance is never valued"))
    return TokenInfo(symbol=symbol_text, name=name_text, decimals=known_decimals, problems=tuple(problems))


def _hex_bytes(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) % 2:
        raise BadAnswer("the answer is not 0x-prefixed hex data")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise BadAnswer("the answer is not 0x-prefixed hex data") from None


def _quote(text: str) -> str:
    return clean_text(text, _MAX_ERROR_TEXT)
