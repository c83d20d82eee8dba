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


def test_a_partial_run_replaces_only_its_own_records(tmp_path, monkeypatch):
    import json
    import sys
    import types

    from bench import run as bench_run

    results = tmp_path / "results.json"
    common = {"unit": "", "peer": None, "peer_value": None, "ratio": None, "target": None}
    old = [
        {"name": "a.x", "module": "bench_alpha", "value": 1, "met": None, **common},
        {"name": "b.y", "module": "bench_beta", "value": 2, "met": None, **common},
    ]
    results.write_text(json.dumps(old))
    fake = types.ModuleType("bench.bench_beta")
    fake.run = lambda: [
        {"name": "b.y", "value": 3, "unit": "", "peer": None, "peer_value": None,
         "ratio": None, "target": None}
    ]  # fmt: skip
    monkeypatch.setitem(sys.modules, "bench.bench_beta", fake)
    monkeypatch.setattr(bench_run, "discover", lambda names: ["bench_beta"] if names else [])
    monkeypatch.setattr(bench_run, "RESULTS", results)
    monkeypatch.setattr(bench_run, "HERE", tmp_path)
    assert bench_run.main(["beta"]) == 0
    after = {r["module"]: r["value"] for r in json.loads(results.read_text())}
    assert after == {"bench_alpha": 1, "bench_beta": 3}
