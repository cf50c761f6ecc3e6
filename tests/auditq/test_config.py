import pytest

from auditq.config import ConfigError, env_name, load_settings


def test_defaults_are_safe_without_any_environment(monkeypatch):
    for name in ("REDIS_URL", "SUPABASE_URL", "DATABASE_URL", "AUDITQ_MAX_QUEUE"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.max_queue == 100_000
    assert settings.overflow == "drop"
    assert settings.store_kind is None


def test_reads_the_environment(monkeypatch):
    monkeypatch.setenv("AUDITQ_MAX_QUEUE", "1234")
    monkeypatch.setenv("AUDITQ_OVERFLOW", "block")
    settings = load_settings()
    assert (settings.max_queue, settings.overflow) == (1234, "block")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL"),
        ({"SUPABASE_URL": "https://x.supabase.co"}, "SUPABASE_SERVICE_ROLE_KEY"),
        ({"AUDITQ_BATCH_MIN": "-5"}, "AUDITQ_BATCH_MIN"),
        ({"AUDITQ_MAX_QUEUE": "lots"}, "AUDITQ_MAX_QUEUE"),
        ({"AUDITQ_OVERFLOW": "explode"}, "AUDITQ_OVERFLOW"),
        ({"DATABASE_URL": "mysql://u:pw@h/db"}, "DATABASE_URL"),
    ],
)
def test_bad_configuration_fails_with_one_clear_message(monkeypatch, env, named):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert named in str(caught.value)
    assert "\n" not in str(caught.value)


def test_secrets_never_appear_in_errors_or_repr(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://admin:hunter2-secret@db/x")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "hunter2-secret" not in str(caught.value)

    monkeypatch.setenv("DATABASE_URL", "postgresql://admin:hunter2-secret@db/x")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "service-key-secret")
    monkeypatch.setenv("SUPABASE_URL", "https://x.supabase.co")
    settings = load_settings()
    assert "hunter2-secret" not in repr(settings)
    assert "service-key-secret" not in repr(settings)
    assert settings.store_kind == "supabase"


def test_every_setting_has_an_environment_name():
    assert env_name("max_queue") == "AUDITQ_MAX_QUEUE"
    assert env_name("redis_url") == "REDIS_URL"


@pytest.mark.parametrize(
    ("env", "hops"),
    [
        ({}, 0),  # no proxy known: forwarded headers are not believed (dev mode included)
        ({"DYNO": "web.1"}, 1),  # Heroku's router
        ({"DYNO": "web.1", "AUDITQ_TRUSTED_PROXIES": "0"}, 0),  # explicit wins
        ({"AUDITQ_TRUSTED_PROXIES": "2"}, 2),
    ],
)
def test_proxy_hops_are_trusted_only_where_a_proxy_is_known(monkeypatch, env, hops):
    for name in ("DYNO", "AUDITQ_TRUSTED_PROXIES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings().proxy_hops == hops
