"""amqp_url: the AMQP url the rabbitmq reader derives from the management url a user writes."""

from __future__ import annotations

import pytest

from stackblaze.engine.autoscale.amqp_ready import amqp_url


@pytest.mark.parametrize(("management", "amqp"), [
    ("http://guest:guest@mq.internal:15672/%2F", "amqp://guest:guest@mq.internal:5672/%2F"),
    ("http://guest:guest@mq.internal:15672", "amqp://guest:guest@mq.internal:5672/%2F"),
    ("http://guest:guest@mq.internal:15672/", "amqp://guest:guest@mq.internal:5672/%2F"),
    ("http://app:p%40ss@mq:15672/shop", "amqp://app:p%40ss@mq:5672/shop"),
    ("https://app:pw@mq.example.com/%2F", "amqps://app:pw@mq.example.com:5671/%2F"),
    ("http://guest:guest@127.0.0.1:15672/%2F?amqp_port=35672", "amqp://guest:guest@127.0.0.1:35672/%2F"),
    ("http://[::1]:15672/%2F", "amqp://[::1]:5672/%2F"),
])
def test_same_host_user_password_and_vhost_on_amqps_port(management: str, amqp: str) -> None:
    assert amqp_url(management) == amqp


@pytest.mark.parametrize("port", ["x", "0", "70000", "-1"])
def test_a_bad_amqp_port_is_named_with_the_fix(port: str) -> None:
    with pytest.raises(ValueError) as bad:
        amqp_url(f"http://guest:secret@mq:15672/%2F?amqp_port={port}")
    assert str(bad.value) == f"amqp_port {port!r} is not a port (e.g. ?amqp_port=5672)"
