"""`${{service.VAR}}` references: the values they expand to, and the errors for ones that name nothing."""

from __future__ import annotations

import pytest

from stackblaze.errors import UserError
from stackblaze.spec.backing import service_variables
from stackblaze.spec.model import BackingType
from stackblaze.spec.references import expand, references

BACKING: dict[str, tuple[BackingType, bool]] = {"cache": ("redis", False), "db": ("postgres", True)}
VARIABLES = {"cache": service_variables("redis", "cache"),
             "db": service_variables("postgres", "db", password="s3:cr/t")}


def test_a_redis_reference_is_the_internal_url_on_the_standard_port() -> None:
    out = expand({"REDIS_URL": "${{cache.REDIS_URL}}", "Q": "plain"}, VARIABLES, backing=BACKING)
    assert out.values == {"REDIS_URL": "redis://cache.internal:6379", "Q": "plain"}
    assert out.secrets == frozenset()


def test_references_compose_inside_a_value_and_passwords_make_it_a_secret() -> None:
    out = expand({"DSN": "host=${{ db.HOST }} port=${{db.PORT}} password=${{db.PASSWORD}}",
                  "DATABASE_URL": "${{db.DATABASE_URL}}"}, VARIABLES, backing=BACKING)
    assert out.values["DSN"] == "host=db.internal port=5432 password=s3:cr/t"
    # The password is percent-encoded in the URL, so that any generated character is safe there.
    assert out.values["DATABASE_URL"] == "postgresql://app:s3%3Acr%2Ft@db.internal:5432/app"
    assert out.secrets == {out.values["DSN"], out.values["DATABASE_URL"]}


def test_an_ip_host_replaces_the_name_where_names_are_unavailable() -> None:
    assert service_variables("redis", "cache", host="127.77.0.2")["REDIS_URL"] == "redis://127.77.0.2:6379"


@pytest.mark.parametrize(("value", "message"), [
    ("${{queue.REDIS_URL}}", "env X: ${{queue.REDIS_URL}} names no redis or postgres service of the project "
                             "(backing services: cache, db)"),
    ("${{cache.REDIS_URI}}", "env X: ${{cache.REDIS_URI}}: cache (redis) has no REDIS_URI (did you mean REDIS_URL?)"),
    ("${{cache.PASSWORD}}", "env X: ${{cache.PASSWORD}}: cache has no password (set auth: password on it)"),
])
def test_a_reference_to_nothing_is_one_line_naming_the_variable(value: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        expand({"X": value}, VARIABLES, backing=BACKING)
    assert str(caught.value) == message


def test_references_are_found_in_order() -> None:
    assert references("${{a.X}}-${{ b.Y }}") == [("a", "X"), ("b", "Y")]
