"""The tokens a balance read considers on one chain: configured ∪ listed ∪ discovered.

``RPC_TOKENS`` names tokens by hand, the token lists name the known tokens of
each chain, and the wallet's own ``Transfer`` logs name every token it ever
received (see :mod:`chaindata.tokens.discovery`).  The union is passed to
the provider's ``read_chain`` as ``tokens``; a token the wallet no longer
holds reads as zero and is not stored.

Discovery keeps a cursor per wallet and chain (where the scan stopped, and the
tokens found), so a later sync asks the node only for the new blocks.  The
cursor lives wherever the ``load``/``save`` callables put it (PostgreSQL in
the worker, see :mod:`storage.discovery`).  A scan the attempt's deadline
cut short saves how far it got.

A discovery that fails (node down, rate limited) does not fail the chain: the
read goes on with the tokens found by earlier scans, and :class:`Candidates`
says what went wrong, for the chain's results.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence

from chaindata.base import ProviderError

from .discovery import Cursor, TransferLogScanner
from .lists import TokenLists

_log = logging.getLogger(__name__)

LoadCursor = Callable[[str, int], "Cursor | None"]
SaveCursor = Callable[[str, int, Cursor], None]


@dataclasses.dataclass(frozen=True)
class Candidates:
    """The candidate tokens of one read, and what discovery did to find them."""

    addresses: tuple[str, ...]  # lower case, without duplicates: configured, then listed, then discovered
    discovered: int = 0  # tokens known from Transfer logs (all scans so far)
    new: int = 0  # of which found by this scan
    scanned_to_block: int | None = None
    requests: int = 0  # HTTP requests discovery made
    error: ProviderError | None = None  # why discovery failed this time (the read went on without it)


class CandidateTokens:
    """Builds the :class:`Candidates` of each read; safe to share between threads.

    :param configured: ``RPC_TOKENS``, per chain.
    :param lists: the token lists.
    :param scanners: the Transfer-log scanner of each chain where discovery runs (none: no discovery).
    :param start_blocks: the first block a first scan reads, per chain (absent: 0, the whole history).
    :param load: the stored cursor of ``(wallet, chain_id)``, or ``None``.
    :param save: store the cursor of ``(wallet, chain_id)``.
    """

    def __init__(self, *, configured: Mapping[int, Sequence[str]], lists: TokenLists,
                 scanners: Mapping[int, TransferLogScanner], start_blocks: Mapping[int, int],
                 load: LoadCursor, save: SaveCursor):
        self._configured = {c: tuple(a.lower() for a in addresses) for c, addresses in configured.items()}
        self._lists = lists
        self._scanners = dict(scanners)
        self._start_blocks = dict(start_blocks)
        self._load = load
        self._save = save

    def for_read(self, chain_id: int, wallet: str) -> Candidates:
        """The candidates for reading ``wallet`` (lower case) on ``chain_id``, scanning new blocks first."""
        configured = self._configured.get(chain_id, ())
        listed = self._lists.index().addresses(chain_id)
        scanner = self._scanners.get(chain_id)
        if scanner is None:
            return Candidates(addresses=_union(configured, listed))
        previous = self._load(wallet, chain_id)
        try:
            scan = scanner.scan(wallet, start_block=self._start_blocks.get(chain_id, 0), previous=previous)
        except ProviderError as exc:
            _log.warning("chain %d: token discovery failed (%s); reading the tokens found before.", chain_id, exc.code)
            known = sorted(previous.tokens) if previous else []
            return Candidates(addresses=_union(configured, listed, known), discovered=len(known),
                              scanned_to_block=previous.to_block if previous else None, error=exc)
        self._save(wallet, chain_id, scan.cursor)  # an incomplete scan's too: the next one goes on from it
        if not scan.complete:
            _log.info("chain %d: token discovery stopped at the attempt's deadline, at block %d; the next "
                      "sync goes on from there.", chain_id, scan.cursor.to_block)
        return Candidates(addresses=_union(configured, listed, sorted(scan.cursor.tokens)),
                          discovered=len(scan.cursor.tokens), new=len(scan.new_tokens),
                          scanned_to_block=scan.cursor.to_block, requests=scan.requests)


def _union(*groups: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(address for group in groups for address in group))
