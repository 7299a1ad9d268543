"""core.api_keys: key format, prefix parsing and constant-time verification (pure)."""

from __future__ import annotations

import pytest

from core.api_keys import MalformedKey, generate_key, hash_key, parse_prefix, verify_key

SECRET = "server-secret-for-tests"


def test_generated_key_has_scheme_prefix_and_secret() -> None:
    key = generate_key(server_secret=SECRET)
    assert key.plaintext.startswith(f"rcs_{key.prefix}_")
    assert parse_prefix(key.plaintext) == key.prefix
    assert len(key.plaintext) > 50
    assert key.secret_hash == hash_key(key.plaintext, server_secret=SECRET)
    assert key.plaintext not in key.secret_hash


def test_generated_keys_are_distinct() -> None:
    keys = {generate_key(server_secret=SECRET).plaintext for _ in range(50)}
    assert len(keys) == 50


def test_verify_accepts_the_key_and_rejects_others() -> None:
    key = generate_key(server_secret=SECRET)
    assert verify_key(key.plaintext, key.secret_hash, server_secret=SECRET)
    assert not verify_key(key.plaintext + "x", key.secret_hash, server_secret=SECRET)
    assert not verify_key(key.plaintext, key.secret_hash, server_secret="another-secret")


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "rcs",
        "rcs_",
        "rcs_abc_secret",
        "sk_0123456789ab_secret",
        "rcs_0123456789ab_",
        "Bearer x",
    ],
)
def test_malformed_keys_are_rejected(presented: str) -> None:
    with pytest.raises(MalformedKey):
        parse_prefix(presented)


def test_secret_may_contain_underscores() -> None:
    assert parse_prefix("rcs_0123456789ab_se_cr_et") == "0123456789ab"
