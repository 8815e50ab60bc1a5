"""Who may open the dashboard: the login on every request, the refusal to start exposed, callbacks
only from the dashboard's own origin."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

import settings
from dashboard import access

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "analyst", "correct horse battery"


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def client(dash_app):
    server = dash_app.server
    access.set_credentials(server, USER, PASSWORD)
    try:
        yield server.test_client()
    finally:
        access.set_credentials(server, None, None)


CALLBACK = {"output": "window-note.children", "outputs": {"id": "window-note", "property": "children"},
            "inputs": [{"id": "time-range", "property": "value", "value": "24h"},
                       {"id": "refresh", "property": "n_intervals", "value": 0}],
            "changedPropIds": ["time-range.value"], "state": []}


def test_every_page_asset_and_callback_needs_the_login(client):
    for path in ("/", "/users", "/queues", "/dead-letters", "/_dash-layout", "/_dash-dependencies",
                 "/assets/style.css"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert "portfolio" not in response.get_data(as_text=True).lower()
    assert client.post("/_dash-update-component", json=CALLBACK).status_code == 401
    assert client.get("/", headers=basic(USER, "wrong password")).status_code == 401
    assert client.get("/", headers=basic("someone", PASSWORD)).status_code == 401
    assert client.get("/", headers={"Authorization": "Basic !!!notbase64"}).status_code == 401

    page = client.get("/", headers=basic(USER, PASSWORD))
    assert page.status_code == 200 and page.headers["X-Frame-Options"] == "DENY"
    answer = client.post("/_dash-update-component", json=CALLBACK, headers=basic(USER, PASSWORD))
    assert answer.status_code == 200 and "UTC" in answer.get_data(as_text=True)
    assert answer.headers["Cache-Control"] == "no-store"


def test_callbacks_only_from_the_dashboards_own_origin(client):
    headers = basic(USER, PASSWORD)
    foreign = client.post("/_dash-update-component", json=CALLBACK,
                          headers={**headers, "Origin": "https://evil.example"})
    assert foreign.status_code == 403
    cross = client.post("/_dash-update-component", json=CALLBACK, headers={**headers, "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    form = client.post("/_dash-update-component", data=json.dumps(CALLBACK), headers=headers,
                       content_type="text/plain")
    assert form.status_code == 403
    same = client.post("/_dash-update-component", json=CALLBACK, headers={**headers, "Origin": "http://localhost"})
    assert same.status_code == 200


def test_without_credentials_only_loopback_is_allowed():
    cfg = settings.load({})
    assert access.exposure_problem("127.0.0.1", cfg) is None
    assert access.exposure_problem("localhost", cfg) is None
    assert access.exposure_problem("::1", cfg) is None and access.exposure_problem("[::1]", cfg) is None
    assert "DASHBOARD_USERNAME" in access.exposure_problem("0.0.0.0", cfg)
    assert access.exposure_problem("10.1.2.3", cfg)
    assert access.exposure_problem("dashboard.example.com", cfg)
    with_login = settings.load({"DASHBOARD_USERNAME": USER, "DASHBOARD_PASSWORD": PASSWORD})
    assert access.exposure_problem("0.0.0.0", with_login) is None
    proxied = settings.load({"DASHBOARD_PROTECTED_ELSEWHERE": "true"})
    assert access.exposure_problem("0.0.0.0", proxied) is None
    assert [access.bind_host(b) for b in ("0.0.0.0:8050", "[::1]:8050", "unix:/tmp/s", "localhost")] == \
        ["0.0.0.0", "::1", None, "localhost"]


def test_dashboard_settings_are_validated_and_the_password_is_a_secret():
    with pytest.raises(settings.ConfigError, match="together"):
        settings.load({"DASHBOARD_USERNAME": USER})
    with pytest.raises(settings.ConfigError, match="12 characters"):
        settings.load({"DASHBOARD_USERNAME": USER, "DASHBOARD_PASSWORD": "short"})
    with pytest.raises(settings.ConfigError, match="DASHBOARD_PROTECTED_ELSEWHERE"):
        settings.load({"DASHBOARD_PROTECTED_ELSEWHERE": "perhaps"})
    with pytest.raises(settings.ConfigError, match="DASHBOARD_DATABASE_URL"):
        settings.load({"DASHBOARD_DATABASE_URL": "mysql://x"})
    cfg = settings.load({"DASHBOARD_USERNAME": USER, "DASHBOARD_PASSWORD": PASSWORD,
                         "DASHBOARD_DATABASE_URL": "postgresql://reader:s3cret-pw@db/portfolio"})
    assert PASSWORD not in repr(cfg) and "s3cret-pw" not in repr(cfg)
    assert cfg.redact(f"login {PASSWORD} via s3cret-pw") == "login *** via ***"


@pytest.mark.parametrize("command", [
    [sys.executable, "-c", "import dashboard.app"],
    [str(Path(sys.executable).parent / "gunicorn"), "web:application", "--bind", "0.0.0.0:0"],
])
def test_it_refuses_to_start_exposed_without_a_login(command, database):
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": database, "DASHBOARD_HOST": "0.0.0.0",
           "SYNC_NAMESPACE": "dashtest-refuse"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "not a loopback address, without a login" in result.stderr
