"""Session-wide test hooks shared by every test file.  Keep this small and generic.

CDDL check: every message built through ``protocol.messages`` during any test (including
tests of edge/host/emulator code that build messages) is validated against
``protocol/flowskid.cddl``.  A violation raises AssertionError where the message was built
and also fails the test at teardown, so a broad ``except`` in the code under test cannot
hide it.  Tests that build invalid messages on purpose take the ``cddl_violations``
fixture and clear what they expected.
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CDDL_PATH = ROOT / "protocol" / "flowskid.cddl"

_violations: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _cddl_checked_messages():
    import pycddl

    from protocol import messages

    schema = pycddl.Schema(CDDL_PATH.read_text())
    original = messages._encode

    def encode_and_validate(msg):
        data = original(msg)
        try:
            schema.validate_cbor(data)
        except pycddl.ValidationError as exc:
            report = "{}\n  {}".format(data.hex(), str(exc).replace("\n", "\n  "))
            _violations.append(report)
            raise AssertionError("message violates protocol/flowskid.cddl: " + report) from None
        return data

    messages._encode = encode_and_validate
    yield
    messages._encode = original


@pytest.fixture(autouse=True)
def _fail_on_cddl_violation(_cddl_checked_messages):
    start = len(_violations)
    yield
    new = _violations[start:]
    if new:
        del _violations[start:]
        pytest.fail(
            "message(s) built in this test violate protocol/flowskid.cddl:\n" + "\n".join(new)
        )


@pytest.fixture
def cddl_violations():
    """The list of CDDL violations recorded so far; clear entries a test provoked on purpose."""
    return _violations


# --- MQTT broker fixture (edge link tests; reused by host coordinator and ACL tests) -------


@pytest.fixture
def broker():
    """A private, running Mosquitto on a free 127.0.0.1 port (see tests/broker.py).

    Function-scoped, because tests stop and restart it.  Tests that need a password file,
    an ACL or persistence construct ``tests.broker.MosquittoBroker(...)`` themselves.
    """
    from tests.broker import MosquittoBroker

    with MosquittoBroker() as running:
        yield running
