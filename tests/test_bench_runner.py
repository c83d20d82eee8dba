"""bench/run.py judges targets mechanically; the judgement must be right."""

from bench.run import judge


def rec(value=None, ratio=None, target=None):
    return {"value": value, "ratio": ratio, "target": target}


def test_ratio_targets():
    assert judge(rec(ratio=1.8, target="<=2.0x")) is True
    assert judge(rec(ratio=2.1, target="<=2.0x")) is False


def test_value_targets_and_conjunctions():
    assert judge(rec(value=36, ratio=0.22, target="<=40 B and <=25% of JSON")) is True
    assert judge(rec(value=41, ratio=0.22, target="<=40 B and <=25% of JSON")) is False
    assert judge(rec(value=36, ratio=0.30, target="<=40 B and <=25% of JSON")) is False
    assert judge(rec(value=120.0, target=">=100")) is True
    assert judge(rec(value=16, target="<=0")) is False


def test_unjudgeable_targets_are_none():
    assert judge(rec(value=1, target=None)) is None
    assert judge(rec(value=1, target="fast enough")) is None
    assert judge(rec(ratio=None, target="<=2.0x")) is None
