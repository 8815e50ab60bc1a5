"""The server-side tables' page comes from the browser: whatever it asks, a callback reads a bounded page."""

from __future__ import annotations

import pandas as pd
import pytest

from dashboard import app as _app  # noqa: F401  (registers the pages)
from dashboard.pages import deadletters as deadletters_page
from dashboard.pages import operations as operations_page


class Recorder:
    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def __call__(self, *args, limit, offset, **kwargs):
        self.calls.append((limit, offset))
        return self.answer


@pytest.mark.parametrize("page_current, page_size", [(10 ** 12, 10 ** 9), (-5, -5), ("3", "1000"), (2.5, 1e308),
                                                     (True, True), (None, None)])
def test_a_page_asked_for_by_the_browser_is_bounded(monkeypatch, page_current, page_size):
    letters = Recorder(([], 0))
    monkeypatch.setattr(deadletters_page.deadletters, "list_dead_letters", letters)
    deadletters_page.update_list("24h", 0, 0, [], None, None, None, None, page_current, page_size)
    searched = Recorder((pd.DataFrame(), 0))
    monkeypatch.setattr(operations_page.analytics, "search_operations", searched)
    operations_page.search("24h", 0, None, None, None, None, None, page_current, page_size)

    for limit, offset in letters.calls + searched.calls:
        assert 1 <= limit <= 100 and 0 <= offset <= 10_000_000  # at most 100 rows, up to page 100,000
    assert len(letters.calls) == 1 and len(searched.calls) == 1


def test_a_search_past_the_count_limit_says_so_and_pages_up_to_it(monkeypatch):
    limit = operations_page.analytics.SEARCH_COUNT_LIMIT
    monkeypatch.setattr(operations_page.analytics, "search_operations", Recorder((pd.DataFrame(), limit + 1)))
    _rows, pages, count = operations_page.search("30d", 0, None, None, None, None, None, 0, 25)
    assert pages == limit // 25 and count.startswith(f"more than {limit:,} operations")
