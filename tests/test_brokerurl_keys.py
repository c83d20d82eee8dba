"""host/brokerurl.py (broker URLs, redaction) and host/keys.py (key files), the small
helpers every command that reaches a broker or signs a command uses."""

from __future__ import annotations

import pytest

from host.brokerurl import DEFAULT_PORT, parse_broker_url, redact_url
from host.keys import decode_key, key_path, read_key


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", ("broker", DEFAULT_PORT)),
        ("mqtt://10.0.0.5:1884", ("10.0.0.5", 1884)),
        ("tcp://pi.local:2000/", ("pi.local", 2000)),
    ],
)
def test_broker_urls_give_host_and_port(url, expected):
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    "url", ["http://broker", "mqtt://", "broker:1883", "mqtt://broker:notaport"]
)
def test_other_urls_are_refused_with_the_expected_form(url):
    with pytest.raises(ValueError, match=r"expected mqtt://HOST\[:PORT\]"):
        parse_broker_url(url)


def test_a_refused_url_never_shows_its_password():
    with pytest.raises(ValueError) as info:
        parse_broker_url("http://operator:s3cret@broker:1883")
    assert "s3cret" not in str(info.value)
    assert "operator:***@broker" in str(info.value)


def test_redaction_hides_only_the_password():
    assert redact_url("mqtt://op:pw@host:1883/x") == "mqtt://op:***@host:1883/x"
    assert redact_url("mqtt://op@host") == "mqtt://op@host"
    assert redact_url("mqtt://host:1883") == "mqtt://host:1883"
    assert redact_url("mqtt://[::1") == "<unparsable URL>"


def test_key_files_hold_hex_text_or_raw_bytes():
    raw = bytes(range(200, 232))
    assert decode_key(raw.hex().encode() + b"\n") == raw
    assert decode_key(raw) == raw
    assert decode_key(b"not hex at all, but a key") == b"not hex at all, but a key"


def test_a_relative_key_file_lives_beside_its_config(tmp_path):
    config = tmp_path / "boards" / "pump.toml"
    assert key_path(config, "keys/pump.key") == tmp_path / "boards" / "keys" / "pump.key"
    assert key_path(config, "/etc/flowskid/pump.key").as_posix() == "/etc/flowskid/pump.key"


def test_read_key(tmp_path):
    config = tmp_path / "pump.toml"
    (tmp_path / "pump.key").write_text("00112233445566778899aabbccddeeff\n")
    assert read_key(config, "pump.key") == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert read_key(config, None) is None
    assert read_key(config, "") is None
    with pytest.raises(ValueError, match=r"pump.toml: module.key_file = 'gone.key': .* not found"):
        read_key(config, "gone.key")
