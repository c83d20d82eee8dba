"""Session-wide test hooks shared by every test file.  Keep this small and generic.

CDDL check: every message built through ``protocol.messages`` during any test (including
tests of edge/host/emulator code that build messages) is validated against
``protocol/flowskid.cddl``.  A violation raises AssertionError where the message was built
and also fails the test at teardown, so a broad ``except`` in the code under test cannot
hide it.  Tests that build invalid messages on purpose take the ``cddl_violations``
fixture and clear what they expected.

Parallel runs (``make test`` runs ``pytest -n <cores> --dist loadgroup``, pytest-xdist):
every test must be safe to run beside any other in another process (brokers on their own
ports, files under ``tmp_path``).  Tests that share a module- or class-scoped fixture of
their own module are kept on one worker, so the fixture is built once; and the slowest
files are handed out first, so that no long test starts last while the other workers idle.
"""

import os
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent

# Hypothesis: no per-example deadline by default (tests may still set one).  The default
# 200 ms turns a CPU stall of a loaded or parallel run into a DeadlineExceeded/Flaky error,
# and speed is measured by the benchmarks, never by a timed test (docs/development.md).
# The example database stays .hypothesis/: it writes each entry to a temporary file and
# renames it into place, so xdist workers can share it.
settings.register_profile("flowskid", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "flowskid"))
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


# --- pytest-xdist: shared fixtures stay on one worker, slow files start first ------------

# Files of single tests that take from seconds to minutes each (the Hypothesis state
# machines, the recipe runs of the fault scenarios): first among the single tests of a
# distributed run.  (Groups go before single tests, the largest first: xdist's
# --loadscope-reorder.)
SLOW_FIRST = ("test_safety_properties.py", "test_fault_scenarios.py")
# Files that run a line of module processes on a scaled wall clock (leases, dead-man timers
# and fault times in real seconds): one group, so no two such lines compete for the CPU.
# Run beside each other they starve (leases lapse, dead-man timers fire).
SCALED_WALL_CLOCK = (
    "test_run_broker.py",
    "test_broker_line.py",
    "test_edge_broker.py",
    "test_stop_cli.py",
    "test_micropython_line.py",
    "test_link_micropython.py",
    "test_tune_broker_e2e.py",
    "test_status_cli.py",
    "test_campaign_broker.py",
    "test_view_restart.py",
)
_SHARED_SCOPES = ("module", "class", "package")
# ... and the lines keep the CPU they need beside CPU-bound workers: a worker lowers its
# priority (and that of what it starts) at its first test outside that group.  The group,
# the largest, is the first work any worker gets, so its worker stays at normal priority
# until the group is done; the others (the state machines first) yield to its processes.
# Without this, -n 2 on 2 cores had the demo line's pumps miss their 0.2 s (wall) leases.
WORKER_NICE = 19  # the lowest priority: 10 still let the browser and campaign tests starve them
_reniced = False


def _shared_fixture_group(item) -> str | None:
    """The test's file name if the test uses a fixture of a wider scope than the test that
    its own module defines (conftest.py's session fixtures are cheap and excluded): one
    group per file, as such fixtures may depend on each other."""
    info = getattr(item, "_fixtureinfo", None)  # pytest internals: no public equivalent
    module = getattr(item, "module", None)
    if info is None or module is None:
        return None
    for name in item.fixturenames:
        for fixturedef in info.name2fixturedefs.get(name, ()):
            func = getattr(fixturedef, "func", None)
            if (
                fixturedef.scope in _SHARED_SCOPES
                and getattr(func, "__module__", None) == module.__name__
            ):
                return item.path.name
    return None


def pytest_configure(config):
    # pytest-xdist registers it too; this keeps `pytest -p no:xdist` free of warnings
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one worker")


def _name_group(item) -> None:
    """pytest-xdist 3.8 (the newest) names an item's group in its node id,
    ``<id>@<group>``, by setting ``item._nodeid``, which pytest 9.2 no longer reads (the id
    comes from ``item._id``): without this every group would silently be split up."""
    marks = [
        m.args[0] if m.args else m.kwargs.get("name", "default")
        for m in item.iter_markers("xdist_group")
    ]
    if not marks or "@" in item.nodeid.rsplit("]", 1)[-1]:
        return  # no group, or named already (an xdist and a pytest that work together)
    nodeid = "{}@{}".format(item.nodeid, "_".join(sorted(str(m) for m in set(marks))))
    try:  # optional: private to pytest >= 9.2
        from _pytest.nodes import coerce_node_id
    except ImportError:
        item._nodeid = nodeid
    else:
        item._id = coerce_node_id(nodeid)


@pytest.hookimpl(trylast=True)  # after selection (-k, --deselect match the plain ids)
def pytest_collection_modifyitems(config, items):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a plain run: nothing is shared across processes, keep the file order
    for item in items:
        group = "scaled-wall-clock" if item.path.name in SCALED_WALL_CLOCK else None
        group = group or _shared_fixture_group(item)
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
        if group == "scaled-wall-clock":
            # Known timing flakiness: at speed S a stall of d of the loaded 2-core machine
            # looks like S x d to a module's dead-man timer (500 ms on the pumps) and
            # leases, and trips it.  One rerun (pytest-rerunfailures); a second failure
            # fails the suite.  Reruns are reported ("R" and "rerun" in the summary).
            item.add_marker(pytest.mark.flaky(reruns=1))
        if config.getvalue("loadgroup"):
            _name_group(item)

    def rank(item):
        name = item.path.name
        return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: the order within each file is kept


def pytest_runtest_setup(item):
    global _reniced
    if (
        not _reniced
        and os.environ.get("PYTEST_XDIST_WORKER")
        and item.path.name not in SCALED_WALL_CLOCK
    ):
        _reniced = True
        os.nice(WORKER_NICE)
