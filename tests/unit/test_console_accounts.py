"""Console accounts (issue 18): scrypt hashes with their own salt and parameters, a file written atomically with
mode 0640, managed by `lanectl console-user`; the daemon's view re-reads it when it changes."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from lanectl.adapters.console.accounts import (AccountError, Accounts, hash_password, read_users, verify_password)
from lanectl.cli.main import main
from lanectl.config import ConfigError, load_config
from tests.minimal_site import write_minimal_config


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    return write_minimal_config(tmp_path)


def run(etc: Path, *args: str, stdin: str = "", monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["console-user", "--config", str(etc), *args])


def test_a_hash_keeps_its_salt_and_parameters_and_checks_only_its_password():
    one, two = hash_password("correct horse"), hash_password("correct horse")
    assert one != two  # a salt of its own
    scheme, n, r, p, _salt, _digest = one.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert verify_password("correct horse", one) and not verify_password("correct hors", one)
    cheap = hash_password("correct horse", n=2 ** 10)  # older / other parameters still verify: they are stored
    assert verify_password("correct horse", cheap)
    assert not verify_password("x", "scrypt$bad") and not verify_password("x", "md5$1$2$3$4$5")


def test_add_list_passwd_remove_through_the_cli(etc, monkeypatch, capsys):
    users_file = etc / "console-users.yaml"
    assert run(etc, "add", "wang", "--password-stdin", stdin="s3cret-pass\n", monkeypatch=monkeypatch) == 0
    assert run(etc, "add", "li", "--role", "supervisor", "--password-stdin", stdin="boss-pass-1\n",
               monkeypatch=monkeypatch) == 0
    assert stat.S_IMODE(os.stat(users_file).st_mode) == 0o640
    users = read_users(users_file)
    assert {u.name: u.role for u in users.values()} == {"wang": "operator", "li": "supervisor"}
    assert verify_password("s3cret-pass", users["wang"].password)
    assert "s3cret-pass" not in users_file.read_text()
    capsys.readouterr()
    assert run(etc, "list", monkeypatch=monkeypatch) == 0
    assert capsys.readouterr().out.splitlines() == ["li\tsupervisor", "wang\toperator"]

    assert run(etc, "passwd", "wang", "--password-stdin", stdin="new-pass-22\n", monkeypatch=monkeypatch) == 0
    users = read_users(users_file)
    assert verify_password("new-pass-22", users["wang"].password) and users["wang"].role == "operator"
    assert run(etc, "remove", "li", monkeypatch=monkeypatch) == 0
    assert set(read_users(users_file)) == {"wang"}
    assert not [p for p in etc.iterdir() if p.name.startswith(".console-users")]  # no temporary file left


@pytest.mark.parametrize("args,stdin,says", [
    (("add", "zhang", "--password-stdin"), "short\n", "password too short"),
    (("add", "wa ng", "--password-stdin"), "long-enough\n", "bad user name"),
    (("add", "wang", "--password-stdin"), "long-enough\n", "already has an account"),
    (("passwd", "zhao", "--password-stdin"), "long-enough\n", "no account 'zhao'"),
    (("remove", "zhao"), "", "no account 'zhao'"),
])
def test_bad_input_is_refused_with_a_reason_and_the_file_unchanged(etc, monkeypatch, capsys, args, stdin, says):
    assert run(etc, "add", "wang", "--password-stdin", stdin="s3cret-pass\n", monkeypatch=monkeypatch) == 0
    before = (etc / "console-users.yaml").read_bytes()
    capsys.readouterr()
    assert run(etc, *args, stdin=stdin, monkeypatch=monkeypatch) == 1
    assert says in capsys.readouterr().err
    assert (etc / "console-users.yaml").read_bytes() == before


def test_the_users_file_path_comes_from_the_site_config_and_typos_are_named(tmp_path):
    etc = write_minimal_config(tmp_path, console={"enabled": True, "users_file": "accounts/console.yaml"})
    assert load_config(etc).site.console.users_file == etc / "accounts" / "console.yaml"
    etc2 = write_minimal_config(tmp_path / "b", console={"idle_logout": 5})
    with pytest.raises(ConfigError) as err:
        load_config(etc2)
    assert any("site.yaml" in p and "console.idle_logout" in p for p in err.value.problems), err.value.problems


def test_a_broken_accounts_file_is_an_error_naming_file_and_key(tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text("users:\n  wang: {role: admin, password: 'scrypt$1'}\n")
    with pytest.raises(AccountError, match=r"users\.yaml: users\.wang\.role: expected operator or supervisor"):
        read_users(path)
    path.write_text("users:\n  wang: {role: operator, password: plain}\n")
    with pytest.raises(AccountError, match=r"users\.wang\.password: expected a scrypt hash"):
        read_users(path)


def test_the_daemons_view_follows_the_file(etc, monkeypatch):
    accounts = Accounts(etc / "console-users.yaml")
    assert accounts.check("wang", "s3cret-pass") is None  # no file yet: nobody
    assert run(etc, "add", "wang", "--password-stdin", stdin="s3cret-pass\n", monkeypatch=monkeypatch) == 0
    assert accounts.check("wang", "s3cret-pass").role == "operator"
    assert accounts.check("wang", "wrong-pass") is None and accounts.check("nobody", "s3cret-pass") is None
    assert run(etc, "remove", "wang", monkeypatch=monkeypatch) == 0
    assert accounts.user("wang") is None


def test_check_config_warns_when_the_console_is_on_and_nobody_can_log_in(tmp_path, monkeypatch):
    etc = write_minimal_config(tmp_path, console={"enabled": True})
    assert any("console.users_file" in w and "nobody can log in" in w for w in load_config(etc).warnings)
    assert run(etc, "add", "wang", "--password-stdin", stdin="s3cret-pass\n", monkeypatch=monkeypatch) == 0
    assert not any("console.users_file" in w for w in load_config(etc).warnings)
