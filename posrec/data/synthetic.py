"""A synthetic, order-dependent next-item task for the quickstart and for sanity checks.

The rule: item f(x) tends to come exactly `lag` steps after item x, where f is a fixed random
permutation of the catalog (one n-cycle, so f has no fixed points and no 2-cycles).

Each user's sequence of `seq_len` distinct items mixes two kinds of positions:
  * fresh positions: an item drawn uniformly from the items the user has not had yet;
  * rule positions t: x_t = f(x_{t-lag}) (with probability 1 - `noise`; otherwise a fresh
    item, a "violation").
The last two positions (the leave-one-out validation and test targets) are always rule
positions; before that, a position is a rule position with probability `rule_rate` (and never
when the position `lag` earlier already is one, so sources are fresh items and chains do not
form). Items never repeat within a user, so exclude-seen masking cannot leak the target.

Why bag-of-items statistics are not enough: the target is f(x_{t-lag}), and from the SET of
past items an order-blind model only knows that the source is one of the "dangling" items
(items y in the history with f(y) not in the history). Most fresh items are dangling, so at
the test position there are about 25 equally likely candidates (seq_len=40, rule_rate=0.2).
Items are uniformly popular, so popularity is uninformative.

Rough ceilings for the LOO test target with the defaults (num_items=200, seq_len=40, lag=3,
noise=0.1), measured by `oracle_hit_rates` over 2,000 users:
  * order-aware Bayes-optimal HR@10 ~ 0.90 (rank f(x_{t-lag}) first; misses only on noise);
  * order-blind (bag) oracle HR@10 ~ 0.33 (top-10 of the dangling items' images);
  * popularity / random HR@10 ~ 0.06 (10 of ~161 unseen items).
"""

from __future__ import annotations

import numpy as np

from posrec.data.readers import Interactions
from posrec.errors import ConfigError


def synthetic_permutation(num_items: int, seed: int) -> np.ndarray:
    """int64 [num_items+1] the rule f: f[x] is the item that follows x; f[0] = 0 (padding).

    f is a single random cycle over items 1..num_items, derived from `seed` alone.
    """
    rng = np.random.default_rng([int(seed), 0])
    order = rng.permutation(num_items) + 1
    f = np.zeros(num_items + 1, np.int64)
    f[order] = np.roll(order, -1)
    return f


def _rule_positions(rng: np.random.Generator, seq_len: int, lag: int, rate: float) -> np.ndarray:
    """bool [seq_len]: which positions follow the rule (see the module docstring)."""
    rule = np.zeros(seq_len, bool)
    forced = [seq_len - 2, seq_len - 1]
    no_rule = {t - lag for t in forced}  # sources of the forced positions must be fresh
    draws = rng.random(seq_len)
    for t in range(lag, seq_len - 2):
        if t not in no_rule and not rule[t - lag] and draws[t] < rate:
            rule[t] = True
    rule[forced] = True
    return rule


def make_synthetic(
    num_users: int = 2000,
    num_items: int = 200,
    seq_len: int = 40,
    lag: int = 3,
    noise: float = 0.1,
    seed: int = 0,
    rule_rate: float = 0.2,
) -> Interactions:
    """Generates the lag-`lag` permutation task (see the module docstring).

    Returns:
        `Interactions` with num_users * seq_len rows: raw user ids 1..num_users, raw item ids
        1..num_items, time = position in the user's sequence (0..seq_len-1). has_real_time
        is True, but the temporal split still refuses these times: every user's are exactly
        0, 1, 2, ... (`readers.are_order_indices`). LOO is the protocol. Fully determined by
        the arguments.
    """
    if num_users < 1 or lag < 1 or seq_len < lag + 3:
        raise ConfigError(
            f"synthetic data: need num_users >= 1, lag >= 1 and seq_len >= lag + 3, got "
            f"num_users={num_users}, lag={lag}, seq_len={seq_len}"
        )
    if num_items < 2 * seq_len + 2:
        raise ConfigError(
            f"synthetic data: num_items={num_items} is too small for seq_len={seq_len} "
            f"distinct items per user; use num_items >= {2 * seq_len + 2}"
        )
    if not (0.0 <= noise <= 1.0 and 0.0 <= rule_rate <= 1.0):
        raise ConfigError(
            f"synthetic data: noise and rule_rate must be in [0, 1], got {noise}, {rule_rate}"
        )
    f = synthetic_permutation(num_items, seed)
    rng = np.random.default_rng([int(seed), 1])
    items = np.zeros((num_users, seq_len), np.int64)
    for u in range(num_users):
        rule = _rule_positions(rng, seq_len, lag, rule_rate)
        follow = rule & (rng.random(seq_len) >= noise)
        pool = iter(rng.integers(1, num_items + 1, size=8 * seq_len).tolist())
        seen: set[int] = set()
        reserved: set[int] = set()  # images promised to a later rule position
        row = items[u]
        for t in range(seq_len):
            x = -1
            if follow[t]:
                x = int(f[row[t - lag]])
                reserved.discard(x)
                if x in seen:
                    x = -1  # cannot repeat an item: becomes a violation
            if x < 0:
                needs_image = t + lag < seq_len and rule[t + lag]
                while True:
                    c = next(pool, None)
                    if c is None:
                        c = int(rng.integers(1, num_items + 1))
                    if c in seen or c in reserved:
                        continue
                    if needs_image:
                        img = int(f[c])
                        if img in seen or img in reserved or img == c:
                            continue
                    break
                x = c
            row[t] = x
            seen.add(x)
            if t + lag < seq_len and rule[t + lag]:
                reserved.add(int(f[x]))
    user = np.repeat(np.arange(1, num_users + 1, dtype=np.int64), seq_len)
    time = np.tile(np.arange(seq_len, dtype=np.int64), num_users)
    return Interactions(user=user, item=items.reshape(-1), time=time, has_real_time=True)


def oracle_hit_rates(
    inter: Interactions, num_items: int, lag: int, seed: int, k: int = 10
) -> dict[str, float]:
    """Ceilings for HR@k on each user's last item (the LOO test target) of `make_synthetic`.

    Assumes rows grouped by user in time order with equal lengths (as generated).
      "order": rank f(x_{t-lag}) first (the order-aware Bayes rule; a hit unless noise).
      "bag": the best an order-blind model can do: f(y) for the dangling items y (f(y) not
          in the history) are equally likely; expected HR@k = P(target among them) *
          min(1, k / #dangling).
      "random": k / #unseen items (uniform popularity).
    """
    f = synthetic_permutation(num_items, seed)
    users = np.unique(inter.user)
    seqs = inter.item.reshape(len(users), -1)
    order_hits, bag_hits, rand_hits = [], [], []
    for row in seqs:
        hist, target = row[:-1], int(row[-1])
        order_hits.append(float(int(f[hist[-lag]]) == target))
        hset = set(hist.tolist())
        cands = {int(f[y]) for y in hist if int(f[y]) not in hset}
        bag_hits.append(min(1.0, k / len(cands)) if target in cands else 0.0)
        rand_hits.append(k / (num_items - len(hist)))
    return {
        "order": float(np.mean(order_hits)),
        "bag": float(np.mean(bag_hits)),
        "random": float(np.mean(rand_hits)),
    }
