"""The checks made on every camera push before its body is read (adapters/camera_auth.py)."""

from __future__ import annotations

import base64
import ipaddress

import pytest

from lanectl.adapters.camera_auth import (NO_CREDENTIALS, SOURCE_NOT_ALLOWED, WRONG_CREDENTIALS, CameraAuth,
                                          CredentialError, camera_auth)
from lanectl.config.base import SecretRef
from lanectl.config.devices import VzenithCameraConfig


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


NETS = (ipaddress.ip_network("192.168.10.0/28"), ipaddress.ip_network("fd00::/64"))


@pytest.mark.parametrize("peer, allowed", [
    ("192.168.10.5", True), ("::ffff:192.168.10.5", True), ("fd00::7", True), ("fe80::1%eth0", False),
    ("192.168.10.16", False), ("::ffff:192.168.10.16", False), ("", False), (None, False), ("not-an-ip", False)])
def test_the_allow_list_takes_addresses_networks_and_dual_stack_peers(peer, allowed):
    auth = CameraAuth(allow_from=NETS, token="t" * 16)
    assert auth.check(peer, None, "t" * 16) is (None if allowed else SOURCE_NOT_ALLOWED)


def test_basic_auth_and_token_answers():
    auth = CameraAuth(username="cam", password="pa:ss 密码")
    assert auth.check("10.0.0.1", basic("cam", "pa:ss 密码"), None) is None
    assert auth.check("10.0.0.1", "basic " + basic("cam", "pa:ss 密码")[6:], None) is None  # scheme in any case
    assert auth.check("10.0.0.1", None, None) is NO_CREDENTIALS
    for header in (basic("cam", "pa:ss"), basic("Cam", "pa:ss 密码"), "Basic bm9jb2xvbg==", "Basic ***", "Token x"):
        assert auth.check("10.0.0.1", header, None) is WRONG_CREDENTIALS, header
    assert auth.check("10.0.0.1", basic("cam", "pa:ss 密码"), "extra") is WRONG_CREDENTIALS
    token = CameraAuth(token="0123456789abcdef")
    assert token.check("10.0.0.1", None, "0123456789abcdef") is None
    assert token.check("10.0.0.1", None, None) is NO_CREDENTIALS
    assert token.check("10.0.0.1", None, "0123456789abcdeF") is WRONG_CREDENTIALS
    assert token.check("10.0.0.1", basic("cam", "x"), None) is NO_CREDENTIALS  # a header it does not use
    open_ = CameraAuth()  # insecure: true
    assert open_.check("10.0.0.1", None, None) is None and open_.check("1.2.3.4", basic("a", "b"), None) is None


def test_credentials_are_resolved_and_must_fit_where_the_camera_puts_them():
    secrets = {"pw": "hunter2-long", "tok": "A" * 16, "short": "abc", "slash": "a/b" * 8, "empty": ""}

    def secret(ref: SecretRef, where: str) -> str:
        return secrets[ref.secret]

    cfg = VzenithCameraConfig(kind="vzenith_http", allow_from=["192.168.10.21"],
                              basic_auth={"username": "cam", "password": {"secret": "pw"}}, token={"secret": "tok"})
    auth = camera_auth(cfg, secret, "in1.yaml: devices.camera")
    assert (auth.username, auth.password, auth.token) == ("cam", "hunter2-long", "A" * 16)
    assert auth.allow_from == (ipaddress.ip_network("192.168.10.21/32"),)
    where = "in1.yaml: devices.camera"
    for key in ("short", "slash"):
        with pytest.raises(CredentialError, match=r"in1.yaml: devices.camera.token: .*at least 16"):
            camera_auth(VzenithCameraConfig(kind="vzenith_http", token={"secret": key}), secret, where)
    empty = VzenithCameraConfig(kind="vzenith_http", basic_auth={"username": "c", "password": {"secret": "empty"}})
    with pytest.raises(CredentialError, match="basic_auth.password: empty"):
        camera_auth(empty, secret, where)
    assert "hunter2" not in repr(auth), "secrets stay out of reprs and logs"
