"""SecretData: one base64 rule, one text rule, one error naming the Secret and key only."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from controllers.secrets import SecretData, SecretError, SecretNotFound

VALUE = "hunter2-secret-value"


def encoded(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def secret(**data: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "apps", "name": "creds"}, "data": data}


def test_values_are_text_by_key_and_bytes_on_request() -> None:
    data = SecretData.from_object(secret(token=encoded(VALUE), blob=encoded(b"\xff\x00")))

    assert data["token"] == data.text("token") == VALUE
    assert data.binary("blob") == b"\xff\x00"
    assert data.get("absent") is None
    assert sorted(data) == ["blob", "token"]
    assert len(data) == 2
    assert data.ref == "apps/creds"


@pytest.mark.parametrize(
    ("value", "read", "message"),
    [
        pytest.param(
            encoded(b"\xff" + VALUE.encode()),
            SecretData.text,
            "secret 'apps/creds' key 'k' is not text",
            id="not-utf8",
        ),
        pytest.param(
            VALUE + "!",
            SecretData.binary,
            "secret 'apps/creds' key 'k' is not valid base64",
            id="not-base64",
        ),
        pytest.param(
            encoded(VALUE) + "\n",
            SecretData.binary,
            "secret 'apps/creds' key 'k' is not valid base64",
            id="stray-characters",
        ),
    ],
)
def test_a_malformed_value_names_the_secret_and_key_never_the_value(
    value: str, read: Any, message: str
) -> None:
    data = SecretData.from_object(secret(k=value))

    with pytest.raises(SecretError) as caught:
        read(data, "k")

    assert str(caught.value) == message
    assert (caught.value.secret, caught.value.key) == ("apps/creds", "k")
    assert VALUE not in str(caught.value)


def test_reading_every_value_fails_on_the_first_that_is_not_text() -> None:
    data = SecretData.from_object(secret(good=encoded("x"), bad=encoded(b"\xfe")))

    with pytest.raises(SecretError, match="key 'bad' is not text"):
        dict(data)


def test_membership_looks_at_keys_only() -> None:
    data = SecretData.from_object(secret(bad=encoded(b"\xfe")))

    assert "bad" in data
    assert "other" not in data


def test_a_missing_key_is_a_key_error_by_index_and_a_secret_error_by_name() -> None:
    data = SecretData.from_object(secret())

    with pytest.raises(KeyError):
        data["absent"]
    with pytest.raises(SecretError, match=r"^secret 'apps/creds' key 'absent' is missing$"):
        data.text("absent")


def test_the_repr_shows_keys_never_values() -> None:
    data = SecretData.from_object(secret(token=encoded(VALUE)))

    assert repr(data) == "SecretData('apps/creds', keys=['token'])"


@pytest.mark.parametrize(
    ("error", "message", "detail"),
    [
        pytest.param(SecretNotFound("a/b"), "secret 'a/b' not found", "not found", id="missing"),
        pytest.param(
            SecretError("a/b", "is not text", key="k"),
            "secret 'a/b' key 'k' is not text",
            "key 'k' is not text",
            id="key",
        ),
        pytest.param(
            SecretError("a/b", "has no 'address'", message="proxy secret 'a/b' has no 'address'"),
            "proxy secret 'a/b' has no 'address'",
            "has no 'address'",
            id="own-wording",
        ),
    ],
)
def test_errors_say_what_is_wrong_with_and_without_the_secret_name(
    error: SecretError, message: str, detail: str
) -> None:
    assert (str(error), error.detail) == (message, detail)
