"""MQTT topic namespace: exact strings, id validation, parsing and round trips."""

import re
from pathlib import Path

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from protocol import constants, wire
from protocol.topics import (
    HOST_KINDS,
    MESSAGE_KIND,
    MODULE_KINDS,
    PUBLISH_FLAGS,
    TOPIC_ACK,
    TOPIC_BIRTH,
    TOPIC_CMD,
    TOPIC_DATA,
    TOPIC_DEATH,
    TOPIC_EVENT,
    TOPIC_LEASE,
    TOPIC_STATE,
    TopicError,
    host_topic,
    line_filter,
    module_filter,
    module_topic,
    parse_topic,
    validate_id,
)
from protocol.wire import ID_PATTERN
from tools.micropython import run_wasi

valid_ids = st.from_regex(re.compile(ID_PATTERN + r"\Z"), fullmatch=True)
module_ids = valid_ids.filter(lambda s: s != "host")


def test_kind_constants_and_sets():
    assert MODULE_KINDS == ("birth", "death", "data", "event", "cmd", "ack")
    assert HOST_KINDS == ("lease", "state")
    assert (TOPIC_BIRTH, TOPIC_DEATH, TOPIC_DATA, TOPIC_EVENT) == MODULE_KINDS[:4]
    assert (TOPIC_CMD, TOPIC_ACK, TOPIC_LEASE, TOPIC_STATE) == ("cmd", "ack", "lease", "state")


def test_message_kind_and_publish_flags_cover_every_topic_kind():
    assert MESSAGE_KIND[TOPIC_DATA] == constants.KIND_TELEMETRY
    assert MESSAGE_KIND[TOPIC_CMD] == constants.KIND_COMMAND
    assert sorted(MESSAGE_KIND.values()) == list(range(1, 9))
    assert set(PUBLISH_FLAGS) == set(MODULE_KINDS + HOST_KINDS) == set(MESSAGE_KIND)
    assert PUBLISH_FLAGS[TOPIC_DATA] == (0, False)
    assert PUBLISH_FLAGS[TOPIC_LEASE] == (0, False)
    assert PUBLISH_FLAGS[TOPIC_STATE] == (1, True)
    assert [k for k, (_, retain) in PUBLISH_FLAGS.items() if retain] == [TOPIC_STATE]


def test_exact_topic_strings():
    assert module_topic("line1", "pump-a", TOPIC_DATA) == "skid/v1/line1/pump-a/data"
    assert module_topic("l", "0", TOPIC_CMD) == "skid/v1/l/0/cmd"
    assert host_topic("line1", TOPIC_LEASE) == "skid/v1/line1/host/lease"
    assert host_topic("line1", TOPIC_STATE) == "skid/v1/line1/host/state"
    assert module_filter("line1", TOPIC_BIRTH) == "skid/v1/line1/+/birth"
    assert line_filter("line1") == "skid/v1/line1/#"


def test_parse_topic():
    assert parse_topic("skid/v1/line1/pump-a/data") == ("line1", "pump-a", "data")
    assert parse_topic("skid/v1/line1/host/state") == ("line1", None, "state")
    assert parse_topic(b"skid/v1/line1/reactor_2/ack") == ("line1", "reactor_2", "ack")
    assert parse_topic(bytearray(b"skid/v1/l/host/lease")) == ("l", None, "lease")


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        ("skid/v2/line1/pump/data", "not of the form"),
        ("skid/v1/line1/pump", "not of the form"),
        ("skid/v1/line1/pump/data/extra", "not of the form"),
        ("/skid/v1/line1/pump/data", "not of the form"),
        ("skid/v1/line1/pump/lease", "module topic kind 'lease'"),
        ("skid/v1/line1/host/data", "host topic kind 'data'"),
        ("skid/v1/line1/+/birth", "module id '+'"),
        ("skid/v1/#/pump/birth", "line id '#'"),
        ("skid/v1//pump/data", "line id '' is empty"),
        ("skid/v1/Line1/pump/data", "line id 'Line1'"),
        ("skid/v1/line1/pump/Data", "module topic kind 'Data'"),
        (b"skid/v1/line1/\xff/data", "topic"),
        (42, "must be a str, got int"),
    ],
)
def test_parse_topic_rejects(topic, fragment):
    with pytest.raises(TopicError, match=re.escape(fragment)):
        parse_topic(topic)


@pytest.mark.parametrize(
    ("kind", "value", "fragment"),
    [
        ("line", "", "is empty"),
        ("line", "a" * 33, "is 33 characters long (max 32)"),
        ("module", "Pump", "must start with a lowercase letter or digit, not 'P'"),
        ("module", "-pump", "must start with a lowercase letter or digit, not '-'"),
        ("module", "_pump", "not '_'"),
        ("module", "pu+mp", "invalid character '+' at index 2"),
        ("module", "pump#", "invalid character '#' at index 4"),
        ("line", "a/b", "invalid character '/' at index 1"),
        ("line", "$sys", "not '$'"),
        ("line", "a b", "invalid character ' ' at index 1"),
        ("line", "caf\u00e9", "invalid character '\u00e9' at index 3"),
        ("module", "host", "reserved for host topics"),
        ("host", None, "must be a str, got NoneType"),
        ("line", b"line1", "must be a str, got bytes"),
    ],
)
def test_validate_id_messages(kind, value, fragment):
    with pytest.raises(TopicError) as info:
        validate_id(kind, value)
    message = str(info.value)
    assert fragment in message
    assert message.startswith(kind + " id " + repr(value))
    assert ID_PATTERN in message
    assert isinstance(info.value, ValueError)


def test_validate_id_accepts_and_returns():
    assert validate_id("line", "a" * 32) == "a" * 32
    assert validate_id("module", "0pump_a-1") == "0pump_a-1"
    assert validate_id("host", "host") == "host"  # reserved only as a module id
    assert validate_id("line", "host") == "host"
    with pytest.raises(TopicError, match="unknown id kind 'device'"):
        validate_id("device", "x")


def test_builders_reject_bad_kinds_and_ids():
    with pytest.raises(TopicError, match="module topic kind 'lease'"):
        module_topic("l", "m", TOPIC_LEASE)
    with pytest.raises(TopicError, match="host topic kind 'data'"):
        host_topic("l", TOPIC_DATA)
    with pytest.raises(TopicError, match="module topic kind 'state'"):
        module_filter("l", TOPIC_STATE)
    with pytest.raises(TopicError, match="reserved"):
        module_topic("l", "host", TOPIC_DATA)
    with pytest.raises(TopicError, match="line id '\\+'"):
        module_filter("+", TOPIC_DATA)
    with pytest.raises(TopicError, match="line id '#'"):
        line_filter("#")


@given(st.sampled_from(["line", "module", "host"]), st.text(max_size=40))
def test_any_string_validates_or_raises_topic_error(kind, value):
    should_pass = re.fullmatch(ID_PATTERN, value) is not None
    if kind == "module" and value == "host":
        should_pass = False
    try:
        assert validate_id(kind, value) == value
        assert should_pass
    except TopicError:
        assert not should_pass


@given(st.text(alphabet="a9_-A/+\u00e9\n", max_size=34))
@example("a-b_9")
@example("_a")
@example("-a")
@example("9a")
@example("a" * 32)
@example("a" * 33)
def test_the_allocation_free_checks_agree_with_the_patterns(value):
    # protocol.wire states each rule once as a pattern; boards check it with character
    # sets instead of re.  Both must accept exactly the same strings.
    is_id = re.fullmatch(wire.ID_PATTERN, value) is not None
    assert wire.is_id(value) == is_id
    assert (wire.id_problem(value) is None) == is_id
    assert wire.is_name(value) == (re.fullmatch(wire.NAME_PATTERN, value) is not None)


def test_the_id_and_name_patterns_appear_once_in_the_code():
    root = Path(__file__).resolve().parent.parent
    id_core = wire.ID_PATTERN[: wire.ID_PATTERN.index("{")]  # also catches [...]* variants
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith((".venv/", "node_modules/")) or "/." in "/" + rel:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if id_core in text or wire.NAME_PATTERN in text:
            found.append(rel)
    assert found == ["protocol/wire.py"]


@given(valid_ids, module_ids, st.sampled_from(MODULE_KINDS))
def test_module_topic_round_trip(line, module, kind):
    topic = module_topic(line, module, kind)
    assert parse_topic(topic) == (line, module, kind)
    assert parse_topic(topic.encode()) == (line, module, kind)
    assert topic.count("/") == 4
    assert not set("+#$") & set(topic)


@given(valid_ids, st.sampled_from(HOST_KINDS))
def test_host_topic_round_trip(line, kind):
    assert parse_topic(host_topic(line, kind)) == (line, None, kind)


levels = st.one_of(
    st.sampled_from(["skid", "v1", "v2", "host", "+", "#", "", "$sys", "Data", "x/y"]),
    st.sampled_from(MODULE_KINDS + HOST_KINDS),
    valid_ids,
    st.text(max_size=5),
)
topics_ish = st.one_of(
    st.lists(levels, max_size=6).map("/".join),
    st.lists(levels, min_size=3, max_size=3).map(lambda ls: "skid/v1/" + "/".join(ls)),
)


@given(topics_ish)
def test_parse_topic_accepts_only_what_builders_produce(topic):
    try:
        line, module, kind = parse_topic(topic)
    except TopicError:
        event("rejected")
        return
    event("accepted")
    rebuilt = host_topic(line, kind) if module is None else module_topic(line, module, kind)
    assert rebuilt == topic


MPY_TOPICS = r"""
from protocol.topics import module_topic, host_topic, parse_topic, module_filter, TopicError
print(module_topic("line1", "pump-a", "data"))
print(host_topic("line1", "state"), module_filter("line1", "birth"))
print(parse_topic(b"skid/v1/line1/pump-a/cmd"), parse_topic("skid/v1/line1/host/lease"))
for bad in ("skid/v1/line1/host/data", "skid/v1/Line/pump/data"):
    try:
        parse_topic(bad)
    except TopicError as e:
        print("error", isinstance(e, ValueError), str(e))
"""


def test_topics_under_micropython():
    lines = run_wasi(MPY_TOPICS).stdout.splitlines()
    assert lines[:3] == [
        "skid/v1/line1/pump-a/data",
        "skid/v1/line1/host/state skid/v1/line1/+/birth",
        "('line1', 'pump-a', 'cmd') ('line1', None, 'lease')",
    ]
    assert lines[3] == (
        "error True topic 'skid/v1/line1/host/data': host topic kind 'data' is not one of"
        " ('lease', 'state')"
    )
    assert lines[4].startswith("error True topic 'skid/v1/Line/pump/data': line id 'Line' must")
