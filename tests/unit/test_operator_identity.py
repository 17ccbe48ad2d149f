"""Who may act through the control socket: the site's `operators:` section resolved against a (fake) user
database, and the decisions for each caller uid. The real socket and SO_PEERCRED: tests/integration/
test_control_operators.py."""

from __future__ import annotations

from typing import Optional

import pytest
from pydantic import ValidationError

from lanectl.adapters.operator_identity import (AnyMember, Operator, OperatorConfigError, OperatorMap,
                                                OperatorRefused, Peer, resolve_operators)
from lanectl.config import ConfigError, load_config
from lanectl.config.operators import OperatorsConfig
from tests.minimal_site import write_minimal_config


class FakeAccounts:
    """wang 1001 (groups booth 2001), li 1002 (groups booth, office 2002), zhao 1003 (no group), root 0 (booth
    too, to prove group grants do not reach it); uid 1500 has no passwd entry."""

    USERS = {0: "root", 1001: "wang", 1002: "li", 1003: "zhao"}
    GROUPS = {"booth": 2001, "office": 2002, "root": 0}
    MEMBERS = {0: {0, 2001}, 1001: {1001, 2001}, 1002: {1002, 2001, 2002}, 1003: {1003}}

    def user_name(self, uid: int) -> Optional[str]:
        return self.USERS.get(uid)

    def group_ids(self, uid: int) -> frozenset[int]:
        return frozenset(self.MEMBERS.get(uid, ()))

    def uid_of(self, name: str) -> Optional[int]:
        return next((u for u, n in self.USERS.items() if n == name), None)

    def gid_of(self, group: str) -> Optional[int]:
        return self.GROUPS.get(group)


def gate(section: dict) -> OperatorMap:
    g = resolve_operators(OperatorsConfig.model_validate(section), FakeAccounts())
    assert isinstance(g, OperatorMap)
    return g


def peer(uid: int, gid: Optional[int] = None) -> Peer:
    return Peer(pid=4242, uid=uid, gid=uid if gid is None else gid)


SITE = {"users": {"wang": {"name": "王师傅", "roles": ["open", "topup"]}, 1003: {"roles": ["open"]}},
        "groups": {"booth": ["open"], "office": ["topup"]}}


def refused(g, p, role, claimed=None) -> str:
    with pytest.raises(OperatorRefused) as info:
        g.admit(p, role, claimed)
    return info.value.code


def test_a_mapped_user_acts_under_the_mapped_name_and_its_uid():
    g = gate(SITE)
    assert g.admit(peer(1001), "open", None) == Operator("王师傅", 1001)
    assert g.admit(peer(1001), "topup", "王师傅") == Operator("王师傅", 1001)


def test_a_user_listed_by_uid_without_a_name_is_its_unix_name():
    assert gate(SITE).admit(peer(1003), "open", None) == Operator("zhao", 1003)


def test_group_members_act_under_their_unix_name_with_the_groups_roles():
    g = gate(SITE)
    assert g.admit(peer(1002), "open", None) == Operator("li", 1002)  # booth
    assert g.admit(peer(1002), "topup", "li") == Operator("li", 1002)  # office


def test_the_callers_primary_group_from_the_kernel_counts():
    # uid 1500 has no passwd entry; the kernel says its process runs with gid booth
    assert gate(SITE).admit(peer(1500, gid=2001), "open", None) == Operator("uid:1500", 1500)


def test_an_unmapped_uid_is_not_an_operator():
    g = gate(SITE)
    assert refused(g, peer(1500), "open") == "not_an_operator"
    assert refused(g, peer(1500), "open", "王师傅") == "not_an_operator"


def test_a_role_not_granted_is_not_allowed():
    g = gate(SITE)
    assert refused(g, peer(1003), "topup") == "not_allowed"
    assert refused(g, peer(1003), "topup", "zhao") == "not_allowed"


def test_a_name_that_is_not_the_uids_is_refused():
    g = gate(SITE)
    assert refused(g, peer(1001), "open", "李") == "operator_mismatch"
    assert refused(g, peer(1001), "open", "wang") == "operator_mismatch"  # the mapped name, not the login


def test_root_acts_only_when_listed_itself():
    assert refused(gate({"groups": {"booth": ["open"], "root": ["open"]}}), peer(0), "open") == "not_an_operator"
    g = gate({"users": {0: {"name": "值班管理员", "roles": ["open"]}}})
    assert g.admit(peer(0), "open", None) == Operator("值班管理员", 0)


def test_no_credentials_from_the_kernel_are_refused_when_operators_are_configured():
    assert refused(gate(SITE), None, "open", "王师傅") == "not_an_operator"


def test_without_a_section_anyone_may_act_and_the_uid_is_kept():
    g = resolve_operators(None, FakeAccounts())
    assert isinstance(g, AnyMember) and not g.configured
    assert g.admit(peer(1003), "open", "张三") == Operator("张三", 1003)
    assert g.admit(peer(1003), "topup", None) == Operator("zhao", 1003)
    assert g.admit(peer(1500), "open", None) == Operator("uid:1500", 1500)
    assert g.admit(None, "open", "张三") == Operator("张三", None)
    assert refused(g, None, "open") == "missing_field"


def test_names_that_do_not_resolve_are_config_errors():
    with pytest.raises(OperatorConfigError) as info:
        resolve_operators(OperatorsConfig.model_validate({
            "users": {"nobodyhere": {"roles": ["open"]}, "wang": {"roles": ["open"]}, 1001: {"roles": ["topup"]},
                      "li": {"name": "王师傅", "roles": ["open"]}, "zhao": {"name": "王师傅", "roles": ["open"]}},
            "groups": {"nogroup_here": ["open"]}}), FakeAccounts())
    assert info.value.problems == [
        "operators.users.nobodyhere: no unix user 'nobodyhere' on this machine",
        "operators.users.1001: uid 1001 is already listed as operators.users.wang",
        "operators.users.zhao: operator name '王师傅' is already operators.users.li's (one name, one person)",
        "operators.groups.nogroup_here: no unix group 'nogroup_here' on this machine",
    ]


@pytest.mark.parametrize(("section", "fragment"), [
    ({}, "lists nobody"),
    ({"users": {}, "groups": {}}, "lists nobody"),
    ({"users": {"wang": {"roles": []}}}, "at least one role"),
    ({"users": {"wang": {"roles": ["open", "open"]}}}, "listed twice"),
    ({"users": {"wang": {"roles": ["release"]}}}, "'open' or 'topup'"),
    ({"users": {"wang": {"roles": ["open"], "nmae": "x"}}}, "Extra inputs"),
    ({"users": {"wang": {"name": " ", "roles": ["open"]}}}, "blank"),
    ({"users": {"wang": {"name": "a\nb", "roles": ["open"]}}}, "control characters"),
    ({"users": {"wang": {"name": "x" * 65, "roles": ["open"]}}}, "at most 64"),
    ({"users": {"two words": {"roles": ["open"]}}}, "neither a unix user name nor a uid"),
    ({"groups": {"booth": []}}, "at least one role"),
    ({"groups": {"-x": ["open"]}}, "not a unix group name"),
])
def test_section_shape_errors(section, fragment):
    with pytest.raises(ValidationError, match=fragment):
        OperatorsConfig.model_validate(section)


def test_the_site_file_carries_the_section_and_warns_without_it(tmp_path):
    etc = write_minimal_config(tmp_path / "a", operators={"users": {1001: {"name": "王师傅", "roles": ["open"]}}})
    config = load_config(etc)
    assert config.site.operators is not None and config.site.operators.users["1001"].name == "王师傅"
    assert not [w for w in config.warnings if "operators" in w]
    bare = load_config(write_minimal_config(tmp_path / "b"))
    assert bare.site.operators is None
    [warning] = [w for w in bare.warnings if "operators" in w]
    assert "site.yaml: operators: not configured" in warning and "uid is recorded" in warning


def test_a_typo_in_the_section_names_file_and_key(tmp_path):
    etc = write_minimal_config(tmp_path, operators={"users": {"wang": {"roles": ["opne"]}}})
    with pytest.raises(ConfigError) as info:
        load_config(etc)
    assert any(p.startswith(f"{etc / 'site.yaml'}: operators.users.wang.roles.0:") for p in info.value.problems)


def test_check_config_names_an_operator_that_does_not_exist_here(tmp_path, capsys):
    from lanectl import cli
    etc = write_minimal_config(tmp_path, operators={"users": {"no_such_user_here": {"roles": ["open"]}}})
    assert cli.main(["check-config", str(etc)]) == 1
    err = capsys.readouterr().err
    assert f"{etc / 'site.yaml'}: operators.users.no_such_user_here: no unix user 'no_such_user_here'" in err


def test_check_config_warns_without_the_section(tmp_path, capsys):
    from lanectl import cli
    assert cli.main(["check-config", str(write_minimal_config(tmp_path))]) == 0
    assert "operators: not configured" in capsys.readouterr().out
