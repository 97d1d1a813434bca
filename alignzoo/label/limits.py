"""The label server's limits, as pure functions: each returns what is wrong (and the fix), or ``None``.

They are checked on the request line and headers only, before any body byte is read, so a huge or endless body costs
the server nothing: its size comes from ``Content-Length`` (a write without one, or a chunked one, is refused), and
a refusal closes the connection instead of draining the rest. Writes from another origin are refused; the command's
options (annotator id, access token, body limit) are checked before the session opens.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

DEFAULT_MAX_BODY_KB = 64  # a judgment is well under 1 KB; a 20000-character demonstration fits in most scripts
MAX_BODY_KB = 10240  # the most --max-body-kb accepts (10 MB)
MAX_ANNOTATOR = 64  # characters of an annotator id
MIN_TOKEN = 16  # characters of an access token (16 URL-safe characters: ~96 bits)
ANNOTATOR_CHAR = re.compile(r"[A-Za-z0-9_.@-]")  # ids are safe in file names, URLs and HTML as they are
TOKEN = re.compile(r"[A-Za-z0-9._~-]+")  # URL-safe: the token travels in the printed URL and in a cookie
ANNOTATOR_RULE = f"an annotator id is 1-{MAX_ANNOTATOR} letters, digits or _.@-"
MAKE_TOKEN = "make one with: python -c \"import secrets; print(secrets.token_urlsafe(24))\""
WRITES = ("POST", "PUT", "PATCH", "DELETE")  # methods that carry a body and change something
DEFAULT_PORTS = {"http": 80, "https": 443}


def annotator_problem(name: Any) -> Optional[str]:
    """Why ``name`` is not an annotator id (it is shown on the page, stored in every line, used in URLs)."""
    if not isinstance(name, str):
        return f"must be text (got {type(name).__name__}); {ANNOTATOR_RULE}"
    if not name:
        return f"is empty; {ANNOTATOR_RULE}"
    if len(name) > MAX_ANNOTATOR:
        return f"is {len(name)} characters long; {ANNOTATOR_RULE}"
    bad = next((c for c in name if not ANNOTATOR_CHAR.fullmatch(c)), None)
    if bad is None:
        return None
    what = f"a control character (U+{ord(bad):04X})" if unicodedata.category(bad).startswith("C") else repr(bad)
    return f"contains {what}; {ANNOTATOR_RULE}"


def token_problem(token: str) -> Optional[str]:
    """Why ``token`` is too weak or unusable as ``--access-token``."""
    if len(token) < MIN_TOKEN:
        return f"is {len(token)} characters long; an access token needs at least {MIN_TOKEN} ({MAKE_TOKEN})"
    if not TOKEN.fullmatch(token):
        return (f"may hold only letters, digits and -._~ (it travels in the page's URL and in a cookie); "
                f"{MAKE_TOKEN}")
    return None


def max_body_problem(kb: int) -> Optional[str]:
    if not 1 <= kb <= MAX_BODY_KB:
        return f"must be between 1 and {MAX_BODY_KB} (got {kb}); the default {DEFAULT_MAX_BODY_KB} holds any judgment"
    return None


def body_problem(method: str, headers: Mapping[str, str], max_bytes: int) -> Optional[tuple[int, str]]:
    """``(status, message)`` when the body this request announces may not be read: chunked (411), a write without
    ``Content-Length`` (411), an invalid one (400), or more than ``max_bytes`` (413)."""
    if headers.get("transfer-encoding") is not None:
        return 411, "chunked transfer encoding is not accepted; send the body with a Content-Length header"
    length = headers.get("content-length")
    if length is None:
        return (411, "a write needs a Content-Length header (the body's size in bytes)") if method in WRITES else None
    if not re.fullmatch(r"[0-9]+", length.strip()):
        return 400, f"Content-Length {length[:24]!r} is not a number of bytes"
    size = int(length) if len(length.strip()) <= 18 else max_bytes + 1
    if size > max_bytes:
        return 413, (f"the request body is {size} bytes; this server accepts at most {max_bytes} "
                     f"({max_bytes // 1024} KB): shorten it (a long demonstration?), or restart `alignzoo label` "
                     "with a larger --max-body-kb")
    return None


def _host_port(netloc: str, default: int) -> tuple[str, int]:
    parsed = urlsplit("//" + netloc)
    return (parsed.hostname or "").lower(), parsed.port or default


def origin_problem(method: str, headers: Mapping[str, str]) -> Optional[str]:
    """Why a write's ``Origin`` is not this server's own (the host and port it was addressed as, ``Host``).

    Browsers send ``Origin`` on every POST, so a page of another site (or a sandboxed or ``file:`` page: ``null``)
    is refused here. A request without ``Origin`` is not a browser's; it passes, and still needs the CSRF token,
    which only this server's own page holds. A missing port matches the origin scheme's default, so a TLS proxy in
    front (``https://host`` to ``Host: host``) works."""
    origin = headers.get("origin")
    if method not in WRITES or origin is None:
        return None
    scheme = urlsplit(origin).scheme.lower()
    try:
        ours = scheme in DEFAULT_PORTS and (_host_port(urlsplit(origin).netloc, DEFAULT_PORTS[scheme])
                                            == _host_port(headers.get("host", ""), DEFAULT_PORTS[scheme]))
    except ValueError:  # a port that is not a number
        ours = False
    if ours:
        return None
    return (f"a write from another origin ({origin[:80]!r}) is refused; judge on this server's own page (the URL "
            f"`alignzoo label` printed), or send no Origin header from a script")
