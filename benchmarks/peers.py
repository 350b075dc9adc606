"""posrec vs two PyTorch SASRecs on ML-1M, in one run on the same data and hyperparameters.

    # once: the peers' own environment (benchmarks/README.md)
    python3.11 -m venv benchmarks/.venv-peers
    benchmarks/.venv-peers/bin/pip install -r benchmarks/requirements-peers.txt
    # the run (from the repository root; posrec runs in .venv as a subprocess)
    benchmarks/.venv-peers/bin/python benchmarks/peers.py --target_ndcg 0.05 --budget_s 1200

Methods:
  recbole  RecBole 1.2.1 `SASRec`, loss_type CE, full-ranking validation (`mode: full`): it
           trains on every prefix of each training sequence with the loss at its last
           position, so one target per example.
  torch    a plain-PyTorch SASRec written here, trained like posrec: one left-padded window
           of the last T training items per user, CE over the catalog at every non-pad
           position (the SASRec of posrec.models.sasrec with absolute PE: pre-LN on the
           query path, tied item table, padding id excluded from the softmax).
  posrec   `python -m posrec.main` with configs/ml1m.py and absolute PE (run in .venv).

Same data: ../shared/data/ml-1m.csv.gz through posrec's preprocessing (5-core, per-user
order, leave-one-out), exported once by posrec and given to RecBole as an atomic .inter file
(timestamp = position in the user's sequence, split `LS: valid_and_test`, order `TO`), so the
three see the same training sequences and validation targets (6,040 users, 3,416 items).
Same hyperparameters (configs/ml1m.py): T=200, d=64, 2 blocks, 1 head, FFN 64, dropout 0.1,
Adam lr 1e-3, batch 128; validation NDCG@10 by full ranking with the user's history excluded.

Reported per method:
  * targets/s and s/step at equal shapes (B=128, T=200), measured in interleaved rounds on
    fixed batches (posrec through a worker process in .venv that runs its steps on request);
    targets = next-item predictions that carry a loss term (RecBole: 128 per batch; torch and
    posrec: the non-pad positions of the batch);
  * time to reach validation NDCG@10 >= --target_ndcg: training seconds (evaluations
    excluded, so evaluating more often is not penalised) and wall seconds from the start of
    the method (imports, data, compilation and evaluations included); each method runs
    alone, one after the other, for at most --budget_s seconds. RecBole is validated every
    --recbole_eval_steps steps (its epoch is ~7,600 steps), torch and posrec once per epoch.
The machine's load average is recorded with every figure (other processes share the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "ml-1m.csv.gz"
POSREC_PYTHON = ROOT / ".venv" / "bin" / "python"
HPARAMS = dict(max_len=200, hidden=64, num_blocks=2, num_heads=1, dropout=0.1,
               learning_rate=1e-3, batch_size=128, eval_batch_size=256)


def log(*a) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Data: exported by posrec (runs in .venv).


def export_data(data_path: Path, out: Path, max_len: int) -> None:
    """posrec's preprocessing of `data_path` -> npz (runs in posrec's environment)."""
    import numpy as np

    from posrec import config_lib
    from posrec.data import batching, load_split

    config = config_lib.default_config()
    config.data.name, config.data.path, config.data.has_real_time = "csv", str(data_path), False
    split, seqs = load_split(config)
    inputs, targets = batching.train_examples(split.train, max_len)
    np.savez(out, items=seqs.items, offsets=seqs.offsets, num_items=seqs.num_items,
             train_items=split.train.items, train_offsets=split.train.offsets,
             valid_history=split.valid.history, valid_offsets=split.valid.offsets,
             valid_targets=split.valid.targets, inputs=inputs, targets=targets)


# ---------------------------------------------------------------------------------------------
# The plain-PyTorch SASRec (method "torch").


def torch_model(num_items: int, hp: dict):
    import torch
    from torch import nn

    C, T = hp["hidden"], hp["max_len"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_attn = nn.LayerNorm(C, eps=1e-8)
            self.q, self.k, self.v, self.o = (nn.Linear(C, C) for _ in range(4))
            self.attn_drop = nn.Dropout(hp["dropout"])
            self.ln_ffn = nn.LayerNorm(C, eps=1e-8)
            self.fc1, self.fc2 = nn.Linear(C, C), nn.Linear(C, C)
            self.drop1, self.drop2 = nn.Dropout(hp["dropout"]), nn.Dropout(hp["dropout"])

        def forward(self, x, mask, valid):
            q_in = self.ln_attn(x)
            B = x.shape[0]
            H = hp["num_heads"]
            split = lambda t: t.view(B, T, H, C // H).transpose(1, 2)  # [B, H, T, D]
            q, k, v = split(self.q(q_in)), split(self.k(x)), split(self.v(x))
            s = q @ k.transpose(-1, -2) / (C // H) ** 0.5
            w = self.attn_drop(torch.softmax(s.masked_fill(~mask, -1e30), dim=-1))
            a = self.o((w @ v).transpose(1, 2).reshape(B, T, C))
            x = self.ln_ffn(q_in + a)
            x = x + self.drop2(self.fc2(self.drop1(torch.relu(self.fc1(x)))))
            return x * valid[..., None]

    class SASRec(nn.Module):
        def __init__(self):
            super().__init__()
            self.item = nn.Embedding(num_items + 1, C, padding_idx=0)
            self.pos = nn.Parameter(torch.randn(T, C) * 0.02)
            self.drop = nn.Dropout(hp["dropout"])
            self.blocks = nn.ModuleList(Block() for _ in range(hp["num_blocks"]))
            self.final_ln = nn.LayerNorm(C, eps=1e-8)
            for p in self.parameters():
                if p.dim() > 1:
                    nn.init.normal_(p, 0, 0.02)

        def forward(self, inputs):
            valid = inputs > 0
            x = self.item(inputs) * C**0.5 + self.pos[None]
            x = self.drop(x) * valid[..., None]
            causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
            mask = causal[None, None] & valid[:, None, None, :]
            for block in self.blocks:
                x = block(x, mask, valid)
            return self.final_ln(x)

        def loss(self, inputs, targets):
            h = self(inputs)
            keep = targets > 0
            logits = h[keep] @ self.item.weight.T  # only the positions with a target
            logits[:, 0] = float("-inf")
            return nn.functional.cross_entropy(logits, targets[keep]), int(keep.sum())

    return SASRec()


def full_ranking_ndcg(score_fn, valid, num_items: int, max_len: int, batch: int) -> float:
    """Mean NDCG@10 over validation users: full ranking, history excluded, pessimistic ties
    (posrec's protocol); `score_fn(inputs [B, T] int64) -> scores [B, N+1]` (torch)."""
    import numpy as np
    import torch

    hist, offs, tgts = valid["valid_history"], valid["valid_offsets"], valid["valid_targets"]
    total = 0.0
    with torch.no_grad():
        for lo in range(0, len(tgts), batch):
            hi = min(lo + batch, len(tgts))
            x = np.zeros((hi - lo, max_len), np.int64)
            for r, u in enumerate(range(lo, hi)):
                h = hist[offs[u] : offs[u + 1]][-max_len:]
                x[r, max_len - len(h) :] = h
            scores = score_fn(torch.from_numpy(x)).clone()
            t = torch.from_numpy(tgts[lo:hi].astype(np.int64))
            rows = torch.arange(hi - lo)
            target_score = scores[rows, t].clone()
            scores[:, 0] = float("-inf")
            for r, u in enumerate(range(lo, hi)):
                scores[r, torch.from_numpy(hist[offs[u] : offs[u + 1]].astype(np.int64))] = \
                    float("-inf")
            scores[rows, t] = target_score
            rank = (scores >= target_score[:, None]).sum(1)
            total += float(torch.where(rank <= 10, 1.0 / torch.log2(rank + 1.0), 0.0).sum())
    return total / len(tgts)


class TorchMethod:
    """Method "torch": plain PyTorch, trained like posrec."""

    name = "torch"

    def __init__(self, data, hp: dict, seed: int = 0):
        import torch

        self.data, self.hp, self.seed = data, hp, seed
        self.inputs = torch.from_numpy(data["inputs"].astype("int64"))
        self.targets = torch.from_numpy(data["targets"].astype("int64"))
        self.reset()

    def reset(self) -> None:
        """A freshly initialised model and optimizer."""
        import torch

        torch.manual_seed(self.seed)
        self.model = torch_model(int(self.data["num_items"]), self.hp)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.hp["learning_rate"])

    def epoch_batches(self, epoch: int):
        import numpy as np

        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.inputs))
        B = self.hp["batch_size"]
        for s in range(0, len(perm), B):
            idx = perm[s : s + B]
            yield self.inputs[idx], self.targets[idx]

    def step(self, batch) -> int:
        self.model.train()
        self.opt.zero_grad()
        loss, count = self.model.loss(*batch)
        loss.backward()
        self.opt.step()
        return count

    def validate(self) -> float:
        self.model.eval()
        table = self.model.item.weight

        def score(x):
            return self.model(x)[:, -1] @ table.T

        return full_ranking_ndcg(score, self.data, int(self.data["num_items"]),
                                 self.hp["max_len"], self.hp["eval_batch_size"])


class RecBoleMethod:
    """Method "recbole": RecBole's SASRec with CE, driven step by step."""

    name = "recbole"

    def __init__(self, data, hp: dict, workdir: Path, seed: int = 0):
        os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.model.sequential_recommender import SASRec
        from recbole.trainer import Trainer
        from recbole.utils import init_seed

        name = "ml-1m-posrec"
        write_atomic_inter(data, workdir / name / f"{name}.inter")
        config = Config(model="SASRec", dataset=name, config_dict=dict(
            data_path=str(workdir), checkpoint_dir=str(workdir / "ckpt"), seed=seed,
            reproducibility=True, device="cpu", use_gpu=False, show_progress=False,
            USER_ID_FIELD="user_id", ITEM_ID_FIELD="item_id", TIME_FIELD="timestamp",
            load_col={"inter": ["user_id", "item_id", "timestamp"]},
            MAX_ITEM_LIST_LENGTH=hp["max_len"], loss_type="CE", train_neg_sample_args=None,
            n_layers=hp["num_blocks"], n_heads=hp["num_heads"], hidden_size=hp["hidden"],
            inner_size=hp["hidden"], hidden_dropout_prob=hp["dropout"],
            attn_dropout_prob=hp["dropout"], hidden_act="relu", initializer_range=0.02,
            learning_rate=hp["learning_rate"], train_batch_size=hp["batch_size"],
            eval_batch_size=hp["eval_batch_size"], epochs=1000, weight_decay=0.0,
            eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
                       "group_by": "user"},
            metrics=["NDCG"], topk=[10], valid_metric="NDCG@10", worker=0,
            save_dataset=False, save_dataloaders=False,
        ))
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        self.train_data, self.valid_data, _ = data_preparation(config, dataset)
        self.num_items = dataset.item_num - 1
        self.num_examples = len(self.train_data.dataset)
        self._new = lambda: SASRec(config, self.train_data.dataset)
        self._trainer = lambda model: Trainer(config, model)
        self.reset()

    def reset(self) -> None:
        """A freshly initialised model and optimizer (the data stays)."""
        self.model = self._new()
        self.trainer = self._trainer(self.model)

    def epoch_batches(self, epoch: int):
        yield from self.train_data  # RecBole reshuffles at every pass

    def step(self, interaction) -> int:
        self.model.train()
        opt = self.trainer.optimizer
        opt.zero_grad()
        loss = self.model.calculate_loss(interaction)
        loss.backward()
        opt.step()
        return len(interaction)  # one target (the next item) per prefix

    def validate(self) -> float:
        result = self.trainer.evaluate(self.valid_data, load_best_model=False,
                                       show_progress=False)
        return float(result["ndcg@10"])


def write_atomic_inter(data, path: Path) -> None:
    """Every user's full sequence (train + valid + test items) with its position as time."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    items, offs = data["items"], data["offsets"]
    users = np.repeat(np.arange(len(offs) - 1), np.diff(offs))
    pos = np.arange(len(items)) - np.repeat(offs[:-1], np.diff(offs))
    with open(path, "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        f.writelines(f"{u}\t{i}\t{t}\n" for u, i, t in zip(users, items, pos, strict=True))


# ---------------------------------------------------------------------------------------------
# posrec through .venv: a step worker (equal-shape timing) and the real CLI (time to target).


class PosrecWorker:
    """A .venv process running posrec training steps on fixed [B, T] batches on request."""

    def __init__(self, data_path: Path, steps: int, bench_args: str = ""):
        self.proc = subprocess.Popen(
            [str(POSREC_PYTHON), str(Path(__file__).resolve()), "posrec-worker",
             "--data_path", str(data_path), "--steps", str(steps),
             f"--posrec_bench_args={bench_args}"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self.proc.stdout.readline())

    def run(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def posrec_worker(args) -> None:
    """Runs in .venv: posrec.bench's train step on the first `--steps` unbucketed batches."""
    import jax

    from posrec import bench

    bargs = bench.parse_args(["--batch_size", str(HPARAMS["batch_size"]), "--max_len",
                              str(HPARAMS["max_len"]), "--dropout", str(HPARAMS["dropout"]),
                              "--bucket_lengths", "", "--steps", str(args.steps),
                              "--data_path", str(args.data_path),
                              *args.posrec_bench_args.split()])
    data = bench.load_data(args.data_path, HPARAMS["max_len"])
    case = bench.build_case("absolute", data.num_items, data, bargs)
    bench.run_steps(case)
    print(json.dumps(dict(targets_per_round=case.results["targets_per_round"],
                          steps=len(case.batches), compile_s=case.results["compile_s"],
                          jax=jax.__version__)), flush=True)
    for line in sys.stdin:
        if line.strip() == "run":
            print(bench.run_steps(case), flush=True)


def posrec_to_target(data_path: Path, target: float, budget_s: float, workdir: Path,
                     extra: list[str]) -> dict:
    """Train with `python -m posrec.main` (configs/ml1m.py, absolute PE) until a validation
    line reaches `target` (or the budget ends); SIGTERM then stops it cleanly."""
    cmd = [str(POSREC_PYTHON), "-m", "posrec.main", "--config=configs/ml1m.py",
           f"--workdir={workdir}", f"--config.data.path={data_path}",
           "--config.data.has_real_time=False", "--config.model.positional=absolute",
           "--config.train.num_epochs=1000", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=open(workdir.parent / "posrec.log", "w"))
    curve, train_s, reached = [], 0.0, None
    metrics = workdir / "metrics.jsonl"
    seen = 0
    while proc.poll() is None and time.perf_counter() - t0 < budget_s and reached is None:
        time.sleep(0.5)
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        for line in lines[seen:]:
            rec = json.loads(line)
            train_s += rec["epoch_seconds"]
            point = dict(step=rec["step"], epoch=rec["epoch"], ndcg=rec["metrics"]["ndcg@10"],
                         train_s=train_s, wall_s=time.perf_counter() - t0,
                         load=os.getloadavg()[0])
            curve.append(point)
            log(f"posrec: {point}")
            if reached is None and point["ndcg"] >= target:
                reached = point
        seen = len(lines)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
    return dict(curve=curve, reached=reached, budget_s=budget_s, command=" ".join(cmd))


def to_target(method, target: float, budget_s: float, eval_steps: int, t_start: float) -> dict:
    """Train `method` until its validation NDCG@10 >= target or the budget ends.

    Validates every `eval_steps` steps (0: at the end of every epoch), and once more when the
    budget runs out between validations, so the curve always ends at the budget.
    """
    curve, train_s, step, epoch = [], 0.0, 0, 0
    while True:
        for batch in method.epoch_batches(epoch):
            t0 = time.perf_counter()
            method.step(batch)
            train_s += time.perf_counter() - t0
            step += 1
            out_of_time = time.perf_counter() - t_start >= budget_s
            if (eval_steps and step % eval_steps == 0) or out_of_time:
                if _validate(method, curve, step, epoch, train_s, t_start, target):
                    return dict(curve=curve, reached=curve[-1], budget_s=budget_s)
                if out_of_time:
                    return dict(curve=curve, reached=None, budget_s=budget_s)
        epoch += 1
        if not eval_steps and _validate(method, curve, step, epoch, train_s, t_start, target):
            return dict(curve=curve, reached=curve[-1], budget_s=budget_s)


def _validate(method, curve, step, epoch, train_s, t_start, target) -> bool:
    ndcg = method.validate()
    point = dict(step=step, epoch=epoch, ndcg=ndcg, train_s=train_s,
                 wall_s=time.perf_counter() - t_start, load=os.getloadavg()[0])
    curve.append(point)
    log(f"{method.name}: {point}")
    return ndcg >= target


def speedups(to_target: dict) -> dict:
    """Per method, its wall seconds to the target / posrec's: a ratio when it got there, a
    lower bound (">= budget / posrec") when it did not within its budget."""
    mine = (to_target.get("posrec") or {}).get("reached")
    if not mine:
        return {}
    out = {}
    for name, res in to_target.items():
        if name == "posrec":
            continue
        if res["reached"]:
            out[name] = dict(ratio=res["reached"]["wall_s"] / mine["wall_s"], bound=False)
        else:  # still below the target when its budget ended
            out[name] = dict(ratio=res["curve"][-1]["wall_s"] / mine["wall_s"], bound=True)
    return out


def equal_shape_rounds(methods: dict, worker: PosrecWorker, steps: int, rounds: int) -> dict:
    """s/step and targets/s at B=128, T=200, interleaved: each round runs every method."""
    import statistics

    fixed = {}
    for name, m in methods.items():
        it = m.epoch_batches(0)
        fixed[name] = [next(it) for _ in range(steps)]
        m.step(fixed[name][0])  # warm-up
    times = {name: [] for name in [*methods, "posrec"]}
    counts = {}
    for _ in range(rounds):
        for name, m in methods.items():
            t0 = time.perf_counter()
            counts[name] = sum(m.step(b) for b in fixed[name])
            times[name].append((time.perf_counter() - t0) / steps)
        times["posrec"].append(worker.run())
    counts["posrec"] = worker.info["targets_per_round"]
    out = {}
    for name, ts in times.items():
        n_steps = steps if name != "posrec" else worker.info["steps"]
        sec = statistics.median(ts)
        out[name] = dict(s_per_step=sec, targets_per_step=counts[name] / n_steps,
                         targets_per_s=counts[name] / n_steps / sec, rounds=ts)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", nargs="?", default="run", choices=("run", "export", "posrec-worker"))
    p.add_argument("--data_path", type=Path, default=DATA)
    p.add_argument("--out", type=Path, default=None, help="JSON results (default: stdout)")
    p.add_argument("--target_ndcg", type=float, default=0.05)
    p.add_argument("--budget_s", type=float, default=1200.0, help="per method")
    p.add_argument("--budget_factor", type=float, default=0.0,
                   help="with posrec first in --methods: each later method's budget is this "
                        "factor times posrec's wall seconds to the target (a lower-bound test "
                        "of 'FACTOR x faster': a method still below the target then needs more)")
    p.add_argument("--methods", default="recbole,torch,posrec")
    p.add_argument("--recbole_eval_steps", type=int, default=500)
    p.add_argument("--steps", type=int, default=4, help="fixed batches per timing round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no_equal_shapes", action="store_true", help="only time to target")
    p.add_argument("--no_to_target", action="store_true", help="only the equal-shape timing")
    p.add_argument("--posrec_bench_args", default="",
                   help="extra posrec.bench flags for the equal-shape posrec step, e.g. "
                   "'--parallelism=pmap' (with XLA_FLAGS giving one CPU device per core)")
    p.add_argument("--posrec_args", default="--config.train.bucket_lengths=(50,100,200)",
                   help="extra posrec.main flags for the time-to-target run")
    args = p.parse_args(argv)
    if args.mode == "export":
        export_data(args.data_path, args.out, HPARAMS["max_len"])
        return 0
    if args.mode == "posrec-worker":
        posrec_worker(args)
        return 0

    import numpy as np
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))  # the cores it may use
    args.out = args.out.resolve() if args.out else None
    args.data_path = args.data_path.resolve()
    work = Path(tempfile.mkdtemp(prefix="posrec_peers_"))
    os.chdir(work)  # RecBole writes log_tensorboard/ into the working directory
    npz = work / "data.npz"
    subprocess.run([str(POSREC_PYTHON), str(Path(__file__).resolve()), "export",
                    "--data_path", str(args.data_path), "--out", str(npz)], cwd=ROOT, check=True)
    data = dict(np.load(npz))
    methods = args.methods.split(",")
    report = dict(hparams=HPARAMS, data=str(args.data_path), target_ndcg=args.target_ndcg,
                  torch=torch.__version__, torch_threads=torch.get_num_threads(),
                  cpus=len(os.sched_getaffinity(0)), load_start=os.getloadavg()[0],
                  xla_flags=os.environ.get("XLA_FLAGS", ""),
                  posrec_bench_args=args.posrec_bench_args, workdir=str(work))
    log("equal-shape timing ...")
    peers = {}
    if "recbole" in methods:
        peers["recbole"] = RecBoleMethod(data, HPARAMS, work / "recbole")
        report["recbole_training_examples"] = peers["recbole"].num_examples
        report["recbole_num_items"] = peers["recbole"].num_items
    if "torch" in methods:
        peers["torch"] = TorchMethod(data, HPARAMS)
    if not args.no_equal_shapes:
        worker = PosrecWorker(args.data_path, args.steps, args.posrec_bench_args)
        report["equal_shapes"] = equal_shape_rounds(peers, worker, args.steps, args.rounds)
        worker.close()
        log(json.dumps(report["equal_shapes"]))
    report["to_target"] = {}
    budget_s = args.budget_s
    for name in [] if args.no_to_target else methods:
        log(f"{name}: training to NDCG@10 >= {args.target_ndcg} (budget {budget_s:.0f}s)")
        t_start = time.perf_counter()
        if name == "posrec":
            res = posrec_to_target(args.data_path, args.target_ndcg, budget_s,
                                   work / "posrec_run", args.posrec_args.split())
        else:
            peers[name].reset()
            res = to_target(peers[name], args.target_ndcg, budget_s,
                            args.recbole_eval_steps if name == "recbole" else 0, t_start)
        report["to_target"][name] = res
        if name == "posrec" and args.budget_factor:
            if res["reached"] is None:
                raise SystemExit("--budget_factor: posrec did not reach the target within "
                                 f"--budget_s={args.budget_s}")
            budget_s = args.budget_factor * res["reached"]["wall_s"]
    report["speedup_vs_posrec"] = speedups(report["to_target"])
    report["load_end"] = os.getloadavg()[0]
    text = json.dumps(report, indent=2, default=float)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
