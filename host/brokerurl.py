"""Broker URLs and where broker credentials come from.

``mqtt://HOST[:PORT]`` (or ``tcp://``) is how every ``skid`` command and the edge process
name a broker; ``mqtts://`` (TLS) is understood by the host's transport only
(``host.transport.parse_url``).  Credentials never travel on a command line: they come
from the ``SKID_MQTT_*`` environment variables, which a systemd unit fills from a 0600
EnvironmentFile (``host.installer``).
"""

from __future__ import annotations

from urllib.parse import urlparse

# Environment variables the broker credentials and CA are read from.
ENV_USERNAME = "SKID_MQTT_USERNAME"
ENV_PASSWORD = "SKID_MQTT_PASSWORD"
ENV_CA = "SKID_MQTT_CA"

DEFAULT_PORT = 1883


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        parsed = urlparse(url)
        if parsed.password is None:
            return url
        netloc = parsed.netloc.replace(":" + parsed.password + "@", ":***@", 1)
        return parsed._replace(netloc=netloc).geturl()
    except ValueError:
        return "<unparsable URL>"


def parse_broker_url(url: str) -> tuple[str, int]:
    """``mqtt://HOST[:PORT]`` (or ``tcp://``) -> (host, port); ValueError otherwise."""
    try:
        parsed = urlparse(url)
        port = parsed.port
    except ValueError:  # e.g. a port that is not a number
        parsed, port = None, None
    if parsed is None or parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
        raise ValueError(f"broker URL {redact_url(url)!r}: expected mqtt://HOST[:PORT]")
    return parsed.hostname, port or DEFAULT_PORT
