"""A Hugging Face MLM training step with ``fastmask.hf.apply_fastmask`` against the step people
run today, collation included (what a Trainer step does before the optimizer).

  hf-trainer-step   transformers' DataCollatorForLanguageModeling on the features (CPU), the copy
                    to the device, BertForMaskedLM's forward and backward (dense vocabulary head)
  collator+sparse   the same collator's labels, the patched model: the sparse head alone
  apply_fastmask    a padding-only collator, then the patched model masks on the device and runs
                    the sparse head: the whole fastmask path
Rows are ragged (lengths uniform in a range), BERT's 30522-token vocabulary. The script also prints
tokens/s and the activations saved for backward (MiB; and the peak allocated memory on GPU).

    python bench/bench_hf_step.py            # sizes for the current device
    python bench/bench_hf_step.py --quick    # CPU smoke run
"""

from __future__ import annotations

import copy
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

from fastmask import baselines  # noqa: E402
from fastmask.data import SPECIAL_TOKENS  # noqa: E402
from fastmask.hf import apply_fastmask  # noqa: E402

BASELINES = harness.baselines("hf-trainer-step")
PRESETS = {"small": (128, 2, 2, 512), "base": (768, 12, 12, 3072)}  # width, layers, heads, ffn


def features(tokenizer, batch: int, lengths: tuple[int, int]) -> list[dict]:
    """`batch` tokenized rows, [CLS] random words [SEP], lengths uniform in the range (a fixed seed)."""
    g = torch.Generator().manual_seed(0)
    sizes = torch.randint(lengths[0], lengths[1] + 1, (batch,), generator=g).tolist()
    words = len(SPECIAL_TOKENS)
    return [dict(input_ids=[tokenizer.cls_token_id, *torch.randint(words, harness.VOCAB, (n - 2,), generator=g).tolist(),
                            tokenizer.sep_token_id], attention_mask=[1] * n) for n in sizes]


def _saved_mib(step) -> float:
    """MiB of the tensors autograd saves for backward during one step (the activation memory)."""
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(saved) / 2**20


def bert(preset: str, max_length: int, device):
    """A BertForMaskedLM of the preset over BERT's vocabulary, in training mode (seed 0)."""
    from transformers import BertConfig, BertForMaskedLM

    width, layers, heads, ffn = PRESETS[preset]
    torch.manual_seed(0)
    return BertForMaskedLM(BertConfig(vocab_size=harness.VOCAB, hidden_size=width, num_hidden_layers=layers,
                                      num_attention_heads=heads, intermediate_size=ffn,
                                      max_position_embeddings=max(512, max_length))).to(device).train()


def collators(tokenizer) -> tuple:
    """(transformers' masking collator, the padding-only collator apply_fastmask takes)."""
    from transformers import DataCollatorWithPadding

    return baselines.hf_collator(tokenizer, harness.P), DataCollatorWithPadding(tokenizer)


def trainer_step(model, collator, rows: list[dict], device, optimizer=None):
    """One step as a Trainer runs it: collate the features, copy to the device, forward (bf16
    autocast on GPU) and backward; with an optimizer, gradient clipping and its step too."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def run():
        inputs = collator(rows).to(device, non_blocking=True)
        with autocast:
            loss = model(**inputs).loss
        loss.backward()
        if optimizer is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return run


def bench_hf_step(preset: str, batch: int, lengths: tuple[int, int], device, profile):
    tokenizer = baselines.in_memory_tokenizer(harness.VOCAB)
    plain = bert(preset, lengths[1], device)
    patched = apply_fastmask(copy.deepcopy(plain), tokenizer).train()
    rows_in = features(tokenizer, batch, lengths)
    masking, padding = collators(tokenizer)
    contenders = {"hf-trainer-step": trainer_step(plain, masking, rows_in, device),
                  "collator+sparse": trainer_step(patched, masking, rows_in, device),
                  "apply_fastmask": trainer_step(patched, padding, rows_in, device)}
    tokens = sum(len(f["input_ids"]) for f in rows_in)
    shape, dtype = f"{batch}x{lengths[0]}-{lengths[1]}", "bf16" if device.type == "cuda" else "fp32"
    rows, medians = [], {}
    for name, run in contenders.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        timing = harness.time_fn(run, [()], device, profile)
        medians[name] = timing[0]
        rows.append(harness.make_row(f"hf_step_{preset}", shape, dtype, name, timing, None, device))
        peak = f", peak {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB" if device.type == "cuda" else ""
        print(f"{preset} {shape} {name:16s} {tokens / timing[0] * 1e3:9.0f} tokens/s, "
              f"saved for backward {_saved_mib(run):7.1f} MiB{peak}")
        plain.zero_grad(set_to_none=True)
        patched.zero_grad(set_to_none=True)
    print(f"{preset} {shape}: apply_fastmask step {medians['hf-trainer-step'] / medians['apply_fastmask']:.2f}x "
          f"the transformers step; the sparse head alone {medians['hf-trainer-step'] / medians['collator+sparse']:.2f}x")
    return rows


def collect(device, profile):
    if profile.quick:
        return bench_hf_step("small", 4, (16, 32), device, profile)
    if device.type == "cpu":
        return bench_hf_step("small", 32, (64, 128), device, profile)
    return bench_hf_step("base", 64, (64, 512), device, profile)


if __name__ == "__main__":
    sys.exit(harness.run("hf-step", __doc__, collect, BASELINES))
