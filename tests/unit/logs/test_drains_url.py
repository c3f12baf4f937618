"""Drain URLs: the three schemes, their defaults, errors a user can act on, and credentials always masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackblaze.errors import UserError
from stackblaze.logs.drains.url import mask_url, parse_url


def test_schemes_and_default_ports(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    tls = parse_url(f"syslog+tls://logs.example.com?ca={ca}")
    assert (tls.scheme, tls.host, tls.port, tls.tls, tls.ca_file) == ("syslog+tls", "logs.example.com", 6514, True,
                                                                       str(ca))
    plain = parse_url("syslog://127.0.0.1:5140")
    assert (plain.port, plain.tls) == (5140, False)
    https = parse_url(f"https://user:p%40ss@h.example/drain/1?source=a&ca={ca}")
    assert (https.username, https.password) == ("user", "p@ss")
    assert https.target == "https://h.example/drain/1?source=a"  # no credentials, no stackblaze options


@pytest.mark.parametrize(("url", "says"), [
    ("http://h/x", "scheme 'http' is not supported"),
    ("udp://h:514", "scheme 'udp' is not supported"),
    ("syslog://:514", "has no host"),
    ("syslog://h:99999", "out of range"),
    ("syslog://h:514/path", "takes only host:port"),
    ("syslog://h:514?ca=/nonexistent.pem", "is not a file"),
    ("logs.example.com:514", "is not supported"),
])
def test_bad_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(UserError, match=says):
        parse_url(url)


def test_credentials_are_masked() -> None:
    assert mask_url("https://user:tok@h/p?token=abc&x=1") == "https://user:••••••@h/p?token=••••••&x=1"
    assert mask_url("https://justatoken@h/p") == "https://••••••@h/p"
    assert mask_url("syslog+tls://h:6514") == "syslog+tls://h:6514"
    with pytest.raises(UserError) as failure:
        parse_url("ftp://me:hunter2@h/?secret=s3")
    assert "hunter2" not in str(failure.value) and "s3" not in str(failure.value)


def test_scrub_masks_credentials_inside_other_messages() -> None:
    url = parse_url("https://me:hunter%232@h/p?api_key=K-1")
    assert url.scrub("failed for hunter#2 and K-1 (hunter%232)") == "failed for •••••• and •••••• (••••••)"
