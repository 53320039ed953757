"""Settings (docs/reference.md#settings): defaults, RECEIVER_* env, the TOML file, precedence,
bad values."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from receiver.config import SETTINGS, Endpoint, MiB, load_settings
from receiver.errors import ConfigError

from .conftest import sample


def ed25519_hex() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def whsec() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def write_toml(tmp_path: Path, text: str, name: str = "receiver.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def settings_from_toml(tmp_path: Path, text: str, **environ: str) -> dict[str, Any]:
    return load_settings({}, environ={"RECEIVER_CONFIG": write_toml(tmp_path, text), **environ})


# -- defaults and the environment ---------------------------------------------------------


def test_config_defaults_match_the_contract() -> None:
    settings = load_settings({}, environ={})
    assert settings["DATABASE"] == "receiver.db"
    assert settings["SECRET_KEY"] is None
    assert settings["MAX_BODY"] == 5 * 1024 * 1024
    assert settings["DISPATCH"] == "background"
    assert settings["INSPECTOR_TOKEN"] is None
    assert settings["REDELIVER_ALLOW"] == ["localhost", "127.0.0.1", "::1"]
    assert settings["STRICT_ENDPOINTS"] is False
    assert settings["RETENTION_DAYS"] is None
    assert settings["ENDPOINTS"] == {}
    # Every setting of the table is resolved, each to its declared default.
    for setting in SETTINGS:
        assert settings[setting.name] == setting.default, setting.name


def test_config_every_setting_has_help() -> None:
    for setting in SETTINGS:
        assert setting.help.strip(), setting.name


@pytest.mark.parametrize(("raw", "expected"), [
    ("5MiB", 5 * MiB),
    ("5 MiB", 5 * MiB),
    ("512kb", 512_000),
    ("1k", 1000),
    ("2kib", 2048),
    ("1048576", 1048576),
])
def test_config_env_max_body_sizes(raw: str, expected: int) -> None:
    settings = load_settings({}, environ={"RECEIVER_MAX_BODY": raw})
    assert settings["MAX_BODY"] == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("yes", True), ("true", True), ("1", True), ("ON", True),
    ("no", False), ("false", False), ("0", False), ("off", False),
])
def test_config_env_strict_endpoints_bool(raw: str, expected: bool) -> None:
    settings = load_settings({}, environ={"RECEIVER_STRICT_ENDPOINTS": raw})
    assert settings["STRICT_ENDPOINTS"] is expected


def test_config_env_list_and_optional_values() -> None:
    settings = load_settings({}, environ={
        "RECEIVER_REDELIVER_ALLOW": " staging.example.com , localhost,,",
        "RECEIVER_INSPECTOR_TOKEN": "",
        "RECEIVER_RETENTION_DAYS": "30",
        "RECEIVER_DISPATCH": "SYNC",
    })
    assert settings["REDELIVER_ALLOW"] == ["staging.example.com", "localhost"]
    assert settings["INSPECTOR_TOKEN"] is None
    assert settings["RETENTION_DAYS"] == 30
    assert settings["DISPATCH"] == "sync"


def test_config_reads_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVER_MAX_BODY", "5MiB")
    monkeypatch.setenv("RECEIVER_STRICT_ENDPOINTS", "yes")
    monkeypatch.setenv("RECEIVER_INSPECTOR_TOKEN", "007")
    settings = load_settings()
    assert settings["MAX_BODY"] == 5 * MiB
    assert settings["STRICT_ENDPOINTS"] is True
    assert settings["INSPECTOR_TOKEN"] == "007"


def test_config_env_applies_to_create_app(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVER_MAX_BODY", "1k")
    monkeypatch.setenv("RECEIVER_STRICT_ENDPOINTS", "yes")
    app = make_app()
    assert app.config["MAX_BODY"] == 1000
    client = app.test_client()
    too_big = client.post("/hooks", data=b"{" + b" " * 1200 + b"}",
                          headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413
    unknown = client.post("/hooks/nowhere", data=b"{}",
                          headers={"Content-Type": "application/json"})
    assert unknown.status_code == 404
    assert unknown.get_json()["ok"] is False


# -- the TOML file ------------------------------------------------------------------------

CONTRACT_TOML = """
max_body = "1MiB"
dispatch = "sync"
strict_endpoints = true
redeliver_allow = ["localhost", "hooks.internal"]

[endpoints.keygen]
source = "keygen"
public_key = "{public_key}"
url = "https://hooks.example.com/hooks/keygen"
enforce = true

[endpoints.fno]
source = "fno"
auth = "basic"
username = "flex"
password = "s3cret"

[endpoints.fno-bearer]
source = "fno"
auth = "bearer"
token = "t0ken"

[endpoints.std]
source = "standard"
secrets = ["{new}", "{old}"]

[endpoints.lenient]
source = "keygen"
public_key = "{public_key}"
enforce = false
"""


def contract_toml() -> tuple[str, str, str, str]:
    public_key, new, old = ed25519_hex(), whsec(), whsec()
    text = CONTRACT_TOML.format(public_key=public_key, new=new, old=old)
    return text, public_key, new, old


def test_config_toml_settings_and_endpoints(tmp_path: Path) -> None:
    text, public_key, new, old = contract_toml()
    settings = settings_from_toml(tmp_path, text)
    assert settings["MAX_BODY"] == MiB
    assert settings["DISPATCH"] == "sync"
    assert settings["STRICT_ENDPOINTS"] is True
    assert settings["REDELIVER_ALLOW"] == ["localhost", "hooks.internal"]

    endpoints = settings["ENDPOINTS"]
    assert set(endpoints) == {"keygen", "fno", "fno-bearer", "std", "lenient"}
    assert all(isinstance(endpoint, Endpoint) for endpoint in endpoints.values())
    keygen = endpoints["keygen"]
    assert keygen.name == "keygen"
    assert keygen.source == "keygen"
    assert keygen.public_keys == (public_key,)
    assert keygen.url == "https://hooks.example.com/hooks/keygen"
    assert keygen.enforce is True
    assert keygen.configured is True

    fno = endpoints["fno"]
    assert (fno.source, fno.auth, fno.username, fno.password) == ("fno", "basic", "flex", "s3cret")
    assert fno.enforce is True  # credentials configured: enforced unless told otherwise
    assert endpoints["fno-bearer"].tokens == ("t0ken",)
    assert endpoints["std"].secrets == (new, old)
    assert endpoints["std"].enforce is True
    assert endpoints["lenient"].enforce is False


def test_config_toml_endpoints_are_live_in_create_app(make_app: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    text, *_ = contract_toml()
    monkeypatch.setenv("RECEIVER_CONFIG", write_toml(tmp_path, text))
    app = make_app()
    assert set(app.config["ENDPOINTS"]) == {"keygen", "fno", "fno-bearer", "std", "lenient"}
    client = app.test_client()
    fno = sample("fno", "entitlement.updated")

    refused = client.post("/hooks/fno", data=fno.body, headers=fno.headers)
    assert refused.status_code == 401
    accepted = client.post("/hooks/fno", data=fno.body,
                           headers={**fno.headers, "Authorization": "Basic "
                                    + base64.b64encode(b"flex:s3cret").decode()})
    assert accepted.status_code == 200, accepted.get_json()
    answer = accepted.get_json()
    assert answer["source"] == "fno"
    assert answer["signature_status"] == "valid"
    event = client.get(f"/api/events/{answer['event_id']}").get_json()
    assert event["endpoint"] == "fno"
    # strict_endpoints from the file
    assert client.post("/hooks/elsewhere", data=b"{}").status_code == 404


def test_config_token_numbers_stay_strings(tmp_path: Path) -> None:
    settings = settings_from_toml(tmp_path, """
inspector_token = 123
secret_key = 4567

[endpoints.fno]
source = "fno"
auth = "bearer"
token = 123
password = 0
username = 42
""")
    assert settings["INSPECTOR_TOKEN"] == "123"
    assert settings["SECRET_KEY"] == "4567"
    fno = settings["ENDPOINTS"]["fno"]
    assert fno.tokens == ("123",)
    assert fno.username == "42"
    assert fno.password == "0"


def test_config_numeric_token_works_as_bearer(make_app: Any, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVER_CONFIG", write_toml(tmp_path, "inspector_token = 123\n"))
    app = make_app()
    assert app.config["INSPECTOR_TOKEN"] == "123"
    client = app.test_client()
    assert client.get("/api/events").status_code == 401
    assert client.get("/api/events", headers={"Authorization": "Bearer 123"}).status_code == 200


def test_config_env_token_with_leading_zeros_is_kept() -> None:
    settings = load_settings({}, environ={"RECEIVER_INSPECTOR_TOKEN": "000123"})
    assert settings["INSPECTOR_TOKEN"] == "000123"


def test_config_toml_keys_are_case_insensitive(tmp_path: Path) -> None:
    settings = settings_from_toml(tmp_path, 'MAX_BODY = 2048\nDispatch = "sync"\n')
    assert settings["MAX_BODY"] == 2048
    assert settings["DISPATCH"] == "sync"


def test_config_file_named_in_create_app_mapping(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'max_body = "3k"\n')
    assert load_settings({"CONFIG": path}, environ={})["MAX_BODY"] == 3000


# -- precedence ---------------------------------------------------------------------------


def test_config_precedence_mapping_over_env_over_toml_over_default(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'max_body = "1k"\ndispatch = "sync"\n')
    file_only = {"RECEIVER_CONFIG": path}
    env_and_file = {**file_only, "RECEIVER_MAX_BODY": "2k"}

    assert load_settings({}, environ={})["MAX_BODY"] == 5 * MiB
    assert load_settings({}, environ=file_only)["MAX_BODY"] == 1000
    assert load_settings({}, environ=env_and_file)["MAX_BODY"] == 2000
    assert load_settings({"MAX_BODY": "3k"}, environ=env_and_file)["MAX_BODY"] == 3000
    # Layers are per setting: the file still supplies what nobody overrides.
    assert load_settings({"MAX_BODY": "3k"}, environ=env_and_file)["DISPATCH"] == "sync"


def test_config_precedence_in_create_app(make_app: Any, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, 'max_body = "1k"\ninspector_token = "from-file"\n'
                      'retention_days = 7\n')
    monkeypatch.setenv("RECEIVER_CONFIG", path)
    monkeypatch.setenv("RECEIVER_MAX_BODY", "2k")
    monkeypatch.setenv("RECEIVER_INSPECTOR_TOKEN", "from-env")
    app = make_app(MAX_BODY=3000)
    assert app.config["MAX_BODY"] == 3000
    assert app.config["INSPECTOR_TOKEN"] == "from-env"
    assert app.config["RETENTION_DAYS"] == 7
    assert app.config["DISPATCH"] == "sync"  # make_app's mapping beats the default


def test_config_mapping_endpoints_replace_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[endpoints.a]\nsource = "keygen"\n')
    settings = load_settings({"ENDPOINTS": {"b": {"source": "fno"}}},
                             environ={"RECEIVER_CONFIG": path})
    assert set(settings["ENDPOINTS"]) == {"b"}
    assert settings["ENDPOINTS"]["b"].source == "fno"


# -- bad settings name their key -----------------------------------------------------------


@pytest.mark.parametrize(("environ", "toml", "key"), [
    ({"RECEIVER_MAX_BODY": "lots"}, None, "RECEIVER_MAX_BODY"),
    ({"RECEIVER_MAX_BODY": "0"}, None, "RECEIVER_MAX_BODY"),
    ({"RECEIVER_STRICT_ENDPOINTS": "maybe"}, None, "RECEIVER_STRICT_ENDPOINTS"),
    ({"RECEIVER_DISPATCH": "later"}, None, "RECEIVER_DISPATCH"),
    ({"RECEIVER_SMTP_PORT": "twenty-five"}, None, "RECEIVER_SMTP_PORT"),
    ({}, 'dispatch = "later"\n', "dispatch"),
    ({}, "max_body = true\n", "max_body"),
    ({}, "inspector_token = true\n", "inspector_token"),
    ({}, "max_bdy = 10\n", "max_bdy"),
    ({}, '[endpoints.fno]\nsource = "fno"\npasword = "x"\n', "endpoints.fno.pasword"),
    ({}, '[endpoints.fno]\nsource = "fno"\nauth = "basic"\nusername = "flex"\n',
     "endpoints.fno.auth"),
    ({}, '[endpoints.fno]\nsource = "fno"\nauth = "bearer"\n', "endpoints.fno.auth"),
    ({}, '[endpoints.fno]\nsource = "fno"\nauth = "digest"\n', "endpoints.fno.auth"),
    ({}, '[endpoints.fno]\nsource = "fno"\nallow_ips = ["10.0.0.0/33"]\n',
     "endpoints.fno.allow_ips"),
    ({}, '[endpoints.fno]\nsource = "fno"\nallow_ips = ["not-an-ip"]\n',
     "endpoints.fno.allow_ips"),
    ({}, '[endpoints.x]\nsource = "stripe"\n', "endpoints.x.source"),
    ({}, '[endpoints.x]\nsource = "keygen"\nenforce = "maybe"\n', "endpoints.x.enforce"),
    ({}, '[endpoints.x]\nsource = "keygen"\nurl = "hooks.example.com/x"\n', "endpoints.x.url"),
    ({}, '[endpoints.x]\nsource = "keygen"\ntolerance = "soon"\n', "endpoints.x.tolerance"),
    ({}, '[endpoints."bad name"]\nsource = "keygen"\n', "endpoints.bad name"),
    ({}, 'endpoints = "keygen"\n', "endpoints"),
    ({}, "max_body = [1, \n", "RECEIVER_CONFIG"),
])
def test_config_bad_setting_names_the_key(tmp_path: Path, environ: dict[str, str],
                                          toml: str | None, key: str) -> None:
    if toml is not None:
        environ = {**environ, "RECEIVER_CONFIG": write_toml(tmp_path, toml)}
    with pytest.raises(ConfigError) as caught:
        load_settings({}, environ=environ)
    assert key.lower() in str(caught.value).lower()


def test_config_bad_cidr_is_quoted_in_the_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"endpoints\.fno\.allow_ips: '10\.0\.0\.0/33'"):
        settings_from_toml(tmp_path, '[endpoints.fno]\nsource = "fno"\n'
                           'allow_ips = ["10.0.0.0/8", "10.0.0.0/33"]\n')


def test_config_unknown_endpoint_key_lists_known_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_toml(tmp_path, '[endpoints.fno]\nsource = "fno"\npasword = "x"\n')
    message = str(caught.value)
    assert message.startswith("endpoints.fno.pasword")
    assert "password" in message.split("pasword", 1)[1]


def test_config_bad_toml_syntax_names_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[endpoints.keygen\nsource = 'keygen'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, environ={"RECEIVER_CONFIG": path})
    assert "RECEIVER_CONFIG" in str(caught.value)
    assert path in str(caught.value)


def test_config_missing_file_names_the_key(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as caught:
        load_settings({}, environ={"RECEIVER_CONFIG": missing})
    assert "RECEIVER_CONFIG" in str(caught.value)
    assert "nope.toml" in str(caught.value)


def test_config_file_that_is_a_directory_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RECEIVER_CONFIG"):
        load_settings({}, environ={"RECEIVER_CONFIG": str(tmp_path)})


def test_config_file_not_utf8_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('mail_from = "r\u00e9ception@example.com"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="RECEIVER_CONFIG"):
        load_settings({}, environ={"RECEIVER_CONFIG": str(path)})


def test_config_basic_auth_with_empty_password_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"endpoints\.fno\.(auth|password)"):
        settings_from_toml(tmp_path, '[endpoints.fno]\nsource = "fno"\nauth = "basic"\n'
                           'username = "flex"\npassword = ""\n')


# -- create_app stops before serving ------------------------------------------------------


def test_config_create_app_bad_setting_raises_before_opening_the_database(
        make_app: Any, db_path: str) -> None:
    with pytest.raises(ConfigError, match="MAX_BODY"):
        make_app(MAX_BODY="lots")
    assert not Path(db_path).exists()


def test_config_create_app_bad_env_raises(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVER_DISPATCH", "later")
    from receiver import create_app

    with pytest.raises(ConfigError, match="RECEIVER_DISPATCH"):
        create_app({"DATABASE": db_path, "TESTING": True})  # make_app would set DISPATCH
    assert not Path(db_path).exists()


def test_config_create_app_unparsable_public_key_names_it(make_app: Any, db_path: str) -> None:
    with pytest.raises(ConfigError, match=r"endpoints\.keygen\.public_key"):
        make_app(ENDPOINTS={"keygen": {"source": "keygen", "public_key": "zz"}})
    assert not Path(db_path).exists()


def test_config_create_app_bad_endpoint_in_file(make_app: Any, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEIVER_CONFIG", write_toml(
        tmp_path, '[endpoints.fno]\nsource = "fno"\nauth = "basic"\n'))
    with pytest.raises(ConfigError, match=r"endpoints\.fno\.auth"):
        make_app()
