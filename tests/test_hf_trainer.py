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
