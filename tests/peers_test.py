"""benchmarks/peers.py: the time-to-target ratio against posrec (the peers themselves need
their own environment and are not run here)."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "peers", Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py")
peers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peers)


def _run(points, reached_at=None):
    curve = [dict(wall_s=w, ndcg=n) for w, n in points]
    return dict(curve=curve, reached=curve[reached_at] if reached_at is not None else None)


def test_speedup_is_a_ratio_when_reached_and_a_lower_bound_when_not():
    out = peers.speedups({
        "posrec": _run([(30.0, 0.03), (60.0, 0.06)], reached_at=1),
        "torch": _run([(200.0, 0.04), (240.0, 0.055)], reached_at=1),
        "recbole": _run([(400.0, 0.01), (650.0, 0.02)]),
    })
    assert out["torch"] == dict(ratio=pytest.approx(4.0), bound=False)
    assert out["recbole"] == dict(ratio=pytest.approx(650.0 / 60.0), bound=True)


def test_no_speedup_without_posrec_reaching_the_target():
    assert peers.speedups({"posrec": _run([(60.0, 0.01)]), "torch": _run([(9.0, 0.1)], 0)}) == {}
    assert peers.speedups({"torch": _run([(9.0, 0.1)], 0)}) == {}
