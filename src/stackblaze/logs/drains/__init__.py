"""Log drains: ship every line of a project's logs to a syslog (RFC 5424 over TCP/TLS) or HTTPS receiver.

`cursor` reads the log files from a persisted position, `syslog` and `https` deliver, `manager` runs one
asyncio task per drain. Delivery is at-least-once; nothing is lost without being counted as dropped.
"""
