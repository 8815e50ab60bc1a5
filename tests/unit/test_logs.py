import io
import logging

import settings
from actors.logs import RedactingFilter


def test_log_lines_and_tracebacks_are_redacted():
    cfg = settings.load({"DATABASE_URL": "postgresql://app:pg-Secret-1@db/prod", "ALCHEMY_API_KEY": "alch-Secret-2"})
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(cfg))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("connecting to %s with %s", cfg.database.url, cfg.alchemy.api_key)
        try:
            raise RuntimeError(f"failed: https://x.example/v2/{cfg.alchemy.api_key} and {cfg.database.url}")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "connecting to postgresql://app:***@db/prod with ***" in out
    assert "RuntimeError: failed" in out
    assert "Secret" not in out
