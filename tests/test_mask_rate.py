"""A masking rate the kernels read from memory (the ops' ``rate``), and the rate schedules built on
it: every backend masks with the rate's probability exactly as with that probability given as an
argument; a schedule changes the rate without recompiling; the schedules' values; pretrain and the
Trainer callback drive them."""

import math

import pytest
import torch

import fastmask
from fastmask import MaskingConfig, MaskingStrategy, counts
from fastmask.train import loop

from conftest import DEVICE, op_variant_params
from test_pretrain import metrics, micro_args

MASK_ID, VOCAB = 4, 1000
SPECIALS = torch.tensor([0, 1, 2, 3, 4])


def _batch(rows=6, length=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (rows, length), generator=g).to(DEVICE)
    maskable = torch.rand(rows, length, generator=g).to(DEVICE) < 0.9
    word_start = torch.rand(rows, length, generator=g).to(DEVICE) < 0.7
    scores = torch.randn(rows, length, generator=g).to(DEVICE)
    return ids, maskable, word_start, scores


def _masks(p, backend, rate=None):
    """Every op that takes a rate, at probability p (given as the argument, or in `rate`)."""
    ids, maskable, word_start, scores = _batch()
    common = dict(seed=5, epoch=2, backend=backend, rate=rate)
    out = []
    for exact in (False, True):
        out.append(fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, p, exact_count=exact, **common))
        out.append(fastmask.whole_word_mask(ids, maskable, word_start, MASK_ID, VOCAB, p, exact_count=exact, **common))
    out.append(fastmask.span_mask(ids, maskable, word_start, MASK_ID, VOCAB, p, **common))
    for sampling in ("systematic", "topk", "poisson"):
        out.append(fastmask.proposal_mask(ids, scores, maskable, MASK_ID, VOCAB, p, sampling=sampling, **common))
    return [t for result in out for t in result]


@pytest.mark.parametrize("backend", op_variant_params())
@pytest.mark.parametrize("p", [0.3, 0.4137])
def test_a_rate_tensor_masks_as_its_probability(backend, p):
    """The kernels read the rate, not the int arguments (here those of another probability, 0.5)."""
    given = _masks(p, backend)
    read = _masks(0.5, backend, rate=fastmask.mask_rate(p, DEVICE))
    assert len(given) == len(read) == 5 * 2 + 3 * 3  # (ids, labels) of 5 variants; (ids, labels, weights) of 3
    for a, b in zip(given, read):
        assert torch.equal(a, b) if not a.is_floating_point() else torch.allclose(a, b, rtol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(given[:2], _masks(0.5, backend)[:2]))  # p matters


@pytest.mark.parametrize("backend", op_variant_params())
def test_set_mask_rate_rewrites_in_place(backend):
    rate = fastmask.mask_rate(0.3, DEVICE)
    pointer = rate.data_ptr()
    fastmask.set_mask_rate(rate, 0.15)
    assert rate.data_ptr() == pointer
    assert rate.tolist() == [counts.probability_threshold("p", 0.15), 3, 20]
    for a, b in zip(_masks(0.15, backend), _masks(0.9, backend, rate=rate)):
        assert torch.equal(a, b) if not a.is_floating_point() else torch.allclose(a, b, rtol=1e-6)


def test_a_rate_tensor_of_bad_shape_or_type_is_named():
    ids, maskable, _, _ = _batch()
    for bad, message in ((torch.zeros(3), "rate must have dtype"), (torch.zeros(2, dtype=torch.int64),
                                                                     r"rate must have shape \(3,\)"),
                         (torch.zeros(1, 3, dtype=torch.int64), "rate must be 1-D")):
        with pytest.raises((TypeError, ValueError), match=message):
            fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, rate=bad)


def test_bad_values_read_from_memory_are_clamped_as_the_kernels_clamp_them():
    """What a device kernel does with a rate it cannot check without a host sync: the reference's
    clamping (den >= 1, num <= den, threshold <= 2^24). On the CPU the C++ kernel reads the values
    at launch and names a bad one."""
    ids, maskable, _, _ = _batch()
    wild = torch.tensor([2**30, 7, 0], dtype=torch.int64, device=DEVICE)  # threshold > 1, num > den = 0
    every = fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, 0.15, exact_count=True, rate=wild, backend="reference")
    assert torch.equal(every.labels != -100, maskable)  # num clamped to den = 1: p = 1
    bernoulli = fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, rate=wild, backend="reference")
    assert torch.equal(bernoulli.labels != -100, maskable)  # threshold clamped to 2^24: p = 1
    if DEVICE.type == "cpu":
        with pytest.raises(ValueError, match="select_threshold must be in"):
            fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, exact_count=True, rate=wild, backend="cpp")


@pytest.mark.parametrize("masking", ["random", "bernoulli", "whole-word", "span"])
def test_a_schedule_changes_the_rate_without_recompiling(masking):
    config = MaskingConfig(masking, mlm_probability=0.15, mlm_probability_schedule="linear",
                           mlm_probability_start=0.45)
    strategy = MaskingStrategy(config, mask_token_id=MASK_ID, vocab_size=VOCAB, special_ids=SPECIALS.tolist(),
                               word_start_table=torch.rand(VOCAB, generator=torch.Generator().manual_seed(1)) < 0.7
                               ).to(DEVICE)
    assert strategy.capacity(40) == counts.gather_capacity(40, 0.45, exact_count=masking != "bernoulli")
    ids, _, _, _ = _batch(rows=16, length=40)
    rows = torch.arange(16, device=DEVICE)
    epoch = torch.zeros((), dtype=torch.int64, device=DEVICE)
    torch._dynamo.reset()
    compiled = torch.compile(lambda ids, epoch: strategy(ids, row_ids=rows, epoch=epoch).labels, fullgraph=True,
                             backend="aot_eager")
    shares = []
    with torch._dynamo.config.patch(error_on_recompile=True):
        for p in (0.45, 0.3, 0.15):
            strategy.set_mlm_probability(p)
            labels = compiled(ids, epoch)
            assert torch.equal(labels, strategy(ids, row_ids=rows, epoch=epoch).labels)
            shares.append((labels != -100).float().mean().item())
    assert shares[0] > shares[1] > shares[2] > 0.05, shares
    with pytest.raises(ValueError, match="the schedule's highest rate"):
        strategy.set_mlm_probability(0.5)
    plain = MaskingStrategy(MaskingConfig(masking), mask_token_id=MASK_ID, vocab_size=VOCAB,
                            special_ids=SPECIALS.tolist(), word_start_table=strategy.word_start_table)
    with pytest.raises(ValueError, match="needs a strategy built with a rate schedule"):
        plain.set_mlm_probability(0.2)


def test_the_schedules():
    def at(schedule, step, total=11, start=0.3, end=0.15):
        return MaskingConfig(mlm_probability=end, mlm_probability_schedule=schedule,
                             mlm_probability_start=start).mlm_probability_at(step, total)

    assert [at("linear", s) for s in (0, 5, 10)] == [0.3, 0.225, 0.15]
    assert [at("cosine", s) for s in (0, 5, 10)] == [0.3, 0.225, 0.15]
    assert at("cosine", 2) == round(0.15 + 0.15 * 0.5 * (1 + math.cos(math.pi * 0.2)), 4) > at("linear", 2)
    assert [at("step", s) for s in (0, 4, 5, 10)] == [0.3, 0.3, 0.15, 0.15]
    assert [at("constant", s) for s in (0, 10)] == [0.15, 0.15]
    assert at("linear", 50) == 0.15  # past the end: the final rate
    rising = MaskingConfig(mlm_probability=0.3, mlm_probability_schedule="linear", mlm_probability_start=0.1)
    assert rising.max_probability == 0.3 and rising.scheduled
    assert not MaskingConfig(mlm_probability_schedule="linear").scheduled  # start = end: nothing moves
    with pytest.raises(ValueError, match="mlm_probability_schedule must be one of"):
        MaskingConfig(mlm_probability_schedule="exponential").validate()
    with pytest.raises(ValueError, match="mlm_probability_start must be a probability"):
        MaskingConfig(mlm_probability_start=1.5).validate()
    with pytest.raises(ValueError, match="does not apply"):
        MaskingConfig("fully-explored", mlm_probability_schedule="linear", mlm_probability_start=0.3).validate()


@pytest.mark.parametrize("masking", ["random", "mapnet", "hf"])
def test_pretrain_follows_the_schedule(corpus, tmp_path, masking):
    args = micro_args(corpus, tmp_path / "run", tmp_path / "cache", "--masking", masking, "--steps", "5",
                      "--log-interval", "1", "--mlm-probability-schedule", "linear", "--mlm-probability-start", "0.35")
    assert loop.main(args) == 0
    assert [r["mlm_probability"] for r in metrics(tmp_path / "run")] == [0.35, 0.3, 0.25, 0.2, 0.15]


def test_the_trainer_callback_drives_the_schedule(tmp_path):
    """FastMaskCallback writes each optimizer step's rate before the step and logs it."""
    from types import SimpleNamespace

    from fastmask.hf.patch import FastMaskCallback

    config = MaskingConfig(mlm_probability=0.15, mlm_probability_schedule="linear", mlm_probability_start=0.3)
    strategy = MaskingStrategy(config, mask_token_id=MASK_ID, vocab_size=VOCAB, special_ids=SPECIALS.tolist())
    model = SimpleNamespace(fastmask=SimpleNamespace(masking=strategy))
    callback = FastMaskCallback()
    state = SimpleNamespace(global_step=0, max_steps=3, log_history=[])
    seen = []
    for step in range(3):
        state.global_step = step
        callback.on_step_begin(None, state, None, model=model)
        seen.append(strategy.mask_rate.tolist())
    assert seen == [fastmask.mask_rate(p).tolist() for p in (0.3, 0.225, 0.15)]


@pytest.mark.parametrize("backend", op_variant_params())
@pytest.mark.parametrize("name", ["mask_tokens", "whole_word_mask", "span_mask", "proposal_mask"])
def test_opcheck_with_a_rate(name, backend):
    from fastmask import library

    *args, no_rate = library.OPS[name].example(DEVICE)  # the example's rate: None
    assert no_rate is None
    torch.library.opcheck(library.op(name, backend), (*args, fastmask.mask_rate(0.4, DEVICE)))
