"""Drain URLs: `syslog+tls://host:port`, `syslog://host:port`, `https://user:token@host/path`.

Parsed once, validated with messages a user can act on, and masked wherever they are shown: passwords in
the userinfo and the values of query parameters that look like credentials never leave the daemon.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from stackblaze.errors import UserError

SCHEMES = ("syslog+tls", "syslog", "https")
DEFAULT_PORTS = {"syslog+tls": 6514, "syslog": 514, "https": 443}
MASK = "••••••"
# Query keys whose values are credentials (matched as substrings, case-insensitively).
SECRET_KEYS = ("token", "key", "secret", "pass", "sig", "auth", "credential")
# Our own options: read by stackblaze, never sent to the receiver.
OPTIONS = ("ca",)
EXAMPLES = "syslog+tls://logs.example.com:6514, syslog://127.0.0.1:514 or https://user:token@logs.example.com/drain"


@dataclass(frozen=True)
class DrainURL:
    raw: str
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None
    target: str  # for https: the URL actually requested (no userinfo, no stackblaze options)
    ca_file: str | None

    @property
    def tls(self) -> bool:
        return self.scheme in ("syslog+tls", "https")

    @property
    def masked(self) -> str:
        return mask_url(self.raw)

    def scrub(self, text: str) -> str:
        """`text` (say, a third-party error message) with every credential of this URL masked."""
        for secret in secrets_in(self.raw):
            text = text.replace(secret, MASK)
        return text

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the receiver's certificate and name: against `?ca=` when given, else the system's
        store (which honours SSL_CERT_FILE / SSL_CERT_DIR in the daemon's environment)."""
        return ssl.create_default_context(cafile=self.ca_file)


def parse_url(raw: str) -> DrainURL:
    text = raw.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UserError(f"drain URL {mask_url(text)!r}: {exc} (e.g. {EXAMPLES})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UserError(f"drain URL {mask_url(text)!r}: scheme {parts.scheme or '(none)'!r} is not supported "
                        f"(use one of {', '.join(SCHEMES)}; e.g. {EXAMPLES})")
    host = parts.hostname
    if not host:
        raise UserError(f"drain URL {mask_url(text)!r} has no host (e.g. {EXAMPLES})")
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {key: value for key, value in query if key in OPTIONS}
    passed = [(key, value) for key, value in query if key not in OPTIONS]
    ca_file = options.get("ca") or None
    if ca_file is not None and not os.path.isfile(ca_file):
        raise UserError(f"drain URL {mask_url(text)!r}: ca={ca_file!r} is not a file "
                        "(give the path of a PEM file with the receiver's CA certificate)")
    if scheme.startswith("syslog") and (parts.path not in ("", "/") or passed):
        raise UserError(f"drain URL {mask_url(text)!r}: a syslog drain takes only host:port "
                        "(and ?ca=PATH for syslog+tls)")
    if scheme == "syslog" and ca_file is not None:
        raise UserError(f"drain URL {mask_url(text)!r}: ?ca= needs syslog+tls:// (plain syslog has no TLS)")
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None:
        netloc += f":{port}"
    target = urlunsplit(("https", netloc, parts.path or "/", urlencode(passed), ""))
    return DrainURL(
        raw=text, scheme=scheme, host=host, port=port or DEFAULT_PORTS[scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        target=target, ca_file=ca_file,
    )


def mask_url(raw: str) -> str:
    """The URL with its credentials replaced by a mask; safe to log, store in events and print."""
    try:
        parts = urlsplit(raw)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if sep else f"{MASK}@{hostport}"
    query = parts.query
    if query:
        pieces = []
        for piece in query.split("&"):  # the query as written, only the credential values replaced
            key, sep, _ = piece.partition("=")
            secret = sep and any(s in unquote(key).lower() for s in SECRET_KEYS)
            pieces.append(f"{key}={MASK}" if secret else piece)
        query = "&".join(pieces)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def secrets_in(raw: str) -> list[str]:
    """The credential values in a URL, longest first (what mask_url hides), raw and decoded."""
    try:
        parts = urlsplit(raw)
    except ValueError:
        return []
    found: list[str] = []
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        user, sep, password = userinfo.partition(":")
        found.append(password if sep else user)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if any(s in key.lower() for s in SECRET_KEYS):
            found.append(value)
    values = {v for item in found for v in (item, unquote(item), quote(item, safe="")) if v}
    return sorted(values, key=len, reverse=True)
