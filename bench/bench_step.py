"""End-to-end benchmark: one BERT training step with fastmask against the usual one, and MAPNet's
cost per step.

  dense-head    BertForMaskedLM(input_ids, labels=...) — the vocabulary head on every token
  sparse-head   the same encoder with fastmask's sparse head on the same masks (gathered tokens)
  mapnet-w/4    a MaskProposalNet at a quarter of the model's width: forward, proposal sampling,
                its objective and backward — reported as a fraction of the sparse-head step
Forward + backward, bf16 autocast on GPU (peak memory printed too), fp32 on CPU.

    python bench/bench_step.py            # sizes for the current device
    python bench/bench_step.py --quick    # CPU smoke run
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import fastmask  # noqa: E402

BASELINES = harness.baselines("dense-head", "sparse-head")
PRESETS = {"tiny": (128, 2, 2, 512), "base": (768, 12, 12, 3072)}  # width, layers, heads, ffn


def bench_step(preset, batch, length, device, profile):
    """BertForMaskedLM dense head vs the sparse head on the same masks: time and peak memory."""
    from transformers import BertConfig, BertForMaskedLM

    width, layers, num_heads, ffn = PRESETS[preset]
    config = BertConfig(vocab_size=harness.VOCAB, hidden_size=width, num_hidden_layers=layers,
                        num_attention_heads=num_heads, intermediate_size=ffn, max_position_embeddings=max(512, length))
    model = BertForMaskedLM(config).to(device)
    ids = harness.random_ids(batch, length, device)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    out = fastmask.mask_tokens(ids, maskable, harness.MASK_ID, harness.VOCAB, harness.P, exact_count=True)
    capacity = fastmask.gather_capacity(length, harness.P)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    dtype = "bf16" if device.type == "cuda" else "fp32"

    def dense():
        with autocast:
            loss = model(input_ids=out.input_ids, labels=out.labels).loss
        loss.backward()

    def sparse():
        with autocast:
            h = model.bert(input_ids=out.input_ids)[0]
            loss = fastmask.sparse_mlm_loss(h, out.labels, model.cls, capacity=capacity)
        loss.backward()

    net = fastmask.MaskProposalNet(model.bert.embeddings.word_embeddings, num_layers=2, hidden_size=width // 4,
                                   num_heads=2, max_len=length).to(device)

    def mapnet():
        with autocast:
            scores = net(ids)
        proposed = fastmask.proposal_mask(ids, scores.detach(), maskable, harness.MASK_ID, harness.VOCAB, harness.P)
        fastmask.mapnet_loss(scores, proposed.labels, proposed.weights, maskable).backward()

    rows, medians = [], {}
    for name, fn in (("dense-head", dense), ("sparse-head", sparse), ("mapnet-w/4", mapnet)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        timing = harness.time_fn(fn, [()], device, profile)
        medians[name] = timing[0]
        rows.append(harness.make_row(f"bert_step_{preset}", f"{batch}x{length}", dtype, name, timing, None, device))
        if device.type == "cuda":
            print(f"{preset} {batch}x{length} {name}: peak memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
        model.zero_grad(set_to_none=True)
        net.zero_grad(set_to_none=True)
    print(f"{preset} {batch}x{length}: sparse head {medians['dense-head'] / medians['sparse-head']:.2f}x the dense "
          f"step; MAPNet (width {width // 4}) adds {medians['mapnet-w/4'] / medians['sparse-head']:.1%} to it")
    return rows


def collect(device, profile):
    if profile.quick:
        shapes = [("tiny", 4, 64)]
    elif device.type == "cpu":
        shapes = [("tiny", 32, 128)]
    else:
        shapes = [("base", 64, 128), ("base", 16, 512)]
    for preset, batch, length in shapes:
        yield from bench_step(preset, batch, length, device, profile)


if __name__ == "__main__":
    sys.exit(harness.run("step", __doc__, collect, BASELINES))
