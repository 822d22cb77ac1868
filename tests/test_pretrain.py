"""fastmask pretrain: every strategy trains; resume reproduces the uninterrupted run; signals,
non-finite losses, bad flags and bad checkpoints give clear outcomes; DDP on two CPU processes."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from fastmask import strategy
from fastmask.mapnet import proposal_width
from fastmask.train import config as train_config, loop, run_folder
from fastmask.train.model import Pretrainer

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
                                   ["--masking", "mapnet"], ["--masking", "hf"]], ids=lambda e: "-".join(e) or "random")
def test_each_strategy_trains(corpus, tmp_path, capsys, extra):
    assert loop.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache", *extra)) == 0
    rows = metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["loss"] > 0 and r["tokens_per_s"] > 0 and r["dropped_labels"] == 0 for r in rows)
    assert [r["eval_loss"] is not None for r in rows] == [False, False, True, False, False, True]
    assert rows[5]["eval_loss"] < rows[2]["eval_loss"]  # it learns (eval masks are fixed: no noise)
    assert os.path.getsize(tmp_path / "run" / "curves.png") > 1000
    mapnet = extra == ["--masking", "mapnet"]  # its proposal's health is logged, for MAPNet alone
    assert all(("max_q_over_uniform" in r) == mapnet for r in rows)
    assert not mapnet or all(0 < r["weight_min"] <= r["weight_max"] and r["max_q_over_uniform"] >= 1 for r in rows)
    assert os.path.exists(tmp_path / "run" / "checkpoint.pt")
    captured = capsys.readouterr()
    out = captured.out
    assert "done: 6 steps" in out and "Writing model shards" not in captured.err  # exports stay quiet
    assert "step 3/6  loss" in out and "eval loss" in out  # no terminal: a line per log step, not a bar


def test_hf_baseline_masks_with_the_configured_replacement_split(corpus, tmp_path, monkeypatch):
    """--masking hf hands --mask-replace-prob / --random-replace-prob to transformers' collator."""
    from fastmask import baselines

    made = []
    real = baselines.hf_collator
    monkeypatch.setattr(baselines, "hf_collator", lambda *args: made.append(args[1:]) or real(*args))
    args = micro_args(corpus, tmp_path / "run", tmp_path / "cache", "--masking", "hf", "--steps", "1",
                      "--mask-replace-prob", "0.5", "--random-replace-prob", "0.25")
    assert loop.main(args) == 0
    assert made == [(0.15, 0.5, 0.25)]


def test_resume_after_sigterm_reproduces_the_uninterrupted_run(corpus, tmp_path, monkeypatch):
    args = micro_args(corpus, tmp_path / "full", tmp_path / "cache", "--masking", "mapnet", "--steps", "8")
    assert loop.main(args) == 0
    full = metrics(tmp_path / "full")

    calls = {"n": 0}
    original = Pretrainer.forward

    def forward_then_sigterm(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 4:  # as if the scheduler sent SIGTERM during step 4
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *a, **k)

    split = micro_args(corpus, tmp_path / "split", tmp_path / "cache", "--masking", "mapnet", "--steps", "8",
                       "--checkpoint-interval", "100")
    monkeypatch.setattr(Pretrainer, "forward", forward_then_sigterm)
    assert loop.main(split) == 130  # stopped, with a checkpoint at step 4
    monkeypatch.setattr(Pretrainer, "forward", original)
    assert loop.main(split + ["--resume"]) == 0
    resumed = metrics(tmp_path / "split")
    assert [r["step"] for r in resumed] == list(range(1, 9))
    for a, b in zip(resumed, full):
        assert a["loss"] == b["loss"] and a["eval_loss"] == b["eval_loss"], (a, b)


def test_labels_beyond_the_capacity_are_counted_and_reported(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(strategy.MaskingStrategy, "capacity", lambda self, length: 1)
    assert loop.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache", "--masking", "bernoulli")) == 0
    rows = metrics(tmp_path / "run")
    assert all(r["dropped_labels"] > 0 for r in rows)
    assert "labelled tokens exceeded the gather capacity" in capsys.readouterr().err


def test_non_finite_loss_stops_with_the_last_good_checkpoint(corpus, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    original = strategy.fused_slot_loss  # the training steps' loss (evaluation runs without grad, unfused)

    def nan_from_step_5(*a, **k):
        calls["n"] += 1
        loss, token_losses = original(*a, **k)
        return (loss * float("nan") if calls["n"] >= 5 else loss), token_losses

    monkeypatch.setattr(strategy, "fused_slot_loss", nan_from_step_5)
    assert loop.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache")) == 1
    err = capsys.readouterr().err
    assert "became nan between steps 4 and 5" in err and "from step 3" in err
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 3


@pytest.mark.parametrize("flag,value", [("--masking", "spans"), ("--preset", "huge"), ("--device", "tpu"),
                                        ("--mapnet-objective", "reward"), ("--mapnet-sampling", "multinomial")])
def test_values_outside_a_flags_choices_are_refused_by_argparse(capsys, flag, value):
    with pytest.raises(SystemExit) as exc:
        loop.main([flag, value])
    assert exc.value.code == 2 and f"argument {flag}: invalid choice: '{value}'" in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--seq-len", "100000"], "--seq-len must be in [8, 8192]"),
    (["--mlm-probability", "1.5"], "--mlm-probability must be in (0, 1)"),
    (["--num-heads", "3"], "divisible by --num-heads"),
    (["--batch-size", "100000"], "too few for --batch-size"),
    (["--masking", "mapnet", "--mapnet-objective", "variance", "--weighting", "sequence"], "needs --weighting token"),
    (["--masking", "mapnet", "--mapnet-hidden", "25"], "--mapnet-hidden must be an even number >= 2 (the proposal "
                                                       "net's 2 heads), got 25"),
    (["--masking", "mapnet", "--mapnet-hidden", "0"], "--mapnet-hidden must be an even number >= 2"),
])
def test_bad_flags_are_clear_errors(corpus, tmp_path, capsys, extra, message):
    assert loop.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache", *extra)) == 1
    assert message in capsys.readouterr().err


def test_bad_corpus_and_checkpoints_are_clear_errors(corpus, tmp_path, capsys):
    missing = micro_args(corpus, tmp_path / "run", tmp_path / "cache")
    missing[1] = str(tmp_path / "nowhere.txt")
    assert loop.main(missing) == 1
    assert "nowhere.txt" in capsys.readouterr().err
    assert loop.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache", "--resume")) == 1
    assert "no checkpoint" in capsys.readouterr().err
    assert loop.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache")) == 0
    assert loop.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache", "--resume",
                                    "--hidden-size", "64")) == 1
    assert "hidden_size: checkpoint 32, now 64" in capsys.readouterr().err
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert loop.main(micro_args(corpus, tmp_path / "run", tmp_path / "cache", "--resume")) == 1
    assert "cannot read the checkpoint" in capsys.readouterr().err


def test_a_run_never_overwrites_another(corpus, tmp_path, capsys, monkeypatch):
    """A non-empty --out is refused without --resume or --overwrite, before anything is touched;
    without --out every run gets a new folder."""
    run = tmp_path / "run"
    assert loop.main(micro_args(corpus, run, tmp_path / "cache", "--steps", "3")) == 0
    def files():
        return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}

    before = files()
    assert {name for name in run_folder.RUN_FILES} == {name.split("/")[0] for name in before}
    assert loop.main(micro_args(corpus, run, tmp_path / "cache", "--steps", "2")) == 1
    err = capsys.readouterr().err
    assert f"--out {run} already holds files" in err and "--resume" in err and "--overwrite" in err
    assert files() == before
    assert loop.main(micro_args(corpus, run, tmp_path / "cache", "--steps", "2", "--overwrite")) == 0
    assert [r["step"] for r in metrics(run)] == [1, 2]  # replaced, not appended to
    assert loop.main(micro_args(corpus, run, tmp_path / "cache", "--resume", "--overwrite")) == 1

    monkeypatch.chdir(tmp_path)
    args = micro_args(corpus, run, tmp_path / "cache", "--steps", "1")
    del args[2:4]  # no --out
    assert loop.main(args) == 0 and loop.main(args) == 0
    folders = sorted(os.listdir(tmp_path / "runs"))
    assert len(folders) == 2 and all(f.startswith("pretrain-") for f in folders)
    assert all(os.path.exists(tmp_path / "runs" / f / "metrics.jsonl") for f in folders)
    assert f"output folder {os.path.join('runs', folders[0])}" in capsys.readouterr().out


def test_a_failed_start_leaves_nothing_behind(corpus, tmp_path, capsys, monkeypatch):
    """A run that fails before its first checkpoint removes what it wrote, and the folders it
    created; never a folder it did not create, nor another run's files, nor a resumed run's folder."""
    def tree(root):
        return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}

    monkeypatch.chdir(tmp_path)
    no_out = micro_args(corpus, "unused", tmp_path / "cache")
    del no_out[2:4]
    no_out[1] = str(tmp_path / "nowhere.txt")
    assert loop.main(no_out) == 1 and "nowhere.txt" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # neither runs/pretrain-... nor the runs/ it made

    other = tmp_path / "runs" / "pretrain-other"
    other.mkdir(parents=True)
    (other / "metrics.jsonl").write_text("another run's\n")
    assert loop.main(no_out) == 1
    assert tree(tmp_path / "runs") == {"pretrain-other": None, "pretrain-other/metrics.jsonl": b"another run's\n"}

    # Failing after the run's records are written (too few rows for the batch): they go too.
    nested = tmp_path / "a" / "b" / "run"
    assert loop.main(micro_args(corpus, nested, tmp_path / "cache", "--batch-size", "100000")) == 1
    assert "too few for --batch-size" in capsys.readouterr().err and not (tmp_path / "a").exists()
    empty = tmp_path / "empty"  # a folder the user made: it stays, empty
    empty.mkdir()
    assert loop.main(micro_args(corpus, empty, tmp_path / "cache", "--batch-size", "100000")) == 1
    assert empty.is_dir() and not any(empty.iterdir())

    # A non-finite loss before the first checkpoint: no checkpoint is named, and nothing stays.
    original = strategy.fused_slot_loss
    monkeypatch.setattr(strategy, "fused_slot_loss",
                        lambda *a, **k: (original(*a, **k)[0] * float("nan"), original(*a, **k)[1]))
    assert loop.main(micro_args(corpus, tmp_path / "nan", tmp_path / "cache")) == 1
    err = capsys.readouterr().err
    assert "became nan between steps 0 and 1" in err and "no checkpoint" in err and not (tmp_path / "nan").exists()
    monkeypatch.undo()

    # The disk fills while the first checkpoint is written: no part of it stays either.
    def disk_full(obj, path):
        open(path, "wb").write(b"part of a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_folder.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        loop.main(micro_args(corpus, tmp_path / "full", tmp_path / "cache"))
    assert not (tmp_path / "full").exists()
    monkeypatch.undo()

    # A resumed run's folder survives the resumed run's failure, untouched.
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert loop.main(micro_args(corpus, run, tmp_path / "cache", "--steps", "3")) == 0
    before = tree(run)
    assert loop.main(micro_args(corpus, run, tmp_path / "cache", "--steps", "3", "--resume", "--batch-size",
                                "100000")) == 1
    assert tree(run) == before


def test_a_run_leaves_its_records_and_a_model_transformers_loads(corpus, tmp_path):
    run = tmp_path / "run"
    assert loop.main(micro_args(corpus, run, tmp_path / "cache", "--steps", "2", "--masking", "mapnet")) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["masking"] == "mapnet" and config["steps"] == 2 and config["hidden_size"] == 32
    versions = json.loads((run / "versions.json").read_text())
    assert versions["torch"] == torch.__version__ and versions["fastmask"]
    import transformers

    model = transformers.AutoModelForMaskedLM.from_pretrained(run / "hf-model")
    tokenizer = transformers.AutoTokenizer.from_pretrained(run / "hf-model")
    assert type(model).__name__ == "BertForMaskedLM" and tokenizer.mask_token == "[MASK]"
    state = torch.load(run / "checkpoint.pt", weights_only=False)["model"]
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, state["mlm.bert.embeddings.word_embeddings.weight"])
    fill = transformers.pipeline("fill-mask", model=model, tokenizer=tokenizer)
    assert len(fill("the quick brown [MASK] jumps")) == 5
    stored = transformers.AutoTokenizer.from_pretrained(run / "tokenizer")
    assert stored.get_vocab() == tokenizer.get_vocab()


def test_help_names_every_flag_and_print_config_resolves(capsys):
    for action in train_config._parser()._actions:
        assert action.help and len(action.help) > 10, action.option_strings
    with pytest.raises(SystemExit):
        loop.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--masking {random,bernoulli,fully-explored,mapnet,whole-word,span,hf}" in text and "(default: 0.15)" in text
    assert loop.main(["--print-config", "--preset", "small", "--masking", "fully-explored"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["hidden_size"] == 256 and config["num_segments"] == 7 and config["masking"] == "fully-explored"
    version = subprocess.run([sys.executable, "-m", "fastmask", "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("fastmask ")


def test_help_names_everything_a_run_writes(capsys):
    """pretrain --help's Output paragraph names every file and folder a run writes (RUN_FILES:
    test_a_run_never_overwrites_another checks that a run writes exactly those)."""
    with pytest.raises(SystemExit):
        loop.main(["--help"])
    paragraphs = capsys.readouterr().out.split("\n\n")
    (output,) = [p for p in paragraphs if p.startswith("Output")]
    missing = [name for name in run_folder.RUN_FILES if name not in output]
    assert not missing, output


def test_the_proposal_width_default_fits_every_model_width(capsys):
    """MAPNet's default width: even (its 2 heads), >= 2 and about a quarter of --hidden-size, for
    every width; --mapnet-hidden is checked only when MAPNet runs."""
    for width in range(1, 2049):
        proposal = proposal_width(width)
        assert proposal % 2 == 0 and proposal >= 2 and abs(proposal - width / 4) < 2, (width, proposal)
    for width, heads in ((100, 4), (30, 2), (6, 2), (768, 12)):
        for masking in ("random", "mapnet"):
            flags = ["--hidden-size", str(width), "--num-heads", str(heads), "--masking", masking]
            assert loop.main(["--print-config", *flags]) == 0, capsys.readouterr().err
            assert json.loads(capsys.readouterr().out)["mapnet_hidden"] == proposal_width(width)
    # An odd --mapnet-hidden is no error where no proposal net is built.
    assert loop.main(["--print-config", "--masking", "random", "--mapnet-hidden", "25"]) == 0


def test_hf_baseline_masks_no_special_token_of_the_tokenizer():
    from fastmask import baselines
    from fastmask.data.loader import Batch
    from fastmask.train.config import Config
    from fastmask.train.model import HFBaseline

    tokenizer = baselines.in_memory_tokenizer(50)
    rows = torch.randint(0, 50, (64, 32), dtype=torch.int32)  # every special id appears: [UNK] and [MASK] included
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    cfg = Config(masking="hf", mlm_probability=0.9, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                 vocab_size=50, seq_len=32).resolved()
    model = HFBaseline(cfg, tokenizer)
    timer = loop.MaskingTimer(model.masking, torch.device("cpu"))
    ids, labels = model.inputs(Batch(0, torch.arange(64), rows), torch.zeros((), dtype=torch.int64), timer)
    assert not (labels != -100)[torch.isin(rows, special)].any()
    assert (labels != -100).float().mean() > 0.5
    assert torch.equal(labels[labels != -100], rows.long()[labels != -100]) and timer.take() > 0


def test_ddp_on_two_cpu_processes(corpus, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fastmask", "pretrain",
           *micro_args(corpus, tmp_path / "run", tmp_path / "cache", "--masking", "mapnet", "--grad-accum", "2"),
           "--device", "cpu"]  # gloo on CPU processes, also where GPUs exist (rank 1 would ask for cuda:1)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["tokens"] == 2 * 2 * 4 * 32  # two ranks' batches, two micro-steps (one all-reduce) per step
    assert result.stdout.count("done: 6 steps") == 1  # rank 0 reports
