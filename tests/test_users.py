"""Named users and roles (host/users.py, ``skid user``): the store's rules, password
hashing, where the store lives, and how ``--user`` relates to ``--operator``/``--who``."""

from __future__ import annotations

import json
import stat

import pytest
from argon2 import PasswordHasher

from host.cli import main
from host.users import (
    PASSWORD_ENV,
    AuthError,
    UserError,
    UserStore,
    config_dir,
    default_store_path,
    login,
    read_password,
    request_identity,
    run_operator,
)

# A cheap argon2 cost for unit tests (the store keeps the parameters in each hash).
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def store(tmp_path):
    s = UserStore(tmp_path / "users.json", FAST)
    s.add("sam", "supervisor", "sam-password", "Sam Super", None)
    s.add("alice", "operator", "alice-password", "Alice Op", "sam")
    s.add("quinn", "qa", "quinn-password", "Quinn QA", "sam")
    return s


def test_the_store_lives_in_the_configuration_directory():
    assert config_dir({"SKID_CONFIG_DIR": "/etc/skid"}).as_posix() == "/etc/skid"
    assert default_store_path({"XDG_CONFIG_HOME": "/x"}).as_posix() == "/x/flowskid/users.json"
    home = default_store_path({})
    assert home.parts[-3:] == (".config", "flowskid", "users.json")


def test_the_first_user_must_be_a_supervisor(tmp_path):
    s = UserStore(tmp_path / "users.json", FAST)
    with pytest.raises(UserError, match="first user .* supervisor"):
        s.add("alice", "operator", "long-enough", "", None)
    s.add("sam", "supervisor", "long-enough", "", None)
    assert s.get("sam")["added_by"] is None


def test_names_roles_and_passwords_are_checked(store):
    with pytest.raises(UserError, match="already exists"):
        store.add("alice", "operator", "another-password", "", "sam")
    with pytest.raises(UserError, match="role 'admin' unknown"):
        store.add("bob", "admin", "long-enough", "", "sam")
    with pytest.raises(UserError, match="user name"):
        store.add("Bob Smith", "operator", "long-enough", "", "sam")
    with pytest.raises(UserError, match="at least 8"):
        store.add("bob", "operator", "short", "", "sam")
    assert store.get("bob") is None


def test_passwords_are_stored_as_argon2id_hashes_in_a_private_file(store):
    text = store.path.read_text()
    assert "alice-password" not in text
    doc = json.loads(text)
    assert doc["users"]["alice"]["password_hash"].startswith("$argon2id$")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    # A fresh store object reads what was written.
    again = UserStore(store.path, FAST)
    assert again.authenticate("alice", "alice-password")["role"] == "operator"


def test_authentication_refuses_wrong_passwords_unknown_users_and_wrong_roles(store):
    with pytest.raises(AuthError) as wrong:
        store.authenticate("alice", "not-her-password")
    with pytest.raises(AuthError) as unknown:
        store.authenticate("mallory", "whatever-password")
    # The same words either way: a failed login does not tell which names exist.
    assert str(wrong.value).split(":", 1)[1] == str(unknown.value).split(":", 1)[1]
    with pytest.raises(AuthError, match="role qa: this needs operator or supervisor"):
        store.authenticate("quinn", "quinn-password", ("operator", "supervisor"))


def test_a_disabled_user_cannot_log_in_and_is_kept(store):
    store.disable("alice", "sam", "left the company")
    with pytest.raises(AuthError, match="disabled .left the company"):
        store.authenticate("alice", "alice-password")
    listed = {u["name"]: u for u in UserStore(store.path, FAST).listing()}
    assert listed["alice"]["active"] is False and listed["alice"]["disabled_by"] == "sam"
    assert all("password_hash" not in u for u in listed.values())
    with pytest.raises(UserError, match="already disabled"):
        store.disable("alice", "sam", "again")


def test_the_last_supervisor_cannot_be_disabled(store):
    with pytest.raises(UserError, match="last active supervisor"):
        store.disable("sam", "sam", "leaving")
    store.add("sue", "supervisor", "sue-password", "", "sam")
    store.disable("sam", "sue", "leaving")


def test_the_password_comes_from_the_environment_or_a_prompt():
    assert read_password("pw: ", {PASSWORD_ENV: "from-env"}) == "from-env"
    assert read_password("pw: ", {}, ask=lambda _p: "typed") == "typed"
    answers = iter(["one-password", "another"])
    with pytest.raises(UserError, match="differ"):
        read_password("pw: ", {}, ask=lambda _p: next(answers), confirm=True)


def test_run_operator_logs_in_and_the_deprecated_alias_is_recorded_unauthenticated(store):
    env = {PASSWORD_ENV: "alice-password"}
    got = run_operator("alice", None, store.path, env)
    assert got == {
        "operator": "alice",
        "operator_role": "operator",
        "operator_authenticated": "yes",
    }
    assert run_operator(None, "bob", store.path, env) == {
        "operator": "bob",
        "operator_authenticated": "no",
    }
    assert run_operator(None, None, store.path, env)["operator_authenticated"] == "no"
    with pytest.raises(UserError, match="together"):
        run_operator("alice", "bob", store.path, env)
    with pytest.raises(AuthError, match="role qa"):  # QA reviews runs, does not run them
        run_operator("quinn", None, store.path, {PASSWORD_ENV: "quinn-password"})
    with pytest.raises(AuthError):
        run_operator("alice", None, store.path, {PASSWORD_ENV: "wrong-password"})


def test_request_identity_for_control_requests(store):
    env = {PASSWORD_ENV: "alice-password", "USER": "unix-name"}
    assert request_identity("alice", None, store.path, env) == {
        "who": "alice",
        "role": "operator",
        "auth": "password",
    }
    assert request_identity(None, "bob", store.path, env) == {"who": "bob"}
    assert request_identity(None, None, store.path, env) == {"who": "unix-name"}
    # `skid stop` never waits for a password: without $SKID_PASSWORD the name goes out
    # unauthenticated.
    assert request_identity("alice", None, store.path, {}, prompt=False) == {"who": "alice"}
    with pytest.raises(UserError, match="together"):
        request_identity("alice", "bob", store.path, env)


def test_login_on_an_empty_store_says_how_to_add_users(tmp_path):
    with pytest.raises(AuthError, match="skid user add"):
        login(tmp_path / "none.json", "alice", env={PASSWORD_ENV: "x" * 8})


def test_cli_user_add_disable_list(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SKID_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("SKID_NEW_PASSWORD", "sam-password")
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    assert main(["user", "add", "alice", "--role", "operator"]) == 1  # first: supervisor
    assert main(["user", "add", "sam", "--role", "supervisor", "--full-name", "Sam S"]) == 0
    monkeypatch.setenv("SKID_NEW_PASSWORD", "alice-password")
    # Now adding needs a supervisor's login.
    assert main(["user", "add", "alice", "--role", "operator"]) == 1
    assert "--by" in capsys.readouterr().err
    monkeypatch.setenv(PASSWORD_ENV, "wrong-password")
    assert main(["user", "add", "alice", "--role", "operator", "--by", "sam"]) == 1
    monkeypatch.setenv(PASSWORD_ENV, "sam-password")
    assert main(["user", "add", "alice", "--role", "operator", "--by", "sam"]) == 0
    assert (tmp_path / "cfg" / "users.json").is_file()
    assert main(["user", "disable", "alice", "--by", "sam", "--reason", "moved"]) == 0
    capsys.readouterr()
    assert main(["user", "list", "--json"]) == 0
    users = {u["name"]: u for u in json.loads(capsys.readouterr().out)}
    assert users["sam"]["role"] == "supervisor" and users["sam"]["full_name"] == "Sam S"
    assert users["alice"]["active"] is False and users["alice"]["added_by"] == "sam"
    assert main(["user", "list"]) == 0
    assert "disabled" in capsys.readouterr().out


def test_a_control_request_carries_the_login_and_the_tag_covers_it():
    from host import control

    key = b"k" * 32
    payload = control.build_request(
        "r1", "resume", "alice", "go", key=key, role="operator", auth=control.AUTH_PASSWORD
    )
    body = control.parse_request(payload)
    assert (body["who"], body["role"], body["auth"]) == ("alice", "operator", "password")
    assert control.check_signature(body, key, body["t"], set()) is None
    forged = dict(body, role="supervisor")  # the tag covers the login claim too
    assert "does not match" in control.check_signature(forged, key, body["t"], set())


def test_an_operator_command_with_a_failed_login_sends_nothing(store, monkeypatch, capsys):
    # Refused before any broker connection (the URL points nowhere).
    argv = ["hold", "--broker", "mqtt://127.0.0.1:9", "--reason", "look"]
    argv += ["--users-file", str(store.path)]
    monkeypatch.setenv(PASSWORD_ENV, "wrong-password")
    assert main([*argv, "--user", "alice"]) == 1
    assert "wrong password" in capsys.readouterr().err
    monkeypatch.setenv(PASSWORD_ENV, "quinn-password")
    assert main([*argv, "--user", "quinn"]) == 1  # QA does not act on a line
    assert "role qa" in capsys.readouterr().err
    assert main([*argv, "--user", "alice", "--who", "bob"]) == 1
    err = capsys.readouterr().err
    assert "deprecated" in err and "together" in err
