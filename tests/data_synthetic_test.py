"""Synthetic task: determinism, the lag rule, and that order beats a bag of items."""

import numpy as np
import pytest

from posrec.data.preprocess import preprocess
from posrec.data.splits import leave_one_out
from posrec.data.synthetic import make_synthetic, oracle_hit_rates, synthetic_permutation
from posrec.errors import ConfigError

SMALL = dict(num_users=300, num_items=120, seq_len=30, lag=3)


def test_deterministic_from_seed():
    a = make_synthetic(**SMALL, seed=5)
    b = make_synthetic(**SMALL, seed=5)
    c = make_synthetic(**SMALL, seed=6)
    np.testing.assert_array_equal(a.item, b.item)
    assert not np.array_equal(a.item, c.item)
    np.testing.assert_array_equal(synthetic_permutation(50, 1), synthetic_permutation(50, 1))


def test_layout():
    x = make_synthetic(**SMALL)
    assert len(x) == 300 * 30 and x.has_real_time
    assert x.user.tolist() == np.repeat(np.arange(1, 301), 30).tolist()
    assert x.time.tolist() == np.tile(np.arange(30), 300).tolist()
    seqs = x.item.reshape(300, 30)
    assert seqs.min() >= 1 and seqs.max() <= 120
    assert all(len(set(r.tolist())) == 30 for r in seqs)  # no repeats within a user


def test_permutation_is_one_cycle():
    f = synthetic_permutation(30, 2)
    assert f[0] == 0 and sorted(f[1:].tolist()) == list(range(1, 31))
    x, seen = 1, set()
    while x not in seen:
        seen.add(x)
        x = int(f[x])
    assert len(seen) == 30


def test_rule_holds_exactly_without_noise():
    x = make_synthetic(**SMALL, noise=0.0, seed=3)
    f = synthetic_permutation(120, 3)
    s = x.item.reshape(300, 30)
    # The validation and test targets always follow the rule.
    assert (f[s[:, -4]] == s[:, -1]).all()
    assert (f[s[:, -5]] == s[:, -2]).all()
    # Earlier positions follow it at roughly rule_rate: training sees the rule.
    body = (f[s[:, :-5]] == s[:, 3:-2]).mean()
    assert 0.1 < body < 0.3


def test_noise_rate_and_uniform_popularity():
    x = make_synthetic(num_users=2000, noise=0.1, seed=0)
    f = synthetic_permutation(200, 0)
    s = x.item.reshape(2000, 40)
    hit = (f[s[:, -4]] == s[:, -1]).mean()
    assert 0.87 < hit < 0.93
    counts = np.bincount(x.item, minlength=201)[1:]
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()


def test_order_beats_bag_beats_random():
    x = make_synthetic(num_users=1000, seed=0)
    r = oracle_hit_rates(x, num_items=200, lag=3, seed=0)
    assert r["order"] > 0.85
    assert 0.2 < r["bag"] < 0.45
    assert r["random"] < 0.08


def test_pipeline_targets_follow_rule():
    x = make_synthetic(**SMALL, noise=0.0, seed=4)
    seqs = preprocess(x, 5, 5)
    assert seqs.num_users == 300
    sp = leave_one_out(seqs)
    f = synthetic_permutation(120, 4)
    raw = seqs.raw_item
    src = sp.test.history[sp.test.offsets[1:] - 3]  # item lag=3 steps before the target
    np.testing.assert_array_equal(f[raw[src]], raw[sp.test.targets])


def test_bad_params():
    with pytest.raises(ConfigError):
        make_synthetic(num_items=50, seq_len=40)
    with pytest.raises(ConfigError):
        make_synthetic(lag=0)
    with pytest.raises(ConfigError):
        make_synthetic(noise=1.5)
