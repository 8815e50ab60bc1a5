"""The pure parts of ``./dev`` (devtasks): URLs taken apart and masked, the pytest arguments, the Procfile's names."""

from __future__ import annotations

import pytest

from devtasks import up
from devtasks.__main__ import DEFAULT_WORKERS, pytest_args
from devtasks.common import DevError
from devtasks.urls import parse


def test_a_url_is_taken_apart_as_libpq_reads_it_and_its_password_never_shown():
    url = parse("DATABASE_URL", "postgresql://ana:s3cr%40t@127.0.0.1:5441/portfolio_sync", 5432)
    assert (url.host, url.port, url.user, url.password, url.database) == ("127.0.0.1", 5441, "ana", "s3cr@t",
                                                                          "portfolio_sync")
    assert url.show == "postgresql://ana:****@127.0.0.1:5441/portfolio_sync"
    query = parse("DATABASE_URL", "postgresql:///db?host=/run/pg&port=5433&password=hunter2", 5432)
    assert (query.host, query.port, query.password) == ("/run/pg", 5433, "hunter2")
    assert "hunter2" not in query.show
    assert parse("REDIS_URL", "redis://127.0.0.1/0", 6379).port == 6379


def test_a_url_that_cannot_be_parsed_is_a_clear_error_without_its_password():
    with pytest.raises(DevError, match="cannot parse REDIS_URL") as caught:
        parse("REDIS_URL", "redis://:topsecret@127.0.0.1:notaport/0", 6379)
    assert "topsecret" not in str(caught.value)


@pytest.mark.parametrize(("given", "expected"), [
    ([], ["-n", str(DEFAULT_WORKERS)]),
    (["-k", "demo", "-x"], ["-n", str(DEFAULT_WORKERS), "-k", "demo", "-x"]),
    (["-n", "0"], ["-n", "0"]),
    (["-n0", "tests/unit"], ["-n0", "tests/unit"]),
    (["--numprocesses=4"], ["--numprocesses=4"]),
    (["-p", "no:xdist"], ["-p", "no:xdist"]),
])
def test_dev_test_runs_parallel_unless_the_arguments_choose(given, expected):
    assert pytest_args(given) == expected
    assert 2 <= DEFAULT_WORKERS <= 4


def test_the_procfile_names_are_read_in_order(tmp_path, monkeypatch):
    (tmp_path / "Procfile").write_text("release: python -m storage.migrate\n# a comment\n"
                                       "worker: dramatiq actors\nweb: gunicorn app --bind :${PORT}\nbroken:\n")
    monkeypatch.setattr(up, "ROOT", tmp_path)
    assert up.procfile_names() == ["release", "worker", "web"]
