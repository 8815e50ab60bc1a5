import dataclasses

import periodiq
import pytest
from hypothesis import given
from hypothesis import strategies as st

import settings
from settings import parsers
from tools import readme_config


def test_defaults_run_the_system_with_no_configuration():
    cfg = settings.load({})
    assert cfg.redis.url == "redis://127.0.0.1:6379/0"
    assert cfg.database.url == "postgresql://127.0.0.1:5432/portfolio_sync"
    assert cfg.sync.provider == "simulated" and cfg.dashboard.port == 8050
    assert cfg.sync.chains == (1, 10, 137, 8453, 42161)
    assert cfg.sync.cooldown_seconds == 60 and cfg.sync.max_attempts == 3 and cfg.sync.retry_min_backoff_ms == 2000


@pytest.mark.parametrize("env, named", [
    ({"PORT": "http"}, "PORT must be an integer"),
    ({"PORT": "70000"}, "PORT must be between 1 and 65535"),
    ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must be a URL starting with redis://"),
    ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL must be a URL starting with postgresql://"),
    ({"SYNC_PROVIDER": "moralis"}, "SYNC_PROVIDER must be one of simulated, rpc, alchemy"),
    ({"SYNC_CHAINS": "1,eth"}, "SYNC_CHAINS: 'eth' is not a chain id"),
    ({"SYNC_CHAINS": " , "}, "SYNC_CHAINS must name at least one chain id"),
    ({"SYNC_CHAINS": "0"}, "SYNC_CHAINS: chain id 0 is out of range"),
    ({"SYNC_MAX_ATTEMPTS": "0"}, "SYNC_MAX_ATTEMPTS must be between 1 and 50"),
    ({"SIMULATED_FAILURE_RATE": "1.5"}, "SIMULATED_FAILURE_RATE must be between 0 and 1"),
    ({"SIMULATED_FAILURE_RATE": "often"}, "SIMULATED_FAILURE_RATE must be a number"),
    ({"SYNC_NAMESPACE": "has space"}, "SYNC_NAMESPACE must be"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be"),
    ({"SYNC_PROVIDER": "rpc", "SYNC_CHAINS": "1,10", "RPC_URLS": "1=http://127.0.0.1:8545"},
     "RPC_URLS has no endpoint for chain(s) 10"),
    ({"RPC_URLS": "1=ftp://x"}, "RPC_URLS: the URL of chain 1 must start with http"),
    ({"RPC_URLS": "mainnet"}, "RPC_URLS: expected chain_id=value"),
    ({"RPC_TOKENS": "1=0x1234"}, "RPC_TOKENS: '0x1234' (chain 1) is not a 0x-prefixed 20-byte address"),
    ({"SYNC_PROVIDER": "alchemy", "SYNC_CHAINS": "1"}, "ALCHEMY_API_KEY is required"),
    ({"SYNC_PROVIDER": "alchemy", "SYNC_CHAINS": "1", "ALCHEMY_API_KEY": "k" * 8},
     "ALCHEMY_URLS has no base URL for chain(s) 1"),
])
def test_invalid_configuration_names_the_variable(env, named):
    with pytest.raises(settings.ConfigError) as excinfo:
        settings.load(env)
    assert named in str(excinfo.value)


def test_secrets_stay_out_of_repr_and_errors():
    env = {"DATABASE_URL": "postgresql://app:pg-Secret-1@db.internal:5432/prod",
           "REDIS_URL": "redis://:redis-Secret-2@cache:6379/0",
           "ALCHEMY_API_KEY": "alchemy-Secret-3", "PRICE_API_KEY": "price-Secret-4",
           "RPC_URLS": "1=https://user:rpc-Secret-5@node.example/", "SYNC_PROVIDER": "simulated"}
    cfg = settings.load(env)
    text = repr(cfg) + cfg.redis.url_display + cfg.database.url_display
    for n, secret in enumerate(["pg-Secret-1", "redis-Secret-2", "alchemy-Secret-3", "price-Secret-4",
                                "rpc-Secret-5"], 1):
        assert secret not in text
    leaked = ("connect to postgresql://app:pg-Secret-1@db.internal failed; key=alchemy-Secret-3 "
              "and price-Secret-4 and rpc-Secret-5 and redis-Secret-2 and http://u:anything@h/")
    redacted = cfg.redact(leaked)
    assert "Secret" not in redacted and "anything" not in redacted
    assert "postgresql://app:***@db.internal" in redacted
    with pytest.raises(settings.ConfigError) as excinfo:
        settings.load({"REDIS_URL": "http://u:redis-Secret-6@h/"})
    assert "redis-Secret-6" not in str(excinfo.value)


def test_the_readme_lists_every_variable_as_settings_defines_it():
    readme = readme_config.README.read_text()
    assert readme_config.markdown_table() in readme, "README is stale: run `python -m tools.readme_config`"
    assert readme_config.main(["--check"]) == 0


def test_keys_in_provider_urls_and_password_parameters_are_secrets():
    cfg = settings.load({"RPC_URLS": "1=https://mainnet.infura.io/v3/0123456789abcdef0123,"
                                     "10=https://rpc.example/?apikey=KeyInQuery123456",
                         "DATABASE_URL": "postgresql://db.internal/prod?password=QueryPassw0rd"})
    text = ("POST https://mainnet.infura.io/v3/0123456789abcdef0123 and https://rpc.example/?apikey=KeyInQuery123456"
            " and postgresql://db.internal/prod?password=QueryPassw0rd")
    redacted = cfg.redact(text)
    assert "0123456789abcdef0123" not in redacted and "KeyInQuery123456" not in redacted
    assert "QueryPassw0rd" not in redacted and "https://mainnet.infura.io/v3/***" in redacted
    assert "QueryPassw0rd" not in cfg.database.url_display
    assert cfg.database.url_display == "postgresql://db.internal/prod?password=***"


def test_each_variable_lands_in_its_group():
    cfg = settings.load({"SYNC_RETENTION_DAYS": "9", "SCHEDULER_TICK_RETENTION_DAYS": "3", "PORT": "9000",
                         "HTTP_TIMEOUT_S": "7", "QUARANTINE_MAX": "5", "DB_POOL_MAX": "11", "REDIS_TIMEOUT_S": "2",
                         "RECONCILE_INTERVAL_S": "4", "LOG_LEVEL": "debug", "METRICS_PORT": "9300"})
    assert (cfg.housekeeping.sync_retention_days, cfg.housekeeping.tick_retention_days) == (9, 3)
    assert (cfg.dashboard.port, cfg.metrics.port, cfg.http.timeout_s, cfg.broker.quarantine_max) == (9000, 9300, 7, 5)
    assert (cfg.database.pool_max, cfg.redis.timeout_s, cfg.reconciler.interval_s) == (11, 2, 4)
    assert cfg.logging.level == "DEBUG"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sync.max_attempts = 5  # type: ignore[misc]


def test_the_spec_states_every_variable_once_with_its_meaning():
    declared = [variable for _group, _attribute, variable in settings.variables()]
    assert len(declared) == len(settings.VARIABLES) == len({v.name for v in declared})
    assert all(v.doc.endswith(".") for v in declared)
    groups = dataclasses.fields(settings.Settings)
    assert sum(len(dataclasses.fields(settings.spec.GROUPS[g.name])) for g in groups) == len(declared)


def test_secret_variables_are_exactly_those_left_out_of_repr():
    for group, cls in settings.spec.GROUPS.items():
        for field in dataclasses.fields(cls):
            assert field.repr is (field.metadata["variable"].secret is None), f"{group}.{field.name}"
    assert {v.name for v in settings.VARIABLES.values() if v.secret} == {
        "REDIS_URL", "DATABASE_URL", "DASHBOARD_PASSWORD", "DASHBOARD_DATABASE_URL", "RPC_URLS", "ALCHEMY_API_KEY",
        "ALCHEMY_URLS", "PRICE_API_URL", "PRICE_API_KEY", "API_TOKENS", "TOKEN_LIST_URLS"}


#: A value each kind of parser refuses (Text takes anything, so its variables have none).
_REFUSED = {parsers.Integer: "twelve", parsers.OrNone: "twelve", parsers.Fraction: "often", parsers.Url: "nope://x",
            parsers.Choice: "neither", parsers.Boolean: "perhaps", parsers.Pattern: "has space!",
            parsers.ChainIds: "eth", parsers.PerChain: "mainnet", parsers.Cron: "* * *", parsers.Tokens: "short", parsers.HostNames: "evil host!",
            parsers.RateLimit: "fast", parsers.AbsolutePath: "relative/dir", parsers.BasicAuthUser: "a:b",
            parsers.Password: "short", parsers.ChainMetadata: "{not json", parsers.UrlList: "ftp://lists.example",
            parsers.PerSecond: "fast"}


@pytest.mark.parametrize("name", [name for name, v in settings.VARIABLES.items() if type(v.parse) is not parsers.Text])
def test_every_bad_variable_raises_a_config_error_naming_it(name):
    variable = settings.VARIABLES[name]
    bad = _REFUSED[type(variable.parse)]
    with pytest.raises(settings.ConfigError) as excinfo:
        settings.load({name: bad})
    assert str(excinfo.value).startswith(name)


@pytest.mark.parametrize("spec, problem", [
    ("5-1 * * * *", "minute '5-1' matches no value"),
    ("0 0 1-0 * *", "day of month '1-0' matches no value"),  # periodiq itself takes it, then never fires
    ("0 24 * * *", "hour 24 is outside 0-23"),
    ("0 0 0 * *", "day of month 0 is outside 1-31"),
    ("0 0 * jan *", "month 'jan' is not *, N, N-M, */S or N-M/S"),  # periodiq reads no month names
    ("0 0 * * 8", "day of week 8 is outside 0-7"),
    ("0 0 * * *  *", "expected 5 fields, got 6"),
])
def test_cron_problems_name_the_field(spec, problem):
    assert settings.cron_problem(spec).startswith(problem)


_CRON_FIELD = st.one_of(st.just("*"), st.integers(0, 70).map(str),
                        st.tuples(st.integers(0, 70), st.integers(0, 70)).map(lambda r: f"{r[0]}-{r[1]}"),
                        st.integers(0, 3).map(lambda s: f"*/{s}"), st.sampled_from(["mon", "fri-sun", "x", "1,", ""]))


@given(st.lists(_CRON_FIELD, min_size=5, max_size=5))
def test_a_cron_accepted_is_one_periodiq_runs_within_bounds(fields):
    spec = " ".join(fields)
    if settings.cron_problem(spec) is None:
        parsed = periodiq.cron(spec)
        bounds = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
        assert all(values and low <= min(values) and max(values) <= high
                   for values, (low, high) in zip(parsed.astuple(), bounds))


def test_the_readme_tool_finds_a_stale_table_and_rewrites_it(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- config-table -->\n| old |\n<!-- /config-table -->\nrest\n")
    assert readme_config.main(["--check", "--readme", str(readme)]) == 1
    assert readme_config.main(["--readme", str(readme)]) == 0
    text = readme.read_text()
    assert readme_config.markdown_table() in text and "| old |" not in text and text.endswith("rest\n")
    assert readme_config.main(["--check", "--readme", str(readme)]) == 0


def test_a_retired_variable_warns_rather_than_being_silently_ignored():
    with pytest.warns(DeprecationWarning, match="CIRCUIT_FAIL_MAX is no longer read: .*CIRCUIT_FAILURE_RATE"):
        settings.load({"CIRCUIT_FAIL_MAX": "10"})


def test_a_block_number_in_other_unicode_digits_is_a_config_error():
    with pytest.raises(settings.ConfigError, match="DISCOVERY_START_BLOCKS: the block of chain 1 must be a whole number"):
        settings.load({"DISCOVERY_START_BLOCKS": "1=²"})


@pytest.mark.parametrize("name, text", [
    ("RPC_URLS", "https://eth-mainnet.example/v2/Key0123456789abcdef"),  # the chain id forgotten
    ("RPC_URLS", "1=https://a.example/rpc,https://eth.example/v2/Key0123456789abcdef?apikey=Key0123456789abcdef"),
    ("ALCHEMY_URLS", "https://eth-mainnet.example/v2/Key0123456789abcdef"),
    ("ALCHEMY_URLS", "eth-mainnet.example/v2/Key0123456789abcdef=1"),
    ("TOKEN_LIST_URLS", "ftp://lists.example/Key0123456789abcdef/list.json"),
])
def test_a_malformed_provider_url_is_quoted_without_its_key(name, text):
    with pytest.raises(settings.ConfigError) as caught:
        settings.load({name: text})
    assert name in str(caught.value) and "***" in str(caught.value)
    assert "Key0123456789abcdef" not in str(caught.value)
