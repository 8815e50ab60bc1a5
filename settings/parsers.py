"""Parsers of environment variable values: each turns a variable's text into its value.

A parser is called as ``parser(name, text)`` with the variable's name and its stripped text (its
default when unset or blank), returns the value, and raises :class:`ConfigError` naming the
variable when the text is invalid.  Bounds are attributes of the parser, so the spec states them
once, next to the variable.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit


from .addresses import InvalidAddress, normalize_address
from .chains import Chain, parse_chain_metadata
from .redaction import redact_url, scrub_url_keys


class ConfigError(ValueError):
    """A configuration variable is missing or invalid; the message names it."""


@dataclasses.dataclass(frozen=True)
class Text:
    """Any text, as given (API keys, user names)."""

    def __call__(self, name: str, text: str) -> str:
        return text


@dataclasses.dataclass(frozen=True)
class Integer:
    """A whole number between ``low`` and ``high`` (both included)."""

    low: int
    high: int

    def __call__(self, name: str, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {text!r}") from None
        if not self.low <= value <= self.high:
            raise ConfigError(f"{name} must be between {self.low} and {self.high}, got {value}")
        return value


@dataclasses.dataclass(frozen=True)
class Fraction:
    """A number between 0 and 1 (a rate); above 0 when ``positive``."""

    positive: bool = False

    def __call__(self, name: str, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name} must be a number between 0 and 1, got {text!r}") from None
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1, got {value}")
        if self.positive and value == 0:
            raise ConfigError(f"{name} must be above 0, got {value}")
        return value


@dataclasses.dataclass(frozen=True)
class PerSecond:
    """A rate in events per second, fractions allowed (0.5: one every two seconds); 0 means unlimited."""

    def __call__(self, name: str, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name} must be a number of requests per second, got {text!r}") from None
        if not 0.0 <= value <= 1_000_000:  # also refuses NaN
            raise ConfigError(f"{name} must be between 0 and 1000000, got {text!r}")
        return value


@dataclasses.dataclass(frozen=True)
class OrNone:
    """Empty text means ``None``; anything else is read by ``parser``."""

    parser: Callable[[str, str], Any]

    def __call__(self, name: str, text: str) -> Any:
        return self.parser(name, text) if text else None


@dataclasses.dataclass(frozen=True)
class Url:
    """A URL with one of ``schemes``; empty text is allowed (and kept empty) unless ``required``."""

    schemes: tuple[str, ...]
    required: bool = True

    def __call__(self, name: str, text: str) -> str:
        if not text and not self.required:
            return ""
        if urlsplit(text).scheme not in self.schemes:
            # The URL may carry a password: the message shows it redacted.
            raise ConfigError(f"{name} must be a URL starting with {' or '.join(s + '://' for s in self.schemes)}, "
                              f"got {redact_url(text)!r}")
        return text


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of ``options``, compared after folding the text to the options' case."""

    options: tuple[str, ...]
    upper: bool = False

    def __call__(self, name: str, text: str) -> str:
        value = text.upper() if self.upper else text.lower()
        if value not in self.options:
            listed = (" or ".join(self.options) if len(self.options) == 2
                      else f"one of {', '.join(self.options)}")
            raise ConfigError(f"{name} must be {listed}, got {value!r}")
        return value


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


@dataclasses.dataclass(frozen=True)
class Boolean:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``), in any case."""

    def __call__(self, name: str, text: str) -> bool:
        value = text.lower()
        if value not in _TRUE + _FALSE:
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value in _TRUE


@dataclasses.dataclass(frozen=True)
class Pattern:
    """Text matching the regular expression ``regex`` whole; ``meaning`` says what that is, for the error."""

    regex: str
    meaning: str

    def __call__(self, name: str, text: str) -> str:
        if not re.fullmatch(self.regex, text):
            raise ConfigError(f"{name} must be {self.meaning}, got {text!r}")
        return text


#: What a bind address may look like: a host name, an IPv4 or an IPv6 address (bracketed or not).
HOST = Pattern(r"[A-Za-z0-9.:\[\]_-]{1,255}", "a host name or IP address")


@dataclasses.dataclass(frozen=True)
class AbsolutePath:
    """An absolute file system path, or empty."""

    def __call__(self, name: str, text: str) -> str:
        if text and not os.path.isabs(text):
            raise ConfigError(f"{name} must be an absolute path, got {text!r}")
        return text


@dataclasses.dataclass(frozen=True)
class BasicAuthUser:
    """An HTTP basic-auth user name (or empty: no login)."""

    def __call__(self, name: str, text: str) -> str:
        if ":" in text:
            raise ConfigError(f"{name} must not contain ':' (HTTP basic auth splits on it)")
        return text


@dataclasses.dataclass(frozen=True)
class Password:
    """A password of at least ``min_length`` characters (or empty: no login)."""

    min_length: int

    def __call__(self, name: str, text: str) -> str:
        if text and len(text) < self.min_length:
            raise ConfigError(f"{name} must be at least {self.min_length} characters long")
        return text


@dataclasses.dataclass(frozen=True)
class Tokens:
    """Comma-separated bearer tokens of ``min_length`` to ``max_length`` printable characters, duplicates dropped."""

    min_length: int
    max_length: int

    def __call__(self, name: str, text: str) -> tuple[str, ...]:
        tokens = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
        for position, token in enumerate(tokens, 1):
            if (not self.min_length <= len(token) <= self.max_length or not re.fullmatch(r"[\x21-\x7e]+", token)
                    or token.startswith("Bearer")):
                # The token itself is never repeated in the message.
                raise ConfigError(f"{name}: token {position} must be {self.min_length} to {self.max_length} "
                                  f"printable characters without spaces, got {len(token)} characters")
        return tokens


@dataclasses.dataclass(frozen=True)
class HostNames:
    """Comma-separated host names a request's ``Host`` may name (any case, without a port; IPv6 with or
    without brackets; ``.example.com``: the domain and its subdomains), as lower-case names; ``*``: any."""

    def __call__(self, name: str, text: str) -> tuple[str, ...]:
        hosts = tuple(dict.fromkeys(normalize_host(h) for h in text.split(",") if h.strip()))
        for host in hosts:
            if host != "*" and not re.fullmatch(r"\.?[a-z0-9_-]+(\.[a-z0-9_-]+)*|[0-9a-f:.]+", host):
                raise ConfigError(f"{name}: {host[:80]!r} is not a host name or address")
        if not hosts:
            raise ConfigError(f"{name}: name at least one host (or * for any)")
        return hosts


def normalize_host(host: str) -> str:
    """``host`` (a name or address, IPv6 in brackets or not, no port) compared as: lower case, no brackets,
    no trailing dot."""
    return host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """``N/second``, ``N/minute`` or ``N/hour`` as ``(N, unit)``; ``off`` (or ``0``) as ``None``."""

    def __call__(self, name: str, text: str) -> tuple[int, str] | None:
        text = text.lower().replace(" ", "")
        if text in ("off", "0"):
            return None
        match = re.fullmatch(r"(\d{1,9})/(second|minute|hour)", text)
        if not match or int(match[1]) == 0:
            raise ConfigError(f"{name} must be N/second, N/minute, N/hour or off, got {text!r}")
        return int(match[1]), match[2]


def _chain_id(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        # The text may be a misplaced provider URL, its key in it.
        raise ConfigError(f"{name}: {scrub_url_keys(text)[:80]!r} is not a chain id") from None
    if not 1 <= value <= 2**53:
        raise ConfigError(f"{name}: chain id {value} is out of range")
    return value


@dataclasses.dataclass(frozen=True)
class ChainIds:
    """Comma-separated EVM chain ids, at least one, duplicates dropped."""

    def __call__(self, name: str, text: str) -> tuple[int, ...]:
        chains = tuple(dict.fromkeys(_chain_id(name, c.strip()) for c in text.split(",") if c.strip()))
        if not chains:
            raise ConfigError(f"{name} must name at least one chain id")
        return chains


def http_url(name: str, chain_id: int, text: str) -> str:
    """A chain's endpoint: an http(s) URL."""
    if urlsplit(text).scheme not in ("http", "https"):
        raise ConfigError(f"{name}: the URL of chain {chain_id} must start with http:// or https://")
    return text


def token_addresses(name: str, chain_id: int, text: str) -> tuple[str, ...]:
    """A chain's ERC-20 contracts: space-separated 0x addresses (EIP-55 checked when mixed-case), lower-cased."""
    tokens = []
    for token in text.split():
        try:
            tokens.append(normalize_address(token))
        except InvalidAddress as exc:
            raise ConfigError(f"{name}: {token[:64]!r} (chain {chain_id}) {exc}") from None
    return tuple(tokens)


def block_number(name: str, chain_id: int, text: str) -> int:
    """A chain's block number: a whole number."""
    if not (text.isascii() and text.isdigit()):  # int() refuses other digits, such as '²'
        raise ConfigError(f"{name}: the block of chain {chain_id} must be a whole number, got {text[:40]!r}")
    return int(text)


def any_text(name: str, chain_id: int, text: str) -> str:
    """A chain's value taken as given."""
    return text


@dataclasses.dataclass(frozen=True)
class PerChain:
    """``chain_id=value`` pairs separated by commas, each value read by ``value(name, chain_id, text)``."""

    value: Callable[[str, int, str], Any]

    def __call__(self, name: str, text: str) -> dict[int, Any]:
        result: dict[int, Any] = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not value.strip():
                raise ConfigError(f"{name}: expected chain_id=value, got {scrub_url_keys(item)!r}")
            chain_id = _chain_id(name, key.strip())
            result[chain_id] = self.value(name, chain_id, value.strip())
        return result


@dataclasses.dataclass(frozen=True)
class ChainMetadata:
    """JSON keyed by chain id, changing or adding to the default chains (see :mod:`settings.chains`)."""

    def __call__(self, name: str, text: str) -> Mapping[int, Chain]:
        try:
            return types.MappingProxyType(parse_chain_metadata(text))
        except ValueError as exc:
            raise ConfigError(f"{name} {exc}") from None


@dataclasses.dataclass(frozen=True)
class UrlList:
    """Space-separated URLs of the given schemes."""

    schemes: tuple[str, ...]

    def __call__(self, name: str, text: str) -> tuple[str, ...]:
        urls = tuple(text.split())
        for position, url in enumerate(urls, start=1):
            if urlsplit(url).scheme not in self.schemes:
                starts = [scheme + "://" for scheme in self.schemes]
                raise ConfigError(f"{name}: URL {position} must start with {', '.join(starts[:-1])} or "
                                  f"{starts[-1]}, got {scrub_url_keys(url)!r}")
        return urls


#: The five fields of a cron expression, with the bounds of their values.
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))


def cron_problem(text: str) -> str | None:
    """What is wrong with the cron expression ``text`` as periodiq reads it, or ``None`` if nothing.

    periodiq itself parses: what it accepts is what the scheduler runs.  It reports a bad field
    only through ``int()``'s error and takes an out-of-range value without a word (a schedule
    that would never fire), so each field is read alone, to name it, and its values are checked
    against the field's bounds.
    """
    # Imported when a cron is read, not with settings: a producer (`import actors`) reads none and
    # should not load the scheduler's library.
    import periodiq

    if text.startswith("@"):
        try:
            periodiq.cron(text)
        except KeyError:
            return "unknown schedule name"
        return None
    fields = text.split()
    if len(fields) != len(_CRON_FIELDS):
        return f"expected {len(_CRON_FIELDS)} fields, got {len(fields)}"
    for position, (label, low, high) in enumerate(_CRON_FIELDS):
        alone = " ".join(field if i == position else "*" for i, field in enumerate(fields))
        try:
            values = periodiq.cron(alone).astuple()[position]
        except ValueError:
            return f"{label} {fields[position]!r} is not *, N, N-M, */S or N-M/S (or a list of them)"
        except IndexError:  # periodiq chokes on a field with no value (the range 5-1), except day of month
            values = []
        if not values:
            return f"{label} {fields[position]!r} matches no value"
        outside = [value for value in values if not low <= value <= high]
        if outside:
            return f"{label} {outside[0]} is outside {low}-{high}"
    return None


@dataclasses.dataclass(frozen=True)
class Cron:
    """A periodiq cron expression (five fields, or a name such as ``@daily``), blanks normalised."""

    def __call__(self, name: str, text: str) -> str:
        text = " ".join(text.split())
        problem = cron_problem(text)
        if problem:
            raise ConfigError(f"{name} must be a cron expression (minute hour day-of-month month day-of-week, "
                              f"or @hourly/@daily/...): {problem}, got {text!r}")
        return text
