"""Keeping secrets out of text: URL passwords, API keys, keys hidden inside provider URLs.

A variable of the spec names one of the ``secret_*`` functions below as its ``secret``: given the
parsed value, it returns the strings that must never appear in a log line, an error or the audit
trail.  :meth:`settings.Settings.redact` replaces every one of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

# The scheme starts where no scheme character precedes it: otherwise every position of a long run of
# letters would be tried as a start, each scanning to the run's end (seconds on a 100 kB error body).
_URL_USERINFO = re.compile(
    r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@")
_PASSWORD_PARAMETERS = ("password", "pass", "pwd")

#: Path segments and query values at least this long in a provider URL are treated as keys.
_KEY_LIKE = 12


def scrub_url_passwords(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ``***``."""
    return _URL_USERINFO.sub(r"\g<scheme>\g<user>:***@", text)


def scrub_url_keys(text: str) -> str:
    """``text`` (a URL, or a malformed one, or a list of them) with its password and every key-like part
    (see :func:`secret_keys_in_urls`) replaced by ``***``: what an error may quote of a provider URL."""
    text = scrub_url_passwords(text)
    for secret in sorted(secret_keys_in_urls(tuple(text.split())), key=len, reverse=True):
        if secret != "***":
            text = text.replace(secret, "***")
    return text


def redact_url(url: str) -> str:
    """``url`` with its password (user info or ``password`` query parameter) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k.lower() in _PASSWORD_PARAMETERS for k, _v in query):
        parts = parts._replace(query=urlencode(
            [(k, "***" if k.lower() in _PASSWORD_PARAMETERS else v) for k, v in query], safe="*"))
    return urlunsplit(parts)


def _url_passwords(url: str) -> set[str]:
    """The password of ``url``, as user info or as a ``password`` query parameter."""
    parts = urlsplit(url)
    found = {v for k, v in parse_qsl(parts.query) if k.lower() in _PASSWORD_PARAMETERS}
    if parts.password:
        found.add(parts.password)
    return found


def _urls(value: str | tuple[str, ...] | Mapping[int, str]) -> Iterable[str]:
    if isinstance(value, Mapping):
        return value.values()
    return (value,) if isinstance(value, str) else value


def secret_whole(value: str | tuple[str, ...]) -> set[str]:
    """The value itself (a key, a password), or each item of a list of them (tokens)."""
    return {value} if isinstance(value, str) else set(value)


def secret_url_password(value: str) -> set[str]:
    """Only the password of a server URL: its host and database names stay readable in logs."""
    return _url_passwords(value)


def secret_keys_in_urls(value: str | tuple[str, ...] | Mapping[int, str]) -> set[str]:
    """The password and every key-like part of provider URLs (one, a list, or one per chain).

    A provider's URL often carries its key in the path (``/v3/<key>``) or the query
    (``?apikey=...``): every long path segment (as written and percent-decoded, as a server may
    quote either) and query value counts as secret.
    """
    found: set[str] = set()
    for url in _urls(value):
        parts = urlsplit(url)
        found.update(_url_passwords(url))
        found.update(seg for raw in parts.path.split("/") for seg in (raw, unquote(raw)) if len(seg) >= _KEY_LIKE)
        found.update(v for _k, v in parse_qsl(parts.query) if len(v) >= _KEY_LIKE)
    return found
