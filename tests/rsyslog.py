"""The rsyslogd configuration the drain tests and bench/drains.py start: TCP or TLS on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path


def write_rsyslog_conf(folder: Path, *, port: int, out: Path, cert: Path, key: Path, tls: bool, template: str,
                       action_options: str = "") -> Path:
    """rsyslog.conf in `folder`: listen on `port`, write each message to `out` through `template`."""
    driver = (f'DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{cert}" '
              f'DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}"') if tls else ""
    module = ('module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")'
              if tls else 'module(load="imtcp")')
    conf = folder / "rsyslog.conf"
    conf.write_text(f"""
global(workDirectory="{folder}" maxMessageSize="64k" {driver})
{module}
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="out" type="string" string="{template}")
action(type="omfile" file="{out}" template="out" {action_options})
""")
    return conf
