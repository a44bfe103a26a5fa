"""API keys: parsing, hashing, policy (auto / required / disabled) and header handling."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from pydantic import ValidationError

from service.api.auth import (
    AuthConfigError,
    Authenticator,
    Principal,
    authenticate,
    presented_key,
    read_key_file,
    require,
)
from service.settings import ApiKeyEntry, Settings

WRITER = "writer-key-0123456789abcdef"
READER = "reader-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdefgh"


def entries() -> list[ApiKeyEntry]:
    return [
        ApiKeyEntry.model_validate({"key": WRITER, "tenant": "acme", "role": "write"}),
        ApiKeyEntry.model_validate({"key": READER, "tenant": "acme", "role": "read"}),
        ApiKeyEntry.model_validate(
            {
                "sha256": hashlib.sha256(ADMIN.encode()).hexdigest(),
                "tenant": "ops",
                "role": "admin",
            }
        ),
    ]


def test_keys_map_to_tenant_and_role_and_only_digests_are_kept() -> None:
    auth = Authenticator(entries(), enforced=True, anonymous=Principal("default", "admin"))
    writer = auth.lookup(WRITER)
    assert writer is not None
    assert (writer.tenant, writer.role) == ("acme", "write")
    admin = auth.lookup(ADMIN)
    assert admin is not None
    assert (admin.tenant, admin.role) == ("ops", "admin")
    assert auth.lookup(WRITER + "x") is None
    assert auth.lookup("") is None
    # The secrets themselves are nowhere in the table.
    assert WRITER not in repr(vars(auth)) + repr(auth._keys)
    assert all(len(k.digest) == 32 for k in auth._keys)


def test_roles_are_ordered() -> None:
    reader, writer, admin = Principal("t", "read"), Principal("t", "write"), Principal("t", "admin")
    require(admin, "write")
    require(writer, "read")
    with pytest.raises(PermissionDeniedException):
        require(reader, "write")
    with pytest.raises(PermissionDeniedException):
        require(writer, "admin")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": f"Bearer {WRITER}"}, WRITER),
        ({"authorization": f"bearer   {WRITER} "}, WRITER),
        ({"x-api-key": WRITER}, WRITER),
        ({"authorization": "Basic abc", "x-api-key": WRITER}, WRITER),
        ({"authorization": "Bearer "}, None),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[str, str], expected: str | None) -> None:
    assert presented_key(headers) == expected


def test_missing_or_unknown_key_is_401_with_a_challenge() -> None:
    auth = Authenticator(entries(), enforced=True, anonymous=Principal("default", "admin"))
    for headers in ({}, {"X-API-Key": "not-a-key-at-all-000000"}):
        with pytest.raises(NotAuthorizedException) as caught:
            authenticate(headers, auth)
        assert caught.value.status_code == 401
        assert (caught.value.headers or {})["WWW-Authenticate"].startswith("Bearer")
    assert authenticate({"Authorization": f"Bearer {READER}"}, auth).role == "read"


def test_auto_mode_is_open_without_keys_and_enforced_with_them() -> None:
    open_auth = Authenticator.from_settings(Settings(tenant="quick"))
    assert not open_auth.enforced
    assert authenticate({}, open_auth) == Principal("quick", "admin")
    assert "OFF" in open_auth.describe()

    keyed = Authenticator.from_settings(Settings(api_keys=entries()))
    assert keyed.enforced
    with pytest.raises(NotAuthorizedException):
        authenticate({}, keyed)


def test_required_without_keys_refuses_to_start() -> None:
    with pytest.raises(AuthConfigError, match="no API key"):
        Authenticator.from_settings(Settings(auth="required"))


def test_disabled_ignores_keys() -> None:
    auth = Authenticator.from_settings(Settings(auth="disabled", api_keys=entries()))
    assert not auth.enforced
    assert authenticate({}, auth).role == "admin"


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "FORECAST_API_KEYS", json.dumps([{"key": WRITER, "tenant": "acme", "role": "write"}])
    )
    settings = Settings()
    # Hashed while validated: the settings object never holds the secret.
    assert WRITER not in repr(settings.model_dump())
    assert settings.api_keys[0].sha256 == hashlib.sha256(WRITER.encode()).hexdigest()
    principal = authenticate({"X-API-Key": WRITER}, settings)
    assert (principal.tenant, principal.role) == ("acme", "write")


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_key_file_json_or_toml(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"keys{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"keys": [{"key": READER, "tenant": "acme", "role": "read"}]}))
    else:
        path.write_text(f'[[keys]]\nkey = "{READER}"\ntenant = "acme"\nrole = "read"\n')
    [entry] = read_key_file(path)
    assert entry.tenant == "acme"
    settings = Settings(api_keys_file=path)
    assert authenticate({"X-API-Key": READER}, settings).role == "read"


@pytest.mark.parametrize(
    "document",
    [
        '{"keys": [{"key": "short", "tenant": "a", "role": "read"}]}',
        '{"keys": [{"key": "long-enough-key-1234", "tenant": "a", "role": "root"}]}',
        '{"keys": [{"key": "long-enough-key-1234", "tenant": "a b", "role": "read"}]}',
        '{"keys": [{"tenant": "a", "role": "read"}]}',
        '{"keys": {"not": "a list"}}',
        "not json",
    ],
)
def test_bad_key_files_stop_start_up(tmp_path: Path, document: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(document)
    with pytest.raises(AuthConfigError):
        Authenticator.from_settings(Settings(api_keys_file=path))


def test_missing_key_file_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="cannot read"):
        Authenticator.from_settings(Settings(api_keys_file=tmp_path / "absent.json"))


def test_one_key_with_two_meanings_is_refused() -> None:
    twice = [
        ApiKeyEntry.model_validate({"key": WRITER, "tenant": "acme", "role": "write"}),
        ApiKeyEntry.model_validate({"key": WRITER, "tenant": "other", "role": "write"}),
    ]
    with pytest.raises(AuthConfigError):
        Authenticator(twice, enforced=True, anonymous=Principal("d", "admin"))


def test_entry_needs_exactly_one_secret() -> None:
    with pytest.raises(ValidationError):
        ApiKeyEntry.model_validate(
            {"key": WRITER, "sha256": "0" * 64, "tenant": "acme", "role": "read"}
        )


def test_a_refused_key_is_not_echoed_in_the_error() -> None:
    secret = "too-short-secret"[:12]
    with pytest.raises(ValidationError) as caught:
        Settings(api_keys=[{"key": secret, "tenant": "acme", "role": "read"}])
    assert secret not in str(caught.value)
    assert "at least 16 characters" in str(caught.value)
