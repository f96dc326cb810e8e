"""The ``pennyworth`` CLI: config and profiles, the token cache, login against moto's Cognito,
error translation and exit codes, file formats. Commands against a running gateway are in
tests/integration/test_cli_e2e.py."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.auth import Session
from cli.config import Profile, TokenCache, Tokens, find_dev_json, resolve_profile
from cli.errors import ApiError, ConfigError, NotLoggedIn, SessionExpired
from cli.keys import parse_duration, read_rows, rows_to_csv
from cli.main import cli
from tests.cognito_helpers import Pool, User, add_user, make_pool

DEV_JSON = {
    "base_url": "http://127.0.0.1:9/v1",
    "api_key": "pw-x",
    "admin_username": "admin@pennyworth.local",
    "admin_password": "Pw1!secret-secret",
    "cognito": {
        "endpoint_url": "http://127.0.0.1:9",
        "region": "us-east-1",
        "user_pool_id": "us-east-1_local",
        "client_id": "local-client",
    },
}


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own config dir and no profile/endpoint from the environment."""
    home = tmp_path / "config"
    monkeypatch.setenv("PENNYWORTH_CONFIG_DIR", str(home))
    for variable in ("PENNYWORTH_PROFILE", "PENNYWORTH_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    return home


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


# Profiles and config


def test_config_dir_honours_the_override_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cli.config import config_dir

    assert config_dir() == tmp_path / "config"
    monkeypatch.delenv("PENNYWORTH_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_dir() == tmp_path / "xdg" / "pennyworth"


def test_profile_order_flag_then_env_then_default_profile(config_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(
        config_home,
        """
default_profile = "prod"
[profiles.prod]
base_url = "https://prod.example.com/api/"
user_pool_id = "eu-west-1_prod"
client_id = "c-prod"
[profiles.staging]
base_url = "https://staging.example.com/api"
user_pool_id = "eu-west-1_stg"
client_id = "c-stg"
auth_flow = "password"
""",
    )
    prod = resolve_profile(local=False, name=None, endpoint=None)
    assert (prod.name, prod.base_url, prod.region, prod.auth_flow) == (
        "prod",
        "https://prod.example.com/api",
        "eu-west-1",
        "srp",
    )
    monkeypatch.setenv("PENNYWORTH_PROFILE", "staging")
    assert resolve_profile(local=False, name=None, endpoint=None).name == "staging"
    assert resolve_profile(local=False, name="prod", endpoint=None).name == "prod"
    monkeypatch.setenv("PENNYWORTH_ENDPOINT", "http://127.0.0.1:7000/v1")
    assert resolve_profile(local=False, name="prod", endpoint=None).base_url == "http://127.0.0.1:7000"
    assert resolve_profile(local=False, name="prod", endpoint="http://x:1").base_url == "http://x:1"


def test_missing_and_broken_profiles_explain_what_to_add(config_home: Path) -> None:
    with pytest.raises(ConfigError, match=r"(?s)No profile 'default'.*\[profiles.default\]"):
        resolve_profile(local=False, name=None, endpoint=None)
    write_config(config_home, "[profiles.default]\nbase_url = 'https://x'\n")
    with pytest.raises(ConfigError, match="lacks user_pool_id, client_id"):
        resolve_profile(local=False, name=None, endpoint=None)
    write_config(config_home, "[profiles.default\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_profile(local=False, name=None, endpoint=None)


def test_local_finds_dev_json_upwards_and_uses_the_password_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "project" / ".pennyworth").mkdir(parents=True)
    (tmp_path / "project" / ".pennyworth" / "dev.json").write_text(json.dumps(DEV_JSON))
    deep = tmp_path / "project" / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_dev_json() == tmp_path / "project" / ".pennyworth" / "dev.json"
    profile = resolve_profile(local=True, name=None, endpoint=None)
    assert (profile.name, profile.base_url, profile.auth_flow) == ("local", "http://127.0.0.1:9", "password")
    assert (profile.user_pool_id, profile.cognito_endpoint_url) == ("us-east-1_local", "http://127.0.0.1:9")


def test_local_without_a_stack_says_to_run_make_dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("--local", "keys", "list")
    assert result.exit_code == 1 and "make dev" in result.output


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("--local", "--profile", "x", "keys", "list").exit_code == 2
    assert run("keys", "rotate", "abc", "--grace", "soon").exit_code == 2
    assert run("keys", "list", "--status", "sleeping").exit_code == 2
    assert run("keys", "nope").exit_code == 2


# Token cache and sessions


def test_token_cache_is_private_and_per_profile(config_home: Path) -> None:
    cache = TokenCache()
    tokens = Tokens("id", "access", "refresh", time.time() + 3600, "me@example.com", "us-east-1_p")
    cache.put("default", tokens)
    assert stat.S_IMODE(os.stat(cache.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cache.path.parent).st_mode) == 0o700
    assert cache.get("default") == tokens and cache.get("other") is None
    assert cache.delete("default") and cache.get("default") is None and not cache.delete("default")


def test_not_logged_in_and_restarted_local_stack_are_reported(config_home: Path) -> None:
    profile = Profile("local", "http://x", "us-east-1_new", "c", "us-east-1")
    with pytest.raises(NotLoggedIn, match="not logged in") as caught:
        Session(profile).id_token()
    assert "pennyworth --local login" in str(caught.value)
    TokenCache().put("local", Tokens("i", "a", "r", time.time() + 3600, "u", "us-east-1_old"))
    with pytest.raises(NotLoggedIn):
        Session(profile).id_token()  # a token of the previous stack's pool is no session at all


def test_each_local_stack_keeps_its_own_session(
    config_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cognito: Any
) -> None:
    # GIVEN two checkouts, each running its own make dev stack (its own user pool and admin)
    checkouts = []
    for name in ("one", "two"):
        pool = make_pool(cognito, f"stack-{name}")
        admin = add_user(cognito, pool, "admin@pennyworth.local", admin=True)
        (tmp_path / name / ".pennyworth").mkdir(parents=True)
        info = {**DEV_JSON, "admin_password": admin.password,
                "cognito": {**DEV_JSON["cognito"], "endpoint_url": None, **pool.__dict__}}  # fmt: skip
        (tmp_path / name / ".pennyworth" / "dev.json").write_text(json.dumps(info))
        checkouts.append((tmp_path / name, pool))
    # WHEN the admin logs in to one stack, then to the other
    for checkout, _ in checkouts:
        monkeypatch.chdir(checkout)
        assert run("--local", "login").exit_code == 0
    # THEN both sessions hold: each is kept beside its stack's dev.json, none in the user's config
    for checkout, pool in checkouts:
        monkeypatch.chdir(checkout)
        profile = resolve_profile(local=True, name=None, endpoint=None)
        assert Session(profile).id_token()
        assert TokenCache(checkout / ".pennyworth").get("local").user_pool_id == pool.user_pool_id
    assert TokenCache().get("local") is None


@pytest.fixture
def user(cognito: Any, pool: Pool) -> User:
    return add_user(cognito, pool, "user@example.com")


def profile_for(pool: Pool, flow: str = "password") -> Profile:
    return Profile("default", "http://127.0.0.1:9", pool.user_pool_id, pool.client_id, "us-east-1", auth_flow=flow)


def login_config(home: Path, pool: Pool, flow: str) -> None:
    write_config(
        home,
        f"""
[profiles.default]
base_url = "http://127.0.0.1:9"
user_pool_id = "{pool.user_pool_id}"
client_id = "{pool.client_id}"
auth_flow = "{flow}"
""",
    )


@pytest.mark.parametrize("flow", ["password", "srp"])
def test_login_caches_a_session_and_logout_forgets_it(config_home: Path, pool: Pool, user: User, flow: str) -> None:
    login_config(config_home, pool, flow)
    result = run("login", "--username", user.email, "--password-stdin", "--json", input=user.password + "\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["username"] == user.email
    assert TokenCache().get("default").username == user.email
    assert stat.S_IMODE(os.stat(TokenCache().path).st_mode) == 0o600
    result = run("logout", "--json")
    assert json.loads(result.stdout) == {"profile": "default", "logged_out": True}
    assert TokenCache().get("default") is None


def test_wrong_password_is_a_clear_error(config_home: Path, pool: Pool, user: User) -> None:
    login_config(config_home, pool, "password")
    result = run("login", "-u", user.email, "--password-stdin", input="wrong-password\n")
    assert result.exit_code == 1 and "Incorrect username or password" in result.output


def test_first_login_sets_a_new_password(config_home: Path, cognito: Any, pool: Pool) -> None:
    # GIVEN a user an admin created with a temporary password
    cognito.admin_create_user(
        UserPoolId=pool.user_pool_id,
        Username="new@example.com",
        TemporaryPassword="Temp0rary!Pass",
        UserAttributes=[{"Name": "email", "Value": "new@example.com"}],
        MessageAction="SUPPRESS",
    )
    login_config(config_home, pool, "password")
    # WHEN they log in THEN they are asked for a new password, and are logged in
    result = run("login", "-u", "new@example.com", input="Temp0rary!Pass\nN3w!Password-123\nN3w!Password-123\n")
    assert result.exit_code == 0, result.output
    assert "needs a new password" in result.output
    assert TokenCache().get("default") is not None


def test_sessions_refresh_themselves_and_expire_clearly(config_home: Path, pool: Pool, user: User) -> None:
    session = Session(profile_for(pool))
    tokens = session.login(user.email, user.password)
    # GIVEN a cached session whose tokens are about to expire
    TokenCache().put("default", Tokens(**{**tokens.__dict__, "id_token": "stale", "expires_at": time.time() + 5}))
    # THEN the next use refreshes it with the refresh token
    fresh = session.id_token()
    assert fresh != "stale" and TokenCache().get("default").expires_at > time.time() + 600
    # AND a refresh token Cognito no longer accepts is an expired session, with what to do
    TokenCache().put("default", Tokens(**{**tokens.__dict__, "refresh_token": "revoked", "expires_at": 0}))
    with pytest.raises(SessionExpired, match="pennyworth login"):
        session.id_token()


# Errors from the gateway and the network


def test_api_errors_become_actionable_messages() -> None:
    expired = ApiError(401, {"message": "x", "code": "token_expired"})
    assert "expired" in str(expired) and "pennyworth login" in str(expired)
    forbidden = ApiError(403, {"message": "You can manage only your own keys.", "code": "not_key_owner"})
    assert str(forbidden).startswith("Permission denied: You can manage only your own keys.")
    invalid = ApiError(400, {"message": "rpm_limit must be…", "param": "rpm_limit"})
    assert str(invalid) == "Invalid request (rpm_limit): rpm_limit must be…"


def test_no_network_is_reported_with_the_url(config_home: Path, monkeypatch: pytest.MonkeyPatch, pool: Pool) -> None:
    login_config(config_home, pool, "password")
    TokenCache().put("default", Tokens("id", "access", "r", time.time() + 3600, "u", pool.user_pool_id))
    result = run("--endpoint", "http://127.0.0.1:9", "keys", "list")
    assert result.exit_code == 1
    assert "Could not reach the gateway at http://127.0.0.1:9" in result.output


def test_not_logged_in_command_fails_with_exit_1(config_home: Path, pool: Pool) -> None:
    login_config(config_home, pool, "password")
    result = run("keys", "list", "--json")
    assert result.exit_code == 1 and "not logged in" in result.output and "pennyworth login" in result.output


# Files


def test_durations() -> None:
    assert [parse_duration(t) for t in ("0", "3600", "90s", "15m", "2h", "1d")] == [0, 3600, 90, 900, 7200, 86400]


def test_csv_rows_are_typed_and_numbered_by_line(tmp_path: Path) -> None:
    path = tmp_path / "keys.csv"
    path.write_text(
        "id,owner,name,allowed_models,monthly_budget_usd,rpm_limit,tpm_limit,metadata\n"
        'a,alice@example.com,A,nova-micro;nova-lite,10.50,60,,"{""team"": ""x""}"\n'
        "b,,B,,,lots,,\n"
    )
    rows = read_rows(path, "csv")
    assert rows[0] == (
        2,
        {
            "id": "a",
            "owner": "alice@example.com",
            "name": "A",
            "allowed_models": ["nova-micro", "nova-lite"],
            "monthly_budget_usd": "10.50",
            "rpm_limit": 60,
            "metadata": {"team": "x"},
        },
    )
    assert rows[1] == (3, {"id": "b", "name": "B", "rpm_limit": "lots"})


def test_export_csv_reads_back_as_the_same_rows(tmp_path: Path) -> None:
    exported = [
        {
            "id": "a",
            "owner": "alice@example.com",
            "name": "A",
            "allowed_models": ["nova-micro"],
            "monthly_budget_usd": "1.5",
            "rpm_limit": 5,
            "tpm_limit": None,
            "expires_at": None,
            "metadata": {"k": "v"},
            "key_id": "abcdefghijkl",
            "prefix": "pw-abcdefghijkl",
            "status": "active",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "revoked_at": None,
            "last_used_at": None,
        }
    ]
    path = tmp_path / "export.csv"
    path.write_text(rows_to_csv(exported))
    [(line, row)] = read_rows(path, "json" if False else "csv")
    expected = {k: v for k, v in exported[0].items() if v is not None}
    assert line == 2 and row == expected


def test_import_refuses_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "k.txt").write_text("id\n1\n")
    (tmp_path / "k.json").write_text('{"rows": []}')
    (tmp_path / "k.csv").write_text("name\nx\n")
    assert run("keys", "import", str(tmp_path / "k.txt")).exit_code == 2
    assert "JSON list" in run("keys", "import", str(tmp_path / "k.json")).output
    assert "'id' column" in run("keys", "import", str(tmp_path / "k.csv")).output


def test_docs_cover_every_command_and_option() -> None:
    import click

    doc = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        if path:
            assert f"pennyworth {' '.join(path)}" in doc, path
        for param in command.params:
            for flag in [*param.opts, *param.secondary_opts]:
                if flag.startswith("--") and flag not in ("--help", "--version"):
                    assert f"`{flag}" in doc or f" {flag}" in doc, (path, flag)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    walk(cli, ())


@pytest.mark.parametrize(
    ("pasted", "root"),
    [
        # The stack's OpenAIBaseURL output, and Chalice's EndpointURL: the same gateway
        (
            "https://abc123.execute-api.eu-west-1.amazonaws.com/api/v1",
            "https://abc123.execute-api.eu-west-1.amazonaws.com/api",
        ),
        (
            "https://abc123.execute-api.eu-west-1.amazonaws.com/api/v1/",
            "https://abc123.execute-api.eu-west-1.amazonaws.com/api",
        ),
        (
            "https://abc123.execute-api.eu-west-1.amazonaws.com/api/",
            "https://abc123.execute-api.eu-west-1.amazonaws.com/api",
        ),
        # A stack deployed before the stage was renamed: the stage was "v1" and is the root
        (
            "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/",
            "https://abc123.execute-api.eu-west-1.amazonaws.com/v1",
        ),
        (
            "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/v1",
            "https://abc123.execute-api.eu-west-1.amazonaws.com/v1",
        ),
        # A custom domain and the local stack have no stage
        ("https://llm.example.com/v1", "https://llm.example.com"),
        ("https://llm.example.com", "https://llm.example.com"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000"),
    ],
)
def test_a_pasted_base_url_finds_the_admin_api(config_home: Path, pasted: str, root: str) -> None:
    write_config(config_home, f'[profiles.p]\nbase_url = "{pasted}"\nuser_pool_id = "eu-west-1_x"\nclient_id = "c"\n')
    profile = resolve_profile(local=False, name="p", endpoint=None)
    assert profile.base_url == root and profile.admin_url == f"{root}/admin"
    assert resolve_profile(local=False, name="p", endpoint=pasted).base_url == root


@pytest.mark.parametrize("pasted", ["abc123.execute-api.eu-west-1.amazonaws.com/api/v1", "ftp://x/v1", "https://"])
def test_a_url_that_is_not_one_is_refused_clearly(config_home: Path, pasted: str) -> None:
    write_config(config_home, f'[profiles.p]\nbase_url = "{pasted}"\nuser_pool_id = "eu-west-1_x"\nclient_id = "c"\n')
    with pytest.raises(ConfigError, match="OpenAIBaseURL"):
        resolve_profile(local=False, name="p", endpoint=None)
