"""chaindata.wire: a chain read shared through Redis comes back exactly as it was made."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chaindata import wire
from chaindata.base import ChainRead, PermanentProviderError, TokenBalance, TokenError, TransientProviderError
from chaindata.tokens.candidates import Candidates

_ADDRESS = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
_TEXT = st.text(max_size=40)
_BALANCES = st.lists(st.builds(TokenBalance, st.just(1), _ADDRESS, _TEXT, _TEXT,
                               st.one_of(st.none(), st.integers(0, 255)), st.integers(0, 2**256 - 1)), max_size=20)


@given(_BALANCES, st.one_of(st.none(), st.integers(0, 2**63)), st.lists(st.builds(TokenError, _ADDRESS, _TEXT, _TEXT),
       max_size=3), st.booleans(), st.integers(0, 100))
def test_a_read_round_trips_exactly(balances, block, errors, truncated, requests):
    read = ChainRead(1, balances, block, errors, truncated, requests)
    candidates = Candidates(addresses=tuple(b.token_address for b in balances), discovered=3, new=1,
                            scanned_to_block=block, requests=2)
    assert wire.load_read(wire.dump_read(read, candidates)) == (read, candidates)


def test_a_discovery_error_keeps_its_code_message_and_kind():
    read = ChainRead(10, [], 7)
    for error in (TransientProviderError("provider_lagging", "header not found"),
                  PermanentProviderError("provider_error", "bad answer")):
        _read, candidates = wire.load_read(wire.dump_read(read, Candidates(addresses=(), error=error)))
        assert (type(candidates.error), candidates.error.code, str(candidates.error)) == (
            type(error), error.code, str(error))
