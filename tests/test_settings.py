"""Settings: TOML for behaviour, FOUNDRY_* for secrets (which win), one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundry import settings as settings_module
from foundry.errors import ConfigError

EXAMPLE = Path(__file__).parents[1] / "config" / "foundry.example.toml"


def test_defaults_need_no_configuration_at_all() -> None:
    settings = settings_module.load(environ={})
    assert settings.database_url == "sqlite:///./foundry.db"
    assert settings.triggers.label == "foundry"
    assert settings.remediation.max_retries == 2
    assert settings.webhooks.tolerance_s == 60
    assert settings.webhooks.max_body_bytes == 1024 * 1024
    assert settings.planner.backend == "template"
    assert settings.api_token is None
    assert settings.github.issue_repositories == []  # no GitHub Issues reconciling


def test_the_example_file_documents_valid_settings() -> None:
    settings = settings_module.load(environ={"FOUNDRY_CONFIG": str(EXAMPLE)})
    assert settings.approvers()[0].roles


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "foundry.toml"
    config.write_text('database_url = "sqlite:///from-file.db"\n[triggers]\nlabel = "robot"\n')
    monkeypatch.setenv("FOUNDRY_DATABASE_URL", "postgresql://db.internal/foundry")
    settings = settings_module.load(environ={"FOUNDRY_CONFIG": str(config)})
    assert settings.database_url == "postgresql://db.internal/foundry"
    assert settings.triggers.label == "robot"


def test_secrets_never_print() -> None:
    settings = settings_module.load(environ={}, api_token="hunter2")
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[runs]\nmax_per_issue_per_day = 0",
            "setting runs.max_per_issue_per_day: Input should be greater than 0",
        ),
        (
            "[planner]\nbackend = 'gpt'",
            "setting planner.backend: Input should be 'template', 'anthropic' or 'openai'",
        ),
        ("[triggers]\nlabell = 'x'", "setting triggers.labell: is not a known setting"),
        (
            "[github]\nissue_repositories = ['acme/widgets', 'widgets']",
            "setting github.issue_repositories.1: String should match pattern"
            " '^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$'",
        ),
        (
            "[github]\nissue_repositories = 'acme/widgets'",
            "setting github.issue_repositories: Input should be a valid list",
        ),
        (
            "database_url = 'mysql://x'",
            "setting FOUNDRY_DATABASE_URL: must start with postgresql:// or sqlite:///",
        ),
        ("[webhooks", None),
    ],
)
def test_a_bad_value_is_one_line_naming_the_setting(tmp_path: Path, toml: str, message: str | None) -> None:
    config = tmp_path / "foundry.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as refused:
        settings_module.load(environ={"FOUNDRY_CONFIG": str(config)})
    assert "\n" not in str(refused.value)
    if message is not None:
        assert str(refused.value) == message
    else:
        assert str(refused.value).startswith(f"config file {config} is not valid TOML")


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        settings_module.load(environ={"FOUNDRY_CONFIG": str(tmp_path / "nope.toml")})


def test_a_model_planner_needs_its_api_key(tmp_path: Path) -> None:
    config = tmp_path / "foundry.toml"
    config.write_text("[planner]\nbackend = 'anthropic'\n")
    with pytest.raises(ConfigError) as refused:
        settings_module.load(environ={"FOUNDRY_CONFIG": str(config)})
    assert str(refused.value) == "planner.backend is anthropic but FOUNDRY_ANTHROPIC_API_KEY is not set"


def test_nested_settings_come_from_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDRY_WORKER__LEASE_S", "5")
    assert settings_module.load(environ={}).worker.lease_s == 5


def test_the_github_issue_repositories_come_from_the_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "foundry.toml"
    config.write_text("[github]\nissue_repositories = ['acme/widgets', 'acme/gadgets']\n")
    from_file = settings_module.load(environ={"FOUNDRY_CONFIG": str(config)})
    assert from_file.github.issue_repositories == ["acme/widgets", "acme/gadgets"]
    monkeypatch.setenv("FOUNDRY_GITHUB__ISSUE_REPOSITORIES", '["acme/tools"]')
    assert settings_module.load(environ={}).github.issue_repositories == ["acme/tools"]


def test_linear_max_age_cannot_outlast_the_digests_that_recognise_a_replay() -> None:
    from foundry.services import retention

    ceiling = next(
        m.le
        for m in settings_module.WebhooksConfig.model_fields["linear_max_age_s"].metadata
        if hasattr(m, "le")
    )
    assert ceiling == retention.DELIVERY_RETENTION.total_seconds()
    with pytest.raises(ConfigError, match=r"webhooks\.linear_max_age_s"):
        settings_module.load(environ={}, webhooks={"linear_max_age_s": ceiling + 1})


def test_the_linear_app_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDRY_LINEAR_CLIENT_ID", "client-id-1")
    monkeypatch.setenv("FOUNDRY_LINEAR_CLIENT_SECRET", "client-secret-1")
    monkeypatch.setenv("FOUNDRY_SECRET_KEY", "the-secret-key")
    monkeypatch.setenv("FOUNDRY_LINEAR_OAUTH_TOKEN_URL", "http://127.0.0.1:9/oauth/token")
    settings = settings_module.load(environ={})
    assert settings.linear_client_id is not None
    assert settings.linear_client_id.get_secret_value() == "client-id-1"
    assert settings.linear_client_secret is not None
    assert settings.linear_client_secret.get_secret_value() == "client-secret-1"
    assert settings.linear_oauth_token_url == "http://127.0.0.1:9/oauth/token"
    assert "client-secret-1" not in repr(settings) and "the-secret-key" not in repr(settings)


def test_the_token_url_defaults_to_linears() -> None:
    settings = settings_module.load(environ={})
    assert settings.linear_oauth_token_url == "https://api.linear.app/oauth/token"
    assert settings.linear_access_token is None and settings.secret_key is None


@pytest.mark.parametrize("given", [{"linear_client_id": "id-1"}, {"linear_client_secret": "secret-1"}])
def test_the_linear_client_id_and_secret_come_together(given: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as refused:
        settings_module.load(environ={}, secret_key="the-secret-key", **given)
    assert str(refused.value) == (
        "FOUNDRY_LINEAR_CLIENT_ID and FOUNDRY_LINEAR_CLIENT_SECRET must be set together"
    )


def test_a_linear_app_needs_the_secret_key_its_token_is_stored_under() -> None:
    with pytest.raises(ConfigError) as refused:
        settings_module.load(environ={}, linear_client_id="id-1", linear_client_secret="secret-1")
    assert str(refused.value) == (
        "FOUNDRY_LINEAR_CLIENT_ID needs FOUNDRY_SECRET_KEY: the app token Foundry mints is stored"
        " encrypted with it"
    )


def test_an_empty_secret_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="setting FOUNDRY_SECRET_KEY: must not be empty"):
        settings_module.load(environ={}, secret_key="")
