"""0x addresses as users and configuration write them, checked against EIP-55.

An address in one case only (all lower, all upper) carries no checksum and is
accepted as is; a mixed-case one claims an EIP-55 checksum, and a wrong
checksum means a mistyped address, so it is refused rather than lower-cased
into some other wallet.
"""

from __future__ import annotations

import re

from eth_utils import is_checksum_address

_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class InvalidAddress(ValueError):
    """Not an address, or a mixed-case address whose EIP-55 checksum is wrong; the message says which."""


def normalize_address(text: str) -> str:
    """``text`` in lower case, once it is known to be an address (see the module docstring)."""
    if not _HEX_ADDRESS.fullmatch(text):
        raise InvalidAddress("is not a 0x-prefixed 20-byte address")
    digits = text[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(text):
        raise InvalidAddress("has mixed case but a wrong EIP-55 checksum (mistyped? all lower case skips the check)")
    return text.lower()
