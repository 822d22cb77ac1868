"""fastmask.hf in the trainers people run: the stock Trainer for every supported class, and the examples."""

import importlib
import importlib.util
import math
import os
import sys

import pytest
import torch
import transformers as T

from fastmask.hf import SUPPORTED_MODELS, DataCollatorForLanguageModeling, FastMaskCallback, apply_fastmask

from hf_models import VOCAB, tiny_model, tokenizer  # noqa: F401 (a fixture)

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def features(tokenizer, count=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(6, 30, (count,), generator=g).tolist()
    return [dict(tokenizer(" ".join(f"w{i}" for i in torch.randint(5, 120, (n,), generator=g).tolist())))
            for n in lengths]


@pytest.mark.parametrize("name", SUPPORTED_MODELS)
def test_stock_trainer_trains_evaluates_saves_and_reloads_unpatched(name, tokenizer, tmp_path):
    model = apply_fastmask(tiny_model(name, tokenizer), tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = T.TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=3, per_device_train_batch_size=8,
                               gradient_accumulation_steps=2, logging_steps=1, save_strategy="no", report_to=[],
                               use_cpu=True, disable_tqdm=True, learning_rate=1e-3)
    data = features(tokenizer)
    trainer = T.Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:8],
                        data_collator=DataCollatorForLanguageModeling(tokenizer, mask_in_model=True),
                        callbacks=[FastMaskCallback()])
    trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 3
    # Each micro-step's mean over its masked tokens, divided by the accumulation steps: the sum is a
    # mean near ln(V) at initialisation (twice that if the Trainer had not divided).
    assert abs(losses[0] - math.log(VOCAB)) < 1.0, losses
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    first = trainer.evaluate()["eval_loss"]
    assert math.isfinite(first) and trainer.evaluate()["eval_loss"] == first  # evaluation masks are fixed
    trainer.save_model(str(tmp_path / "saved"))
    reloaded = T.AutoModelForMaskedLM.from_pretrained(str(tmp_path / "saved"))
    assert type(reloaded) is type(model) and not hasattr(reloaded, "fastmask")
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


@pytest.fixture
def examples(monkeypatch, tmp_path, corpus):
    """Imports an example by name and runs it from tmp_path, tiny, on the tests' small corpus."""
    monkeypatch.syspath_prepend(EXAMPLES)
    monkeypatch.chdir(tmp_path)

    def run(name, *flags):
        module = importlib.import_module(name)
        tiny = ["--corpus", corpus, "--texts", "120", "--max-length", "32", "--hidden-size", "32",
                "--vocab-size", "300", "--steps", "3", "--batch-size", "8"]
        return module.main(tiny + list(flags))

    return run


@pytest.mark.parametrize("name,flags", [
    ("trainer_collator", ()),
    ("trainer_apply_fastmask", ("--masking", "mapnet", "--grad-accum", "2", "--workers", "2")),
    ("plain_loop", ("--masking", "fully-explored")),
    ("accelerate_loop", ("--masking", "bernoulli")),
    pytest.param("lightning_module", (), marks=pytest.mark.skipif(
        importlib.util.find_spec("lightning") is None, reason="PyTorch Lightning is not installed")),
])
def test_examples_run(examples, name, flags, tmp_path):
    metrics = examples(name, *flags)
    assert all(math.isfinite(v) for k, v in metrics.items() if k.endswith("loss")), metrics
    (out,) = (tmp_path / "runs").iterdir()  # a new folder per run, named after the example
    assert out.name.startswith(name) and (out / "config.json").exists()


def test_examples_refuse_to_overwrite_a_run(examples, tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "model.safetensors").write_text("a previous run")
    with pytest.raises(SystemExit):
        examples("plain_loop", "--out", str(tmp_path / "old"))
    assert (tmp_path / "old" / "model.safetensors").read_text() == "a previous run"


class _Record(T.TrainerCallback):
    """Records every training micro-step's loss and mask positions (a host sync: tests only); stops at `stop`."""

    def __init__(self, model, stop=None):
        self.stop, self.steps = stop, []
        model.register_forward_hook(lambda module, args, out: self.steps.append(
            (out.loss.detach().clone(), out.positions.clone())) if module.training else None)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.stop:
            control.should_training_stop = True  # an interrupted run: its checkpoint at `stop` is the last


def _resumable_run(tokenizer, out, masking, stop=None, resume=False, callback=True):
    """8 optimizer steps (gradient accumulation 2, 44 rows of 4: the epoch's last step has one micro-step),
    a checkpoint every 4; dropout off. Returns (model, recorder, trainer)."""
    model = apply_fastmask(tiny_model("BertForMaskedLM", tokenizer), tokenizer, masking=masking)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    recorder = _Record(model, stop)
    args = T.TrainingArguments(output_dir=str(out), max_steps=8, per_device_train_batch_size=4,
                               gradient_accumulation_steps=2, logging_steps=1, save_strategy="steps", save_steps=4,
                               report_to=[], use_cpu=True, disable_tqdm=True, learning_rate=1e-3, seed=0)
    trainer = T.Trainer(model=model, args=args, train_dataset=features(tokenizer, count=44),
                        data_collator=DataCollatorForLanguageModeling(tokenizer, mask_in_model=True),
                        callbacks=[recorder] + ([FastMaskCallback()] if callback else []))
    trainer.train(resume_from_checkpoint=resume or None)
    return model, recorder, trainer


@pytest.mark.parametrize("masking", ["random", "mapnet"])
def test_trainer_resume_from_checkpoint_continues_the_uninterrupted_run(masking, tokenizer, tmp_path):
    whole, straight, uninterrupted = _resumable_run(tokenizer, tmp_path / "whole", masking)
    _resumable_run(tokenizer, tmp_path / "resumed", masking, stop=4)
    resumed, continued, trainer = _resumable_run(tokenizer, tmp_path / "resumed", masking, resume=True)
    assert len(straight.steps) == 15 and len(continued.steps) == 7  # micro-steps 9-15 after the resume at step 4
    for (loss, positions), (want_loss, want_positions) in zip(continued.steps, straight.steps[8:]):
        assert torch.equal(positions, want_positions)  # the masks continue: none repeats steps 1-4's
        assert torch.equal(loss, want_loss)
    logged = [(r["step"], r["loss"]) for r in trainer.state.log_history if "loss" in r]
    assert len(logged) == 8 and logged == [(r["step"], r["loss"]) for r in uninterrupted.state.log_history if "loss" in r]
    for key, value in whole.state_dict().items():  # the proposal net's too: its weights and Adam's state came back
        assert torch.equal(resumed.state_dict()[key], value), key


def test_trainer_resume_without_the_callback_warns_once_what_it_cannot_restore(tokenizer, tmp_path, caplog):
    _resumable_run(tokenizer, tmp_path, "mapnet", stop=4)
    with pytest.warns(UserWarning, match="FastMaskCallback") as said:
        _resumable_run(tokenizer, tmp_path, "mapnet", resume=True, callback=False)
    assert len([w for w in said if "fastmask" in str(w.message)]) == 1
    assert "proposal net" in str(said[0].message)
    assert "fastmask." not in caplog.text  # transformers' missing-keys warning no longer names fastmask's state


# What each example saves to resume from, and the model state dict in it.
RESUMABLE = {
    "plain_loop": ("checkpoint.pt", lambda out: torch.load(out / "checkpoint.pt", weights_only=True)["model"]),
    "accelerate_loop": ("state", lambda out: torch.load(out / "state" / "pytorch_model.bin", weights_only=True)),
}


def test_load_best_model_at_end_brings_back_the_best_checkpoints_proposal_net(tokenizer, tmp_path):
    from safetensors.torch import load_file

    model = apply_fastmask(tiny_model("BertForMaskedLM", tokenizer), tokenizer, masking="mapnet")
    data = features(tokenizer, count=48)
    # greater_is_better: the worst eval loss (an early checkpoint) is "best", so the best is not the last.
    args = T.TrainingArguments(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=8,
                               eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
                               load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=True,
                               report_to=[], use_cpu=True, disable_tqdm=True, learning_rate=1e-2)
    trainer = T.Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:8],
                        data_collator=DataCollatorForLanguageModeling(tokenizer, mask_in_model=True),
                        callbacks=[FastMaskCallback()])
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best is not None and not best.endswith("checkpoint-6")
    got = model.fastmask.masking.proposal.state_dict()
    for name, folder in (("best", best), ("last", str(tmp_path / "checkpoint-6"))):
        saved = load_file(os.path.join(folder, "fastmask_proposal.safetensors"))
        same = all(torch.equal(got[key], value) for key, value in saved.items())
        assert same == (name == "best"), name


@pytest.mark.parametrize("name", sorted(RESUMABLE))
def test_examples_resume_exactly(examples, name, tmp_path):
    """6 steps vs 3 + a resume to 6, with mapnet; 40 texts (5 batches an epoch, the last one short), so the
    accelerate loop's micro-steps cross two epoch ends (each ends a step early) and its resume lands mid-epoch."""
    saved, state_dict = RESUMABLE[name]
    flags = ("--masking", "mapnet", "--texts", "40")
    whole = examples(name, *flags, "--steps", "6", "--out", str(tmp_path / "whole"))
    first = examples(name, *flags, "--steps", "3", "--out", str(tmp_path / "first"))
    resumed = examples(name, *flags, "--steps", "6", "--out", str(tmp_path / "resumed"),
                       "--resume", str(tmp_path / "first" / saved))
    done = len(first["train_losses"])
    assert first["train_losses"] == whole["train_losses"][:done]
    assert resumed["train_losses"] == whole["train_losses"][done:] and len(resumed["train_losses"]) >= 3
    assert resumed.get("eval_loss") == whole.get("eval_loss")
    got = state_dict(tmp_path / "resumed")
    for key, value in state_dict(tmp_path / "whole").items():
        assert torch.equal(got[key], value), key  # the proposal net's and the mask counter (fastmask._extra_state)
    assert "fastmask._extra_state" in got
