"""The contract calls the providers make, ABI-encoded, and strict decoders of what contracts answer.

Any contract can answer anything, so every decoder here checks the answer's
exact shape and raises :class:`BadAnswer` (a ``ValueError``) saying what is
wrong: a ``uint256`` is exactly one 32-byte word, a ``string`` is a well-formed
ABI string of valid UTF-8 within :data:`MAX_TEXT_BYTES`, and so on.  Text is
then cleaned of control and format characters (NUL, which PostgreSQL refuses,
among them) and cut to a bounded length.
"""

from __future__ import annotations

import unicodedata

from eth_abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector

#: An ABI word, in bytes.
WORD = 32
#: Longest raw ``symbol()`` / ``name()`` answer read as text; anything longer is no real token's metadata.
MAX_TEXT_BYTES = 1024
MAX_SYMBOL_LEN = 32
MAX_NAME_LEN = 64

BALANCE_OF = function_signature_to_4byte_selector("balanceOf(address)")
SYMBOL = function_signature_to_4byte_selector("symbol()")
NAME = function_signature_to_4byte_selector("name()")
DECIMALS = function_signature_to_4byte_selector("decimals()")
GET_ETH_BALANCE = function_signature_to_4byte_selector("getEthBalance(address)")
AGGREGATE3 = function_signature_to_4byte_selector("aggregate3((address,bool,bytes)[])")


class BadAnswer(ValueError):
    """A contract's answer does not have the shape its function promises."""


def address_call(selector: bytes, address: str) -> bytes:
    """Calldata of a function taking one ``address``, e.g. ``balanceOf(wallet)``."""
    return selector + encode(["address"], [address])


def decode_uint256(data: bytes) -> int:
    """The ``uint256`` a call returned: exactly one word."""
    if len(data) != WORD:
        raise BadAnswer(f"expected one 32-byte word, got {len(data)} bytes")
    return int.from_bytes(data, "big")


def decode_decimals(data: bytes) -> int:
    """The ``decimals()`` a token returned: a ``uint8`` (some old tokens declare it ``uint256``), 0 to 255."""
    value = decode_uint256(data)
    if value > 255:
        raise BadAnswer(f"decimals {str(value)[:20]} is out of 0..255")
    return value


def decode_text(data: bytes, limit: int) -> str:
    """The text a ``symbol()`` or ``name()`` returned as ABI ``string`` or, as in early tokens such as MKR,
    NUL-padded ``bytes32``; cleaned and cut to ``limit`` characters."""
    if len(data) > MAX_TEXT_BYTES + 2 * WORD:
        raise BadAnswer(f"{len(data)} bytes is too long for a token's metadata")
    if len(data) == WORD:
        # A dynamic string takes at least two words (offset, length), so a single word is a bytes32.
        raw = data.rstrip(b"\0")
    else:
        try:
            (raw,) = decode(["bytes"], data, strict=False)
        except (DecodingError, OverflowError) as exc:
            raise BadAnswer(f"not an ABI string ({type(exc).__name__})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadAnswer("the text is not UTF-8") from None
    return clean_text(text, limit)


def clean_text(text: str, limit: int) -> str:
    """``text`` without control or format characters (NUL, which PostgreSQL refuses, among them), cut to ``limit``."""
    kept = "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))
    return kept.strip()[:limit]


def encode_aggregate3(calls: list[tuple[str, bytes]]) -> bytes:
    """Calldata of Multicall3's ``aggregate3`` running each ``(target, calldata)`` with ``allowFailure: true``."""
    return AGGREGATE3 + encode(["(address,bool,bytes)[]"], [[(target, True, data) for target, data in calls]])


def decode_aggregate3(data: bytes, expected: int) -> list[tuple[bool, bytes]]:
    """The ``(success, returnData)`` of each call of an ``aggregate3``; :class:`BadAnswer` unless there are
    exactly ``expected`` of them."""
    try:
        (results,) = decode(["(bool,bytes)[]"], data)
    except (DecodingError, OverflowError) as exc:
        raise BadAnswer(f"not an aggregate3 result ({type(exc).__name__})") from None
    if len(results) != expected:
        raise BadAnswer(f"aggregate3 answered {len(results)} results for {expected} calls")
    return [(bool(ok), bytes(ret)) for ok, ret in results]
