"""Malformed HTTP: requests an HTTP parser must refuse, sent on a raw socket (an HTTP client would not send them).

`KINDS` names every kind the fuzzer and tests/integration/test_malformed_http.py send: a bad request line, bad
headers, bad Content-Length, bad chunking, garbage bytes, other protocols on the port. `raw_requests()` is a
hypothesis strategy over them (with random garbage mixed in); `send_raw()` sends one and reads the status.
"""

from __future__ import annotations

import asyncio
import re
from typing import Callable, Optional

from hypothesis import strategies as st

Build = Callable[[str], bytes]  # (path) -> the bytes of one request


def _req(head: str, body: bytes = b"", path_line: Optional[str] = None) -> Build:
    def build(path: str) -> bytes:
        text = head.replace("{path}", path)
        return text.encode("latin-1") + body
    return build


def _bytes(raw: bytes) -> Build:
    return lambda path: raw.replace(b"{path}", path.encode("latin-1"))


CRLF = "\r\n"
KINDS: dict[str, Build] = {
    # request line
    "bad method": _req("G\x01T {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
    "lower-case method with spaces": _req("po st {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
    "no version": _req("POST {path}\r\nHost: x\r\n\r\n"),
    "unknown version": _req("POST {path} HTTP/9.9\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
    "version garbage": _req("POST {path} HTTQ/1.1\r\nHost: x\r\n\r\n"),
    "space in target": _req("POST {path} x HTTP/1.1\r\nHost: x\r\n\r\n"),
    "control byte in target": _req("GET {path}\x00\x7f HTTP/1.1\r\nHost: x\r\n\r\n"),
    "target of 64 KiB": _req("GET /" + "a" * 65536 + " HTTP/1.1\r\nHost: x\r\n\r\n"),
    "bare LF line endings": _req("POST {path} HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}"),
    # headers
    "header without colon": _req("POST {path} HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n"),
    "space before colon": _req("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length : 2\r\n\r\n{}"),
    "non-ASCII header name": _bytes(b"POST {path} HTTP/1.1\r\nHost: x\r\nX-\xe5\x90\x8d: 1\r\n\r\n"),
    "invalid UTF-8 header value": _bytes(b"POST {path} HTTP/1.1\r\nHost: x\r\nX-A: \xff\xfe\xc0\r\n"
                                         b"Content-Length: 0\r\n\r\n"),
    "NUL in header value": _req("POST {path} HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
    "obsolete line folding": _req("POST {path} HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
    "header line of 64 KiB": _req("POST {path} HTTP/1.1\r\nHost: x\r\nX-A: " + "b" * 65536 + "\r\n\r\n"),
    "500 headers": _req("POST {path} HTTP/1.1\r\nHost: x\r\n" + "".join(f"X-{i}: {i}\r\n" for i in range(500))
                        + "Content-Length: 0\r\n\r\n"),
    # Content-Length
    "negative Content-Length": _req("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}"),
    "text Content-Length": _req("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}"),
    "two Content-Lengths": _req("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}"),
    "Content-Length of 2^64": _req("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551617\r\n\r\n"),
    "Content-Length and chunked": _req("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                                       "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
    "body shorter than Content-Length": _req("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                                             "Connection: close\r\n\r\n{}"),
    # chunked bodies
    "chunk size not hex": _req("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n"
                               "0\r\n\r\n"),
    "chunk size huge": _req("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "FFFFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n"),
    "chunk size negative": _req("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n"
                                "0\r\n\r\n"),
    "chunk without CRLF": _req("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX"
                               "0\r\n\r\n"),
    "chunk longer than said": _req("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{}\r\n"
                                   "0\r\n\r\n"),
    "chunk extension garbage": _req("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    "2;\x01\x02=\"\r\n{}\r\n0\r\n\r\n"),
    "chunked then cut": _req("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                             "Connection: close\r\n\r\n10\r\n{}"),
    "unknown transfer coding": _req("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, foo\r\n\r\n"
                                    "2\r\n{}\r\n0\r\n\r\n"),
    "chunked on HTTP/1.0": _req("POST {path} HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "2\r\n{}\r\n0\r\n\r\n"),
    "bad gzip body": _req("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\n"
                          "\x1f\x8b\x00\x00"),
    "bad deflate body": _req("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Encoding: deflate\r\nContent-Length: 5\r\n"
                             "\r\nnope!"),
    # other protocols and plain garbage
    "HTTP/2 preface": _bytes(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    "TLS client hello": _bytes(bytes.fromhex("16030100a5010000a10303") + bytes(range(32)) + b"\x00\x00\x02\x13\x01"
                               b"\x01\x00\r\n\r\n"),
    "binary garbage": _bytes(bytes(range(256)) + b"\r\n\r\n"),
    "websocket upgrade without key": _req("GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                          "Connection: Upgrade\r\n\r\n"),
    "pipelined garbage after a request": _req("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01garbage\r\n\r\n"),
}


@st.composite
def raw_requests(draw: st.DrawFn, paths: list[str]) -> tuple[str, bytes]:
    """(kind, bytes): one of KINDS at one of `paths`, or random bytes after a request line."""
    path = draw(st.sampled_from(paths))
    if draw(st.integers(0, 4)) == 0:
        junk = draw(st.binary(min_size=1, max_size=512))
        return "random bytes", b"POST " + path.encode("latin-1") + b" HTTP/1.1\r\n" + junk + b"\r\n\r\n"
    kind = draw(st.sampled_from(sorted(KINDS)))
    return kind, KINDS[kind](path)


_STATUS = re.compile(rb"^HTTP/(?:1\.[01]|0\.9) ([0-9]{3})")  # aiohttp answers "POST /x" as HTTP/0.9


async def send_raw(host: str, port: int, data: bytes, timeout: float = 5.0) -> str:
    """Send `data`, half-close, read the answer: its status ("400"), "closed" when the server closed without one,
    or "timeout"."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return "connect failed"
    try:
        writer.write(data)
        try:
            await asyncio.wait_for(writer.drain(), timeout)
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, asyncio.TimeoutError):
            pass  # the server may close on the first bad byte: its answer is still worth reading
        try:
            head = await asyncio.wait_for(reader.read(64), timeout)
        except asyncio.TimeoutError:
            return "timeout"
        except OSError:
            return "closed"
        m = _STATUS.match(head)
        return m.group(1).decode() if m else ("closed" if not head else "not http " + repr(head[:30]))
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), timeout)
        except (OSError, asyncio.TimeoutError):
            pass
