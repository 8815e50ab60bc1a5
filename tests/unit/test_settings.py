import pytest

import settings


def test_defaults_run_the_system_with_no_configuration():
    cfg = settings.load({})
    assert cfg.redis_url == "redis://127.0.0.1:6379/0"
    assert cfg.database_url == "postgresql://127.0.0.1:5432/portfolio_sync"
    assert cfg.provider == "simulated" and cfg.port == 8050
    assert cfg.chains == (1, 10, 137, 8453, 42161)
    assert cfg.cooldown_seconds == 60 and cfg.max_attempts == 3 and cfg.retry_min_backoff_ms == 2000


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
    text = repr(cfg) + cfg.redis_url_display + cfg.database_url_display
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
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert settings.markdown_table() in readme, "README is stale: run `python settings.py --write-readme`"


def test_keys_in_provider_urls_and_password_parameters_are_secrets():
    cfg = settings.load({"RPC_URLS": "1=https://mainnet.infura.io/v3/0123456789abcdef0123,"
                                     "10=https://rpc.example/?apikey=KeyInQuery123456",
                         "DATABASE_URL": "postgresql://db.internal/prod?password=QueryPassw0rd"})
    text = ("POST https://mainnet.infura.io/v3/0123456789abcdef0123 and https://rpc.example/?apikey=KeyInQuery123456"
            " and postgresql://db.internal/prod?password=QueryPassw0rd")
    redacted = cfg.redact(text)
    assert "0123456789abcdef0123" not in redacted and "KeyInQuery123456" not in redacted
    assert "QueryPassw0rd" not in redacted and "https://mainnet.infura.io/v3/***" in redacted
    assert "QueryPassw0rd" not in cfg.database_url_display
    assert cfg.database_url_display == "postgresql://db.internal/prod?password=***"
