"""Fault catalogue rows for the label server (``alignzoo label``): bad requests against the real server, bad options
against the real command.

One server per module (a subprocess, as a person starts it) holds a session with one saved judgment. Each HTTP row
sends one raw request and checks the status, the JSON error (the field at fault, a message that says the fix), that
the server logged no traceback and still answers, and that ``labels.jsonl`` is byte-identical. Each CLI row runs
``alignzoo label`` in this process on the same session folder and checks exit 2, one ``alignzoo: error:`` line that
names the option and the fix, no traceback, and ``labels.jsonl`` unchanged (the row passes the live server's port, so
a command that failed to refuse would stop at "cannot listen" instead of serving). Last, a 100 MB body is streamed at
the server: refused with 413 (or 411 when chunked) while its memory grows by less than 50 MB.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import datasets  # noqa: F401 - first imported here, not in a CLI row: its log handler keeps that sys.stderr
import pytest

ITEMS = [{"prompt": f"review {i}: the film was", "chosen": f" great {i}", "rejected": f" awful {i}"} for i in range(3)]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    csrf: str
    items: list[str]
    out: Path
    log: Path
    labels: bytes = b""  # labels.jsonl after the one good judgment

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"",
                length: Optional[str] = "auto") -> tuple[int, dict[str, str], bytes]:
        """One raw HTTP/1.1 request (headers exactly as given, plus Host); ``length``: the Content-Length header
        ("auto": the body's size; None: none)."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if length is not None:
            lines.append(f"Content-Length: {len(body) if length == 'auto' else length}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            return _read_response(sock)

    def judge(self, body: Any, headers: Optional[dict[str, str]] = None, **kw: Any) -> tuple[int, dict, bytes]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", "X-CSRF-Token": self.csrf, **(headers or {})}
        return self.request("POST", "/api/judge", sent, raw, **kw)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    want = int(headers.get("content-length", "0"))
    while len(body) < want:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def _start(src: Path, out: Path, log: Path) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "ALIGNZOO_PLUGINS": "", "PYTHONUNBUFFERED": "1"}
    env.pop("ALIGNZOO_LABEL_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "alignzoo", "label", "--from", str(src), "--out", str(out),
                             "--annotator", "tester", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=open(log, "a"), text=True, env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("alignzoo label: http"):
                port = int(re.search(r":(\d+)/", line).group(1))
                while time.monotonic() < deadline:  # the URL is printed once bound; uvicorn listens a moment later
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        return proc, port
                    except ConnectionRefusedError:
                        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the label server did not start: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("label-faults")
    src, out, log = tmp / "src.jsonl", tmp / "session", tmp / "server.log"
    src.write_text("".join(json.dumps(r) + "\n" for r in ITEMS))
    proc, port = _start(src, out, log)
    try:
        items = [json.loads(line)["id"] for line in (out / "items.jsonl").read_text().splitlines()]
        s = Server(proc, port, "", items, out, log)
        status, _, page = s.request("GET", "/?annotator=tester", {})
        assert status == 200
        s.csrf = re.search(rb'name="csrf-token" content="([^"]+)"', page).group(1).decode()
        status, _, body = s.judge({"item": items[0], "judgment": "pick", "ranking": [1, 0], "seconds": 1.5})
        assert status == 200, body
        s.labels = (out / "labels.jsonl").read_bytes()
        assert s.labels.count(b"\n") == 1
        yield s
    finally:
        proc.kill()
        proc.wait(10)


# -- the rows --------------------------------------------------------------------------------------------------------
@dataclass
class HttpRow:
    """A bad request: ``send(server)`` -> (status, headers, body); the JSON error must hold ``says``."""

    id: str
    send: Any
    status: int
    says: tuple[str, ...]
    field: Optional[str] = None
    closes: bool = False  # the body was not read: the connection must be closed


@dataclass
class CliRow:
    """Bad options of ``alignzoo label``: exit 2 and one error line holding ``says``."""

    id: str
    args: list[str]
    says: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    setup: Optional[Callable[[Path], list[str]]] = None  # more args, from files it writes in a temporary folder


def _latin1_source(tmp: Path) -> list[str]:
    src = tmp / "latin.jsonl"
    src.write_bytes(json.dumps(ITEMS[0]).encode() + b'\n{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n')
    return ["--from", str(src), "--out", str(tmp / "new-session")]


def _pick(s: Server, **fields: Any) -> dict[str, Any]:
    return {"item": s.items[1], "judgment": "pick", "ranking": [0, 1], **fields}


MAX_BODY = ("this server accepts at most 65536 (64 KB)", "--max-body-kb")
ROWS: list[Any] = [
    HttpRow("label-body-over-limit", lambda s: s.judge(b"{", length="65537"), 413,
            ("the request body is 65537 bytes", *MAX_BODY), closes=True),
    HttpRow("label-demonstration-over-body-limit", lambda s: s.judge(_pick(s, demonstration="\u00e9" * 19000)), 413,
            ("the request body is", *MAX_BODY, "shorten it (a long demonstration?)"), closes=True),
    HttpRow("label-no-content-length", lambda s: s.judge(b"", length=None), 411,
            ("a write needs a Content-Length header",), closes=True),
    HttpRow("label-chunked-body", lambda s: s.judge(b"5\r\n{}{}{\r\n0\r\n\r\n", {"Transfer-Encoding": "chunked"},
                                                    length=None), 411,
            ("chunked transfer encoding is not accepted", "send the body with a Content-Length"), closes=True),
    HttpRow("label-foreign-origin", lambda s: s.judge(_pick(s), {"Origin": "http://evil.example"}), 403,
            ("a write from another origin ('http://evil.example') is refused", "this server's own page"), closes=True),
    HttpRow("label-null-origin", lambda s: s.judge(_pick(s), {"Origin": "null"}), 403,
            ("a write from another origin ('null')",), closes=True),
    HttpRow("label-missing-csrf-token", lambda s: s.judge(_pick(s), {"X-CSRF-Token": ""}), 403,
            ("missing or wrong CSRF token", "reload the page")),
    HttpRow("label-not-json", lambda s: s.judge(b'{"item": '), 400,
            ("the body is not valid JSON", "send one JSON object")),
    HttpRow("label-deeply-nested-json", lambda s: s.judge(b"[" * 60000), 400,
            ("the body is not valid JSON (RecursionError",)),
    HttpRow("label-not-an-object", lambda s: s.judge([1, 2]), 400,
            ("the body must be a JSON object with the fields item, judgment",)),
    HttpRow("label-unknown-field", lambda s: s.judge(_pick(s, is_admin=True)), 400,
            ("is_admin: unknown field; a judgment has only item, judgment, annotator",), "is_admin"),
    HttpRow("label-missing-item", lambda s: s.judge({"judgment": "tie"}), 400, ("item: is required",), "item"),
    HttpRow("label-ranking-wrong-type", lambda s: s.judge(_pick(s, ranking=[0, "1"])), 400,
            ("ranking: must be a list of integers (got [0, '1'])",), "ranking"),
    HttpRow("label-ranking-out-of-range", lambda s: s.judge(_pick(s, ranking=[0, 5])), 400,
            ("ranking: must order all 2 completions (a permutation of 0..1), got [0, 5]",), "ranking"),
    HttpRow("label-rating-out-of-range", lambda s: s.judge(_pick(s, ratings=[0, 6])), 400,
            ("ratings: must be 2 integers in 0..5 (0: not rated), got [0, 6]",), "ratings"),
    HttpRow("label-seconds-not-a-number", lambda s: s.judge(_pick(s, seconds="soon")), 400,
            ("seconds: must be a finite number (got 'soon')",), "seconds"),
    HttpRow("label-item-too-long", lambda s: s.judge(_pick(s, item="x" * 500)), 400,
            ("item: is 500 characters long; at most 64 are accepted",), "item"),
    HttpRow("label-unknown-item", lambda s: s.judge(_pick(s, item="abc")), 400,
            ("item: unknown comparison 'abc'; take the ids from /api/state",), "item"),
    HttpRow("label-demonstration-too-long", lambda s: s.judge(_pick(s, demonstration="d" * 20001)), 400,
            ("demonstration: is 20001 characters long; at most 20000",), "demonstration"),
    HttpRow("label-unpaired-surrogate",
            lambda s: s.judge(b'{"item": "x", "judgment": "tie", "demonstration": "\\ud800"}'), 400,
            ("demonstration: holds an unpaired UTF-16 surrogate", "send valid UTF-8 text"), "demonstration"),
    HttpRow("label-annotator-control-character", lambda s: s.judge(_pick(s, annotator="bob\u0007")), 400,
            ("annotator: 'bob\\x07' contains a control character (U+0007)", "1-64 letters, digits or _.@-"),
            "annotator"),
    HttpRow("label-annotator-trailing-newline", lambda s: s.request("GET", "/api/state?annotator=bob%0A", {}), 400,
            ("control character (U+000A)",), "annotator"),
    CliRow("label-cli-short-access-token", ["--access-token", "hunter2"],
           ("--access-token is 7 characters long; an access token needs at least 16", "secrets.token_urlsafe")),
    CliRow("label-cli-access-token-from-env", [], ("--access-token (from $ALIGNZOO_LABEL_TOKEN) is 5 characters long",),
           env={"ALIGNZOO_LABEL_TOKEN": "short"}),
    CliRow("label-cli-access-token-not-url-safe", ["--access-token", "correct horse battery staple"],
           ("--access-token may hold only letters, digits and -._~",)),
    CliRow("label-cli-annotator-control-character", ["--annotator", "bob\x1b[31m"],
           ("--annotator 'bob\\x1b[31m' contains a control character (U+001B)", "1-64 letters, digits or _.@-")),
    CliRow("label-cli-annotator-too-long", ["--annotator", "a" * 65], ("is 65 characters long",)),
    CliRow("label-cli-max-body-zero", ["--max-body-kb", "0"], ("--max-body-kb must be between 1 and 10240 (got 0)",)),
    CliRow("label-cli-from-file-not-utf8", [], ("latin.jsonl is not UTF-8 text: line 2 (1-based) has byte 0xe9 at "
                                                "column 16", "save the file as UTF-8"), setup=_latin1_source),
]
HTTP = [r for r in ROWS if isinstance(r, HttpRow)]
CLI = [r for r in ROWS if isinstance(r, CliRow)]


def _still_serving(s: Server) -> None:
    status, _, body = s.request("GET", "/api/state?annotator=tester", {})
    assert status == 200 and json.loads(body)["judged"] == 1
    assert (s.out / "labels.jsonl").read_bytes() == s.labels  # nothing refused was written
    assert "Traceback" not in s.log.read_text()


@pytest.mark.parametrize("row", HTTP, ids=[r.id for r in HTTP])
def test_bad_request(row: HttpRow, server: Server):
    status, headers, body = row.send(server)
    assert status == row.status, body[:500]
    error = json.loads(body)
    for fragment in row.says:
        assert fragment in error["error"], (fragment, error)
    assert error["field"] == row.field
    assert len(error["error"]) < 400  # a large bad value is not echoed back
    assert headers["content-security-policy"].startswith("default-src 'none'")  # refusals get the headers too
    assert (headers.get("connection") == "close") == row.closes
    _still_serving(server)


@pytest.mark.parametrize("row", CLI, ids=[r.id for r in CLI])
def test_bad_option(row: CliRow, server: Server, tmp_path, capsys, monkeypatch):
    from alignzoo.cli import main

    monkeypatch.delenv("ALIGNZOO_LABEL_TOKEN", raising=False)
    for k, v in row.env.items():
        monkeypatch.setenv(k, v)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["label", "--out", str(server.out), "--port", str(server.port), *row.args,
              *(row.setup(tmp_path) if row.setup else [])])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("alignzoo: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in row.says:
        assert fragment in lines[0], (fragment, err)
    assert "hunter2" not in err and "horse" not in err  # a token is never printed
    _still_serving(server)


# -- a 100 MB body -----------------------------------------------------------------------------------------------
def _rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def _stream(s: Server, head: bytes, total: int) -> tuple[bytes, int, int]:
    """Send ``head`` then up to ``total`` zero bytes (1 MB at a time, one buffer) while reading the reply; returns
    (the reply, bytes of body sent, the server's highest RSS seen meanwhile)."""
    chunk = memoryview(bytes(1 << 20))
    sent, reply, peak = 0, b"", 0
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        closed = False
        while not closed:
            readable, writable, _ = select.select([sock], [sock] if sent < total else [], [], 5.0)
            if not readable and not writable:
                break  # nothing more to send and no reply
            if readable:
                try:
                    got = sock.recv(65536)
                except ConnectionResetError:
                    got = b""
                reply += got
                closed = not got
            if writable and not closed:
                try:
                    sent += sock.send(chunk[: min(len(chunk), total - sent)])
                except (BrokenPipeError, ConnectionResetError):
                    closed = True  # the server hung up on the body: that is the refusal
            peak = max(peak, _rss(s.proc.pid))
    return reply, sent, peak


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_100_mb_post_is_refused_without_the_server_growing(framing: str, server: Server):
    total = 100 << 20
    size = f"Content-Length: {total}" if framing == "content-length" else "Transfer-Encoding: chunked"
    head = (f"POST /api/judge HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
            f"X-CSRF-Token: {server.csrf}\r\n{size}\r\n\r\n").encode()
    if framing == "chunked":
        head += f"{total:x}\r\n".encode()  # one 100 MB chunk
    before = _rss(server.proc.pid)
    reply, sent, peak = _stream(server, head, total)
    after = _rss(server.proc.pid)
    expected = b"HTTP/1.1 413 " if framing == "content-length" else b"HTTP/1.1 411 "
    assert reply.startswith(expected), (reply[:300], sent)
    assert b"connection: close" in reply.lower()
    assert max(after, peak) - before < 50 << 20, (before, peak, after, sent)
    _still_serving(server)


@pytest.mark.parametrize("path", ["/static/../server.py", "/static/..%2fserver.py", "/static/....//server.py",
                                  "/static/%2e%2e/%2e%2e/label/store.py", "/static//etc/passwd"])
def test_static_files_stay_inside_their_folder(path: str, server: Server):
    status, _, body = server.request("GET", path, {})
    assert status in (400, 404), (status, body[:200])
    assert b"import" not in body and b"root:" not in body
    assert server.request("GET", "/static/label.js", {})[0] == 200
    _still_serving(server)
