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

OPS = ()  # end to end: the ops it runs are timed alone by the other families
BASELINES = harness.baselines("hf-trainer-step")
PRESETS = {"small": (128, 2, 2, 512), "base": (768, 12, 12, 3072)}  # width, layers, heads, ffn


def _features(tokenizer, batch: int, lengths: tuple[int, int]) -> list[dict]:
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


def bench_hf_step(preset: str, batch: int, lengths: tuple[int, int], device, min_run_time):
    from transformers import BertConfig, BertForMaskedLM, DataCollatorWithPadding

    width, layers, heads, ffn = PRESETS[preset]
    tokenizer = baselines.in_memory_tokenizer(harness.VOCAB)
    torch.manual_seed(0)
    plain = BertForMaskedLM(BertConfig(vocab_size=harness.VOCAB, hidden_size=width, num_hidden_layers=layers,
                                       num_attention_heads=heads, intermediate_size=ffn,
                                       max_position_embeddings=max(512, lengths[1]))).to(device).train()
    patched = apply_fastmask(copy.deepcopy(plain), tokenizer).train()
    features = _features(tokenizer, batch, lengths)
    masking, padding = baselines.hf_collator(tokenizer, harness.P), DataCollatorWithPadding(tokenizer)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step(model, collator):
        def run():
            inputs = collator(features).to(device, non_blocking=True)
            with autocast:
                loss = model(**inputs).loss
            loss.backward()
        return run

    contenders = {"hf-trainer-step": step(plain, masking), "collator+sparse": step(patched, masking),
                  "apply_fastmask": step(patched, padding)}
    tokens = sum(len(f["input_ids"]) for f in features)
    shape, dtype = f"{batch}x{lengths[0]}-{lengths[1]}", "bf16" if device.type == "cuda" else "fp32"
    rows, medians = [], {}
    for name, run in contenders.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        timing = harness.time_fn(run, [()], device, min_run_time)
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


def collect(device, quick, min_run_time):
    if quick:
        return bench_hf_step("small", 4, (16, 32), device, min_run_time)
    if device.type == "cpu":
        return bench_hf_step("small", 32, (64, 128), device, min_run_time)
    return bench_hf_step("base", 64, (64, 512), device, min_run_time)


if __name__ == "__main__":
    sys.exit(harness.run("hf-step", __doc__, collect, BASELINES))
