from __future__ import annotations

import pytest

from legato.observe import REDACTED, Redactor

SECRETS = [
    "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx",
    "sk-ant-api03-abcdefghijklmnop_QRS",
    "lg_live_0123456789abcdef",
    "hf_abcdefghijklmnopqrstuv",
    "AKIAABCDEFGHIJKLMNOP",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_known_key_shapes_are_removed_from_text(secret: str) -> None:
    out = Redactor().text(f"calling with key {secret} now")
    assert secret not in out
    assert out == f"calling with key {REDACTED} now"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def.ghi-123", f"Authorization: Bearer {REDACTED}"),
        ("authorization=Basic dXNlcjpwYXNzd29yZA==", f"authorization=Basic {REDACTED}"),
        ('{"api_key": "hunter2hunter2"}', f'{{"api_key": "{REDACTED}"}}'),
        ("x-api-key: plainvalue42", f"x-api-key: {REDACTED}"),
        ("password=correcthorse&user=bob", f"password={REDACTED}&user=bob"),
        ("nothing secret here, just skeletons", "nothing secret here, just skeletons"),
    ],
)
def test_header_and_assignment_forms_keep_their_names(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


def test_sensitive_keys_are_replaced_whole_in_nested_structures() -> None:
    data = {
        "Authorization": "anything at all",
        "X-Api-Key": "short",
        "body": [{"note": "use sk-abcdefghijklmnopqrstu"}, ("lg_abcdefgh12345",)],
        "count": 3,
    }
    out = Redactor().value(data)
    assert out == {
        "Authorization": REDACTED,
        "X-Api-Key": REDACTED,
        "body": [{"note": f"use {REDACTED}"}, (REDACTED,)],
        "count": 3,
    }
    assert data["Authorization"] == "anything at all"  # the input is not modified


def test_configured_patterns_and_keys() -> None:
    r = Redactor([r"acme_[a-z0-9]{10}"], keys=["X-Acme-Token"])
    assert r.text("id acme_0123456789 ok") == f"id {REDACTED} ok"
    assert r.headers({"x-acme-token": "v", "accept": "json"}) == {"x-acme-token": REDACTED, "accept": "json"}
    assert r.text("sk-abcdefghijklmnopqrstu") == REDACTED  # defaults still apply


def test_only_configured_patterns_when_defaults_are_off() -> None:
    r = Redactor([r"(?i)case-(?P<secret>\w+)"], defaults=False)
    assert r.text("CASE-abc sk-abcdefghijklmnopqrstu") == f"CASE-{REDACTED} sk-abcdefghijklmnopqrstu"


def test_invalid_pattern_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"invalid redaction pattern '\(unclosed'"):
        Redactor(["(unclosed"])
