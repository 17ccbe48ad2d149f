"""Picture links for the platforms: a link is made only for a picture under the images folder when a public
URL is set, it fetches the file through a real aiohttp listener, and a wrong token, another file's token, a
pruned file or a path that climbs out all get the same 404. The key survives a restart and is 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from lanectl.adapters.image_links import KEY_FILE, ROUTE, ImageLinks, load_or_make_key

JPEG = b"\xff\xd8\xff\xe0" + b"picture" * 100 + b"\xff\xd9"


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    (root / "out1").mkdir(parents=True)
    (root / "out1" / "20261206-080000-000001_7.jpg").write_bytes(JPEG)
    (root / "out_2").mkdir()
    (root / "out_2" / "20261206-080001-000002_8.jpg").write_bytes(JPEG[::-1])
    (tmp_path / "secret.jpg").write_bytes(b"not a lane picture")
    return root


@pytest.fixture
async def served(images: Path, tmp_path: Path) -> AsyncIterator[tuple[ImageLinks, str]]:
    links = ImageLinks.open(images, "http://placeholder", tmp_path)
    app = web.Application()
    app.router.add_get(ROUTE, links.route())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    links.base = f"http://127.0.0.1:{port}/images"
    try:
        yield links, links.base
    finally:
        await runner.cleanup()


async def _get(url: str) -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.read(), r.headers.get("Content-Type", "")


async def test_a_link_fetches_the_picture_it_names(served, images):
    links, base = served
    url = links.url(str(images / "out1" / "20261206-080000-000001_7.jpg"))
    assert url is not None and url.startswith(base + "/out1/20261206-080000-000001_7.jpg?t=")
    assert await _get(url) == (200, JPEG, "image/jpeg")
    second_lane = links.url(str(images / "out_2" / "20261206-080001-000002_8.jpg"))
    assert second_lane is not None
    status, body, _ = await _get(second_lane)
    assert (status, body) == (200, JPEG[::-1])
    assert links.counts["served"] == 2


async def test_wrong_token_other_files_token_pruned_file_and_climbing_out_are_one_404(served, images):
    links, base = served
    good = links.url(str(images / "out1" / "20261206-080000-000001_7.jpg"))
    assert good is not None
    token = urlsplit(good).query.split("=", 1)[1]
    other = links.url(str(images / "out_2" / "20261206-080001-000002_8.jpg"))
    assert other is not None
    other_token = urlsplit(other).query.split("=", 1)[1]
    for url in (good[:-1] + ("0" if good[-1] != "0" else "1"),  # one digit off
                f"{base}/out1/20261206-080000-000001_7.jpg?t={other_token}",  # a token for another file
                f"{base}/out1/20261206-080000-000001_7.jpg",  # none
                f"{base}/out1/..%2Fsecret.jpg?t={token}"):  # climbing out
        status, body, _ = await _get(url)
        assert (status, body) == (404, b"no such picture"), url
    # ".." is folded by the client or the router before it reaches the handler: still nothing served
    status, body, _ = await _get(f"{base}/%2E%2E/secret.jpg?t={links.token('..', 'secret.jpg')}")
    assert status == 404 and b"lane picture" not in body
    assert links.resolve("..", "secret.jpg", links.token("..", "secret.jpg")) is None
    (images / "out1" / "20261206-080000-000001_7.jpg").unlink()  # pruned by the retention limit
    assert (await _get(good))[0] == 404
    assert links.counts["served"] == 0 and links.counts["refused"] == 5


def test_no_link_without_a_public_url_or_for_files_outside_the_folder(images, tmp_path):
    key = b"k" * 32
    picture = str(images / "out1" / "20261206-080000-000001_7.jpg")
    assert ImageLinks(images, "", key).url(picture) is None
    links = ImageLinks(images, "https://lot.example.com/lanectl/images/", key)
    assert links.url(picture) == ("https://lot.example.com/lanectl/images/out1/20261206-080000-000001_7.jpg?t="
                                  + links.token("out1", "20261206-080000-000001_7.jpg"))
    for outside in (str(tmp_path / "secret.jpg"), str(images / "out1"), str(images / "out1" / "x" / "y.jpg"),
                    str(images / "out1" / "notes.txt"), "", None):
        assert links.url(outside) is None, outside
    # the token is the key's: another lot's key gives another token
    assert ImageLinks(images, "https://x", b"j" * 32).token("out1", "a.jpg") != links.token("out1", "a.jpg")


def test_the_key_is_kept_0600_and_survives_a_restart(tmp_path):
    path = tmp_path / "state" / KEY_FILE
    first = load_or_make_key(path)
    assert len(first) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_make_key(path) == first
    path.write_text("not hex\n")
    second = load_or_make_key(path)  # unreadable: a new key (old links stop working; logged)
    assert second != first and load_or_make_key(path) == second
