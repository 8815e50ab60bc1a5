"""REDIS_URL / DATABASE_URL taken apart, with any password masked for printing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from .common import DevError


@dataclass(frozen=True)
class ServerUrl:
    scheme: str
    host: str
    port: int
    user: str
    password: str
    database: str
    show: str  # the URL, password masked: the only form ever printed


def mask(url: str) -> str:
    shown = re.sub(r"(://[^:/@?#]*:)[^@/?#]*@", r"\1****@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1****", shown)


def parse(name: str, url: str, default_port: int) -> ServerUrl:
    """Parse a URL as libpq and redis-py read it: query parameters (``host=``, ``port=``...) win."""
    show = mask(url)
    try:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return ServerUrl(
            scheme=parts.scheme,
            host=query.get("host") or parts.hostname or "",
            port=int(query.get("port") or parts.port or default_port),
            user=query.get("user") or unquote(parts.username or ""),
            password=query.get("password") or unquote(parts.password or ""),
            database=query.get("dbname") or unquote(parts.path.lstrip("/")),
            show=show,
        )
    except ValueError:
        raise DevError(f"cannot parse {name}={show}") from None
