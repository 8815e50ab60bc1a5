"""Chains from configuration, EIP-55 addresses, and the strict decoding of what contracts answer."""

from __future__ import annotations

import json

import pytest
from eth_abi import encode
from eth_utils import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

import settings
from actors.validation import InvalidSyncRequest, validate_wallet
from chaindata.chains import UnknownChainError, get_chain
from settings.chains import DEFAULT_CHAINS, MULTICALL3_ADDRESS, parse_chain_metadata
from chaindata.evm import abi
from settings.addresses import InvalidAddress, normalize_address

FANTOM = {"250": {"name": "Fantom", "native_symbol": "FTM", "native_name": "Fantom", "native_decimals": 18,
                  "price_platform": "fantom", "native_price_id": "fantom"}}


def test_the_default_chains_and_anvil_ship_with_their_metadata():
    cfg = settings.load({})
    for chain_id in (*cfg.sync.chains, 31337):
        chain = get_chain(chain_id, cfg.sync.chain_table)
        assert chain.name and chain.native_symbol and chain.multicall3 == MULTICALL3_ADDRESS
    assert (get_chain(137).native_symbol, get_chain(137).price_platform) == ("POL", "polygon-pos")
    assert get_chain(31337).price_platform is None  # a local node has no market prices


def test_an_unknown_chain_is_refused_not_given_ether():
    with pytest.raises(UnknownChainError) as caught:
        get_chain(250)
    assert caught.value.code == "unsupported_chain" and "CHAIN_METADATA" in str(caught.value)
    with pytest.raises(settings.ConfigError) as excinfo:
        settings.load({"SYNC_CHAINS": "1,250"})
    assert "SYNC_CHAINS" in str(excinfo.value) and "250" in str(excinfo.value)


def test_chain_metadata_adds_chains_and_changes_defaults():
    changed = {**FANTOM, "1": {"multicall3": "0x" + "AB" * 20, "price_platform": None}}
    cfg = settings.load({"SYNC_CHAINS": "1,250", "CHAIN_METADATA": json.dumps(changed)})
    fantom = get_chain(250, cfg.sync.chain_table)
    assert (fantom.native_symbol, fantom.native_decimals, fantom.multicall3) == ("FTM", 18, MULTICALL3_ADDRESS)
    ethereum = get_chain(1, cfg.sync.chain_table)
    assert (ethereum.name, ethereum.multicall3, ethereum.price_platform) == ("Ethereum", "0x" + "ab" * 20, None)
    assert DEFAULT_CHAINS[1].price_platform == "ethereum"  # the defaults themselves are untouched


@pytest.mark.parametrize("metadata, named", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"fantom": {}}', "'fantom' is not a chain id"),
    ('{"250": {"name": "Fantom"}}', "chain 250 is not a default chain, so it needs native_symbol"),
    ('{"1": {"native_decimals": 300}}', "chain 1: native_decimals must be an integer from 0 to 255"),
    ('{"1": {"native_decimals": true}}', "chain 1: native_decimals must be an integer"),
    ('{"1": {"multicall3": "0x1234"}}', "chain 1: multicall3 must be a 0x-prefixed 20-byte address"),
    ('{"1": {"name": "Eth\\u0000"}}', "chain 1: name must be 1 to 64 printable characters"),
    ('{"1": {"price_platform": "Not An Id"}}', "chain 1: price_platform must be null or a price API id"),
    ('{"1": {"colour": "blue"}}', "chain 1: unknown field(s) colour"),
])
def test_bad_chain_metadata_names_the_variable(metadata, named):
    with pytest.raises(settings.ConfigError) as excinfo:
        settings.load({"CHAIN_METADATA": metadata})
    assert str(excinfo.value).startswith("CHAIN_METADATA ") and named in str(excinfo.value)


@pytest.mark.parametrize("env, named", [
    ({"RPC_MULTICALL_BATCH": "0"}, "RPC_MULTICALL_BATCH must be between 1 and 10000"),
    ({"RPC_MULTICALL_GAS": "5000"}, "RPC_MULTICALL_GAS must be between 1000000"),
    ({"RPC_TOKENS": "1=0xcA11bde05977b3631167028862bE2a173976Ca11"}, "wrong EIP-55 checksum"),
])
def test_bad_rpc_settings_name_the_variable(env, named):
    with pytest.raises(settings.ConfigError) as excinfo:
        settings.load(env)
    assert named in str(excinfo.value)


def test_rpc_tokens_accept_checksummed_and_single_case_addresses():
    cfg = settings.load({"RPC_TOKENS": "1=0xcA11bde05977b3631167028862bE2a173976CA11 0x" + "AB" * 20})
    assert cfg.rpc.tokens[1] == (MULTICALL3_ADDRESS, "0x" + "ab" * 20)
    assert (cfg.rpc.multicall_batch, cfg.rpc.multicall_gas) == (300, 20_000_000)


@given(st.binary(min_size=20, max_size=20))
def test_eip55_addresses(raw):
    lower = "0x" + raw.hex()
    checksummed = to_checksum_address(lower)
    for accepted in (lower, "0x" + lower[2:].upper(), checksummed):
        assert normalize_address(accepted) == lower == validate_wallet(accepted)
    # Flip the case of one letter of a checksummed address: a typo EIP-55 exists to catch.
    letters = [i for i, ch in enumerate(checksummed) if i > 1 and ch.isalpha()]
    if len(letters) >= 2:
        i = letters[0]
        typo = checksummed[:i] + checksummed[i].swapcase() + checksummed[i + 1:]
        if typo[2:] not in (typo[2:].lower(), typo[2:].upper()):
            with pytest.raises(InvalidAddress, match="EIP-55"):
                normalize_address(typo)
            with pytest.raises(InvalidSyncRequest, match="wallet_address has mixed case but a wrong EIP-55"):
                validate_wallet(typo)


def test_uint256_answers_must_be_exactly_one_word():
    assert abi.decode_uint256(encode(["uint256"], [2**256 - 1])) == 2**256 - 1
    for wrong in (b"", b"\x01" * 31, b"\x00" * 64):
        with pytest.raises(abi.BadAnswer):
            abi.decode_uint256(wrong)
    with pytest.raises(abi.BadAnswer, match="out of 0..255"):
        abi.decode_decimals(encode(["uint256"], [256]))


def test_text_answers_string_or_bytes32_cleaned_and_bounded():
    assert abi.decode_text(encode(["string"], ["USD Coin"]), 64) == "USD Coin"
    assert abi.decode_text(b"MKR".ljust(32, b"\0"), 32) == "MKR"
    assert abi.decode_text(encode(["string"], ["A\x00B\x1b[31mC\u200bD"]), 32) == "AB[31mCD"
    assert abi.decode_text(encode(["string"], ["Z" * 500]), 32) == "Z" * 32
    for hostile in (encode(["bytes"], [b"\xff\xfe"]), b"\xc3".ljust(32, b"\0"),  # not UTF-8
                    encode(["string"], ["Y" * 5000]),  # far longer than any token's metadata
                    (32).to_bytes(32, "big") + (2**255).to_bytes(32, "big"),  # a length past the answer
                    b"\x00" * 40):  # neither a word nor a string
        with pytest.raises(abi.BadAnswer):
            abi.decode_text(hostile, 32)


def test_aggregate3_results_must_match_the_calls():
    calls = [("0x" + "11" * 20, b"\x01\x02"), ("0x" + "22" * 20, b"")]
    assert abi.encode_aggregate3(calls)[:4] == bytes.fromhex("82ad56cb")  # aggregate3((address,bool,bytes)[])
    answer = encode(["(bool,bytes)[]"], [[(True, b"\x05"), (False, b"")]])
    assert abi.decode_aggregate3(answer, 2) == [(True, b"\x05"), (False, b"")]
    with pytest.raises(abi.BadAnswer, match="2 results for 3 calls"):
        abi.decode_aggregate3(answer, 3)
    with pytest.raises(abi.BadAnswer):
        abi.decode_aggregate3((32).to_bytes(32, "big") + (2**64).to_bytes(32, "big"), 2)


def test_parse_chain_metadata_keeps_the_base_when_empty():
    assert parse_chain_metadata("  ") == dict(DEFAULT_CHAINS)
