"""The ``simulated`` provider: the embedded default, so the system runs with no API key.

Holdings are deterministic per wallet and chain (the same wallet always holds
the same tokens), drawn from realistic token lists per chain.  Token addresses
are derived from the chain and symbol, so they are clearly not real contracts,
and everything this provider returns is labelled ``simulated`` in storage and
on the dashboard.  Latency and a fraction of transient failures are
configurable, for demos, tests and benchmarks.  A read stands for one HTTP
request, retried within the attempt as a real provider's transport retries
its requests (``retry``), so the simulation fails no more often than a real
provider would.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Sequence
from decimal import Decimal

from .base import NATIVE_TOKEN, ChainRead, TokenBalance, TransientProviderError
from .chains import get_chain
from .retrying import RetryPolicy, call_with_retries, current_deadline

#: USD per whole token, by symbol: round, plausible figures for the simulation.
SIMULATED_PRICES: dict[str, Decimal] = {k: Decimal(v) for k, v in {
    "ETH": "3000.00", "WETH": "3000.00", "stETH": "2995.50", "BNB": "600.00", "WBNB": "600.00",
    "POL": "0.40", "WPOL": "0.40", "AVAX": "30.00", "WAVAX": "30.00",
    "USDC": "1.00", "USDT": "1.00", "DAI": "1.00", "BUSD": "1.00",
    "WBTC": "65000.00", "cbBTC": "65000.00", "LINK": "15.00", "UNI": "8.00", "AAVE": "150.00",
    "MKR": "2000.00", "LDO": "2.00", "SHIB": "0.000018", "PEPE": "0.0000095", "OP": "2.00",
    "VELO": "0.10", "SNX": "2.50", "CAKE": "2.00", "QUICK": "0.05", "AERO": "1.00",
    "DEGEN": "0.01", "BRETT": "0.10", "ARB": "0.80", "GMX": "25.00", "MAGIC": "0.50", "JOE": "0.40",
}.items()}

#: (symbol, name, decimals).  Every chain draws from its own list, then from ``_COMMON``.
_TOKENS_BY_CHAIN: dict[int, list[tuple[str, str, int]]] = {
    1: [("USDC", "USD Coin", 6), ("USDT", "Tether USD", 6), ("WETH", "Wrapped Ether", 18),
        ("DAI", "Dai Stablecoin", 18), ("WBTC", "Wrapped BTC", 8), ("LINK", "ChainLink Token", 18),
        ("UNI", "Uniswap", 18), ("AAVE", "Aave Token", 18), ("MKR", "Maker", 18), ("LDO", "Lido DAO Token", 18),
        ("stETH", "Liquid staked Ether 2.0", 18), ("SHIB", "SHIBA INU", 18), ("PEPE", "Pepe", 18)],
    10: [("USDC", "USD Coin", 6), ("OP", "Optimism", 18), ("WETH", "Wrapped Ether", 18),
         ("DAI", "Dai Stablecoin", 18), ("VELO", "Velodrome", 18), ("SNX", "Synthetix Network Token", 18)],
    56: [("USDT", "Tether USD", 18), ("WBNB", "Wrapped BNB", 18), ("CAKE", "PancakeSwap Token", 18),
         ("BUSD", "BUSD Token", 18), ("ETH", "Binance-Peg Ethereum", 18)],
    137: [("USDC", "USD Coin", 6), ("WETH", "Wrapped Ether", 18), ("WPOL", "Wrapped POL", 18),
          ("AAVE", "Aave Token", 18), ("QUICK", "QuickSwap", 18), ("DAI", "Dai Stablecoin", 18)],
    8453: [("USDC", "USD Coin", 6), ("WETH", "Wrapped Ether", 18), ("AERO", "Aerodrome", 18),
           ("cbBTC", "Coinbase Wrapped BTC", 8), ("DEGEN", "Degen", 18), ("BRETT", "Brett", 18)],
    42161: [("USDC", "USD Coin", 6), ("ARB", "Arbitrum", 18), ("WETH", "Wrapped Ether", 18),
            ("GMX", "GMX", 18), ("USDT", "Tether USD", 6), ("MAGIC", "MAGIC", 18)],
    43114: [("USDC", "USD Coin", 6), ("WAVAX", "Wrapped AVAX", 18), ("JOE", "JoeToken", 18)],
}
_COMMON = [("USDC", "USD Coin", 6), ("WETH", "Wrapped Ether", 18), ("DAI", "Dai Stablecoin", 18)]
#: A token nobody prices: a wallet sometimes holds it, and it must show as unpriced.
UNPRICED_TOKEN = ("AIRDROP", "Unclaimed Airdrop Token", 18)


def token_address(chain_id: int, symbol: str) -> str:
    """The simulated contract address of ``symbol`` on ``chain_id`` (derived, not a real contract)."""
    return "0x" + hashlib.sha256(f"simulated:{chain_id}:{symbol}".encode()).hexdigest()[:40]


def token_list(chain_id: int, size: int) -> list[tuple[str, str, int]]:
    """``size`` tokens for ``chain_id``: the chain's own list, then the common one, then numbered extras."""
    tokens = list(dict.fromkeys(_TOKENS_BY_CHAIN.get(chain_id, []) + _COMMON))
    tokens += [(f"SIM{n}", f"Simulated Token {n}", 18) for n in range(max(0, size - len(tokens)))]
    return tokens[:size]


class SimulatedProvider:
    """Deterministic balances per (wallet, chain).

    Parameters:
      latency_ms(int): time each ``read_chain`` call takes. Default 100.
      failure_rate(float): fraction of calls that raise ``TransientProviderError``. Default 0.
      tokens_per_chain(int): at most this many ERC-20 tokens held per chain. Default 12.
      seed(int | None): seed of the failure draws, for a reproducible sequence. Default None (random).
      retry(RetryPolicy): how a failed call is tried again within the attempt. Default: not at all.
    """

    name = "simulated"

    def __init__(self, *, latency_ms: int = 100, failure_rate: float = 0.0, tokens_per_chain: int = 12,
                 seed: int | None = None, retry: RetryPolicy = RetryPolicy(tries=1)):
        self.latency_s = latency_ms / 1000
        self.failure_rate = failure_rate
        self.tokens_per_chain = tokens_per_chain
        # Failures are random per call (unlike balances), so a retry can succeed.
        self._chaos = random.Random(seed)
        self._retry = retry

    def read_chain(self, chain_id: int, wallet: str, tokens: Sequence[str] = ()) -> ChainRead:
        """The wallet's simulated holdings (``tokens`` are ignored: the simulation holds what it holds)."""
        call_with_retries(lambda: self._request(chain_id), policy=self._retry, deadline=current_deadline())

        seed = hashlib.sha256(f"{wallet.lower()}:{chain_id}".encode()).digest()
        rng = random.Random(seed)
        chain = get_chain(chain_id)
        balances = [TokenBalance(chain_id, NATIVE_TOKEN, chain.native_symbol, chain.native_name,
                                 chain.native_decimals, _amount(rng, chain.native_symbol, chain.native_decimals))]
        candidates = token_list(chain_id, self.tokens_per_chain)
        held = rng.sample(candidates, k=rng.randint(min(2, len(candidates)), len(candidates)))
        if rng.random() < 0.3:
            held.append(UNPRICED_TOKEN)
        for symbol, name, decimals in held:
            balances.append(TokenBalance(chain_id, token_address(chain_id, symbol), symbol, name, decimals,
                                         _amount(rng, symbol, decimals)))
        return ChainRead(chain_id=chain_id, balances=balances, block_number=None)

    def _request(self, chain_id: int) -> None:
        """The simulated request: its latency, and sometimes a transient failure."""
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.failure_rate and self._chaos.random() < self.failure_rate:
            raise TransientProviderError("provider_unavailable", f"chain {chain_id}: simulated transient failure")


def _amount(rng: random.Random, symbol: str, decimals: int) -> int:
    """A raw balance worth between $1 and $25,000 at the simulated price ($1 a token if unpriced)."""
    usd = Decimal(rng.randint(100, 2_500_000)) / 100
    whole_tokens = usd / SIMULATED_PRICES.get(symbol, Decimal(1))
    return max(1, int(whole_tokens.scaleb(decimals))) + rng.randrange(10**max(0, decimals - 6) or 1)
