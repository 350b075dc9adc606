"""End-to-end training on the synthetic quickstart task, checkpoints and determinism."""

import json

import jax
import numpy as np
import pytest

from posrec import checkpoint, config_lib, evaluate, train
from posrec.errors import ConfigError


def tiny_config(**overrides):
    config = config_lib.default_config()
    config.data.name = "synthetic"
    config.data.synthetic.update(num_users=300, num_items=40, seq_len=16)
    config.data.min_user_count = config.data.min_item_count = 0
    config.model.update(max_len=12, hidden=16, dropout=0.1, positional="absolute")
    config.train.update(num_epochs=3, batch_size=64, eval_every=1, log_every=1000)
    config.eval.batch_size = 64
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    results = train.train_and_evaluate(tiny_config(), workdir)
    return workdir, results


def test_outputs_written(finished_run):
    workdir, results = finished_run
    on_disk = json.loads((workdir / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert set(on_disk) >= {"best_step", "valid", "test"}
    assert {"ndcg@10", "hr@10", "cov@10", "mrr@10"} <= set(on_disk["test"])
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3]
    assert all(x["split"] == "valid" and "ndcg@10" in x["metrics"] for x in lines)
    assert json.loads((workdir / "config.json").read_text())["model"]["max_len"] == 12


def test_evaluate_cli_matches_results(finished_run):
    workdir, results = finished_run
    got = evaluate.run(str(workdir), "test")
    for key, value in results["test"].items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def test_checkpoint_round_trip(finished_run, tmp_path):
    workdir, results = finished_run
    config, params, meta = checkpoint.restore_params(workdir, "best")
    assert meta["step"] == results["best_step"]
    mngr = checkpoint.manager(tmp_path, "latest")
    opt = {"mu": np.arange(3.0)}
    checkpoint.save(mngr, 7, params, opt, {"step": 7, "x": 1})
    p2, o2, m2 = checkpoint.restore(mngr, params, opt)
    jax.tree.map(np.testing.assert_array_equal, params, p2)
    np.testing.assert_array_equal(o2["mu"], opt["mu"])
    assert m2 == {"step": 7, "x": 1}


def test_same_seed_same_results(finished_run, tmp_path):
    _, results = finished_run
    again = train.train_and_evaluate(tiny_config(), tmp_path / "again")
    assert again == results


def test_finished_run_is_never_overwritten(finished_run):
    workdir, _ = finished_run
    before = (workdir / "results.json").read_text()
    with pytest.raises(ConfigError, match="finished run"):
        train.train_and_evaluate(tiny_config(), workdir)
    assert (workdir / "results.json").read_text() == before


def test_incompatible_config_rejected(tmp_path):
    config = tiny_config()
    config.train.num_epochs = 1
    train.train_and_evaluate(config, tmp_path)
    (tmp_path / "results.json").unlink()  # pretend it was interrupted
    other = tiny_config(**{"model.hidden": 32})
    with pytest.raises(ConfigError, match="different config"):
        train.train_and_evaluate(other, tmp_path)


def test_resume_continues_to_same_result(tmp_path):
    """Stop after 1 epoch (as if preempted), restart with more epochs: same as a straight run."""
    short = tiny_config(**{"train.num_epochs": 1})
    train.train_and_evaluate(short, tmp_path / "a")
    (tmp_path / "a" / "results.json").unlink()
    resumed = train.train_and_evaluate(tiny_config(), tmp_path / "a")
    straight = train.train_and_evaluate(tiny_config(), tmp_path / "b")
    assert resumed == straight


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("model.max_len", 1, "max_len"),
        ("model.positional", "bogus", "positional"),
        ("model.num_heads", 3, "divide"),
        ("train.loss", "mse", "loss"),
        ("model.dropout_bits", 16, "dropout_bits"),
    ],
)
def test_impossible_config_rejected_before_training(tmp_path, key, value, match):
    with pytest.raises(ConfigError, match=match):
        train.train_and_evaluate(tiny_config(**{key: value}), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_rng_impl_missing_from_installed_jax_is_named(tmp_path, monkeypatch):
    """An older JAX without philox2x32: the config error names the JAX, before training."""
    import jax

    real_key = jax.random.key

    def old_jax_key(seed, impl=None):
        if impl == "philox2x32":
            raise ValueError(f"unrecognized PRNG implementation name {impl!r}")
        return real_key(seed, impl=impl)

    monkeypatch.setattr(jax.random, "key", old_jax_key)
    with pytest.raises(ConfigError, match=r"rng_impl='philox2x32' is not available .* JAX"):
        train.train_and_evaluate(tiny_config(**{"train.rng_impl": "philox2x32"}), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_eval_batch_size_does_not_change_metrics(finished_run):
    workdir, _ = finished_run
    config, params, _ = checkpoint.restore_params(workdir, "best")
    from posrec.data import load_split
    from posrec.models import sasrec

    split, seqs = load_split(config)
    model = sasrec.SASRec(config.model, seqs.num_items)
    scorer = evaluate.make_scorer(model, 100, True)
    outs = []
    for bs in (1, 7, 64, 1000):
        config.eval.batch_size = bs
        summary, per_user = evaluate.evaluate(scorer, params, split.test, config, seqs.num_items)
        outs.append((summary, per_user["rank"]))
    for summary, ranks in outs[1:]:
        assert summary == outs[0][0]
        np.testing.assert_array_equal(ranks, outs[0][1])


@pytest.mark.parametrize("impl", ["rbg", "philox2x32"])
def test_rng_impl_is_deterministic_and_changes_only_dropout(tmp_path, impl):
    """train.rng_impl (dropout PRNG, issue 7): a run is reproducible, its dropout streams
    differ from threefry's, and an unknown name is refused."""
    a = train.train_and_evaluate(tiny_config(**{"train.rng_impl": impl,
                                                "train.num_epochs": 1}), tmp_path / "a")
    b = train.train_and_evaluate(tiny_config(**{"train.rng_impl": impl,
                                                "train.num_epochs": 1}), tmp_path / "b")
    c = train.train_and_evaluate(tiny_config(**{"train.num_epochs": 1}), tmp_path / "c")
    assert a["test"] == b["test"]
    assert a["test"] != c["test"]
    with pytest.raises(ConfigError, match="rng_impl"):
        train.train_and_evaluate(tiny_config(**{"train.rng_impl": "philox"}), tmp_path / "d")
