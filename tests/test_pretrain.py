"""fastmask pretrain: every strategy trains; resume reproduces the uninterrupted run; signals,
non-finite losses, bad flags and bad checkpoints give clear outcomes; DDP on two CPU processes."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from fastmask import pretrain, strategy

def micro_args(corpus, out, cache, *extra):
    return ["--corpus", corpus, "--out", str(out), "--cache-dir", str(cache), "--hidden-size", "32",
            "--num-layers", "1", "--num-heads", "2", "--intermediate-size", "64", "--seq-len", "32",
            "--vocab-size", "200", "--batch-size", "4", "--steps", "6", "--log-interval", "1", "--eval-interval", "3",
            "--eval-batches", "2", "--checkpoint-interval", "3", "--no-progress", "--mapnet-hidden", "16", "--lr", "3e-3",
            *extra]


def metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("extra", [[], ["--masking", "bernoulli"], ["--masking", "fully-explored"],
                                   ["--masking", "mapnet"], ["--baseline", "hf"]], ids=lambda e: "-".join(e) or "random")
def test_each_strategy_trains(corpus, tmp_path, capsys, extra):
    assert pretrain.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache", *extra)) == 0
    rows = metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["loss"] > 0 and r["tokens_per_s"] > 0 and r["dropped_labels"] == 0 for r in rows)
    assert [r["eval_loss"] is not None for r in rows] == [False, False, True, False, False, True]
    assert rows[5]["eval_loss"] < rows[2]["eval_loss"]  # it learns (eval masks are fixed: no noise)
    assert os.path.getsize(tmp_path / "run" / "curves.png") > 1000
    assert os.path.exists(tmp_path / "run" / "checkpoint.pt")
    assert "done: 6 steps" in capsys.readouterr().out


def test_resume_after_sigterm_reproduces_the_uninterrupted_run(corpus, tmp_path, monkeypatch):
    args = micro_args(corpus, tmp_path / "full", tmp_path / "cache", "--masking", "mapnet", "--steps", "8")
    assert pretrain.main(args) == 0
    full = metrics(tmp_path / "full")

    calls = {"n": 0}
    original = pretrain.Pretrainer.forward

    def forward_then_sigterm(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 4:  # as if the scheduler sent SIGTERM during step 4
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *a, **k)

    split = micro_args(corpus, tmp_path / "split", tmp_path / "cache", "--masking", "mapnet", "--steps", "8",
                       "--checkpoint-interval", "100")
    monkeypatch.setattr(pretrain.Pretrainer, "forward", forward_then_sigterm)
    assert pretrain.main(split) == 130  # stopped, with a checkpoint at step 4
    monkeypatch.setattr(pretrain.Pretrainer, "forward", original)
    assert pretrain.main(split + ["--resume"]) == 0
    resumed = metrics(tmp_path / "split")
    assert [r["step"] for r in resumed] == list(range(1, 9))
    for a, b in zip(resumed, full):
        assert a["loss"] == b["loss"] and a["eval_loss"] == b["eval_loss"], (a, b)


def test_labels_beyond_the_capacity_are_counted_and_reported(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(strategy.MaskingStrategy, "capacity", lambda self, length: 1)
    assert pretrain.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache", "--masking", "bernoulli")) == 0
    rows = metrics(tmp_path / "run")
    assert all(r["dropped_labels"] > 0 for r in rows)
    assert "labelled tokens exceeded the gather capacity" in capsys.readouterr().err


def test_non_finite_loss_stops_with_the_last_good_checkpoint(corpus, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    original = strategy.slot_cross_entropy

    def nan_from_step_5(*a, **k):
        calls["n"] += torch.is_grad_enabled()  # training steps; evaluation runs without grad
        losses = original(*a, **k)
        return losses * float("nan") if calls["n"] >= 5 else losses

    monkeypatch.setattr(strategy, "slot_cross_entropy", nan_from_step_5)
    assert pretrain.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache")) == 1
    err = capsys.readouterr().err
    assert "became nan between steps 4 and 5" in err and "from step 3" in err
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 3


@pytest.mark.parametrize("extra,message", [
    (["--masking", "spans"], "--masking must be one of"),
    (["--preset", "huge"], "--preset must be one of"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--mlm-probability", "1.5"], "--mlm-probability must be in (0, 1)"),
    (["--num-heads", "3"], "divisible by --num-heads"),
    (["--baseline", "hf", "--masking", "mapnet"], "--baseline hf uses"),
    (["--batch-size", "100000"], "too few for --batch-size"),
])
def test_bad_flags_are_clear_errors(corpus, tmp_path, capsys, extra, message):
    assert pretrain.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache", *extra)) == 1
    assert message in capsys.readouterr().err


def test_bad_corpus_and_checkpoints_are_clear_errors(corpus, tmp_path, capsys):
    missing = micro_args(corpus, tmp_path / "run", tmp_path / "cache")
    missing[1] = str(tmp_path / "nowhere.txt")
    assert pretrain.main(missing) == 1
    assert "nowhere.txt" in capsys.readouterr().err
    assert pretrain.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache", "--resume")) == 1
    assert "no checkpoint" in capsys.readouterr().err
    assert pretrain.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache")) == 0
    assert pretrain.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache", "--resume",
                                    "--hidden-size", "64")) == 1
    assert "hidden_size: checkpoint 32, now 64" in capsys.readouterr().err
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert pretrain.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache", "--resume")) == 1
    assert "cannot read the checkpoint" in capsys.readouterr().err


def test_ddp_on_two_cpu_processes(corpus, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "fastmask", "pretrain",
           *micro_args(corpus, tmp_path / "run", tmp_path / "cache", "--masking", "mapnet"), "--device", "cpu"]  # gloo on CPU processes, also where GPUs exist (rank 1 would ask for cuda:1)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["tokens"] == 2 * 4 * 32  # two ranks' batches per step
    assert result.stdout.count("done: 6 steps") == 1  # rank 0 reports
