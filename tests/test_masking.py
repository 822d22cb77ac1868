"""The masking ops: every backend against the reference (bit-exact), statistics, properties,
bad input, opcheck and torch.compile. Shapes stay small: Triton runs interpreted on CPU."""

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastmask
from fastmask import library, reference
from fastmask.counts import count_fraction, probability_threshold
from conftest import (COUNT_DEN, COUNT_NUM, DEVICE, T_MASK, T_RANDOM, T_SELECT, backend_params, op_variant_params,
                      RecordOps, philox_key)

MASK_ID, VOCAB = 4, 30522
CLS, SEP, PAD = 2, 3, 0


def make_batch(batch, length, generator, int32=False, density=0.85, vocab=VOCAB):
    """Random ids with [CLS] ... [SEP] [PAD]... rows of random lengths, and their maskable mask."""
    ids = torch.randint(5, vocab, (batch, length), generator=generator)
    attn = torch.ones(batch, length, dtype=torch.int64)
    for b in range(batch):
        n = int(torch.randint(0, length + 1, (1,), generator=generator))
        attn[b, n:] = 0
        ids[b, n:] = PAD
        if n >= 2:
            ids[b, 0], ids[b, n - 1] = CLS, SEP
    drop = torch.rand(batch, length, generator=generator) > density  # extra non-maskable tokens
    ids = ids.to(DEVICE, torch.int32 if int32 else torch.int64)
    maskable = reference.maskable_mask(ids, attn.to(DEVICE), torch.tensor([CLS, SEP, PAD], device=DEVICE))
    return ids, attn.to(DEVICE), maskable & ~drop.to(DEVICE)


def assert_same(got, want):
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert torch.equal(g, w), f"{(g != w).sum().item()} of {g.numel()} elements differ"


# --------------------------------------------------------------------------------------------
# Random numbers: the reference's Philox is Random123's Philox4x32-10.


@pytest.mark.parametrize(
    "counter,key,expected",
    [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
)
def test_philox_known_answers(counter, key, expected):
    words = reference.philox4x32(*(torch.tensor([c]) for c in counter), *key)
    assert tuple(int(w) for w in words) == expected


# --------------------------------------------------------------------------------------------
# Bit-exact equality with the reference.


def random_case(generator, max_batch=5, max_length=70):
    g = generator
    randint = lambda lo, hi: int(torch.randint(lo, hi, (1,), generator=g))  # noqa: E731
    t_mask = randint(0, reference.PROB_ONE + 1)
    # Count fractions: decimals with exact halves (p n + 1/2 an integer) and arbitrary ones.
    count_den = [20, 4, 2, 10, randint(1, 2**31)][randint(0, 5)]
    return dict(
        batch=randint(0, max_batch + 1),
        length=randint(0, max_length + 1),
        int32=bool(randint(0, 2)),
        density=float(torch.rand(1, generator=g)),
        seed=randint(-(2**63), 2**63 - 1) if randint(0, 4) else 0,  # tensors: any int64 (two's complement key)
        epoch=randint(0, 2**32),
        t_select=randint(0, reference.PROB_ONE + 1),
        count_num=randint(0, count_den + 1),
        count_den=count_den,
        t_mask=t_mask,
        t_random=randint(0, reference.PROB_ONE - t_mask + 1),
        vocab=[1, 7, VOCAB, 2**31 - 1][randint(0, 4)],
        num_segments=[1, 2, 3, 7, 10][randint(0, 5)],
    )


def case_inputs(case, g):
    ids, _, maskable = make_batch(case["batch"], case["length"], g, case["int32"], case["density"])
    ids = ids % case["vocab"]
    rows = torch.randint(-(2**63), 2**63 - 1, (case["batch"],), generator=g).to(DEVICE)
    return ids, maskable, rows


@pytest.mark.parametrize("backend", backend_params())
def test_mask_tokens_matches_reference(backend):
    g = torch.Generator().manual_seed(1)
    for _ in range(24 if backend == "triton" else 120):
        c = random_case(g)
        ids, maskable, rows = case_inputs(c, g)
        mask_id = min(MASK_ID, c["vocab"] - 1)
        for exact in (False, True):
            args = (ids, maskable, rows, *philox_key(c["seed"], c["epoch"]), c["t_select"], c["count_num"], c["count_den"],
                    c["t_mask"], c["t_random"], mask_id, c["vocab"], exact)
            assert_same(library.op("mask_tokens", backend)(*args), reference.mask_tokens(*args))


@pytest.mark.parametrize("backend", backend_params())
def test_fully_explored_matches_reference(backend):
    g = torch.Generator().manual_seed(2)
    for _ in range(16 if backend == "triton" else 100):
        c = random_case(g)
        ids, maskable, rows = case_inputs(c, g)
        mask_id = min(MASK_ID, c["vocab"] - 1)
        for contiguous in (False, True):
            args = (ids, maskable, rows, *philox_key(c["seed"], c["epoch"]), c["num_segments"], contiguous, c["t_mask"],
                    c["t_random"], mask_id, c["vocab"])
            assert_same(library.op("fully_explored_mask", backend)(*args), reference.fully_explored_mask(*args))


@pytest.mark.parametrize("backend", backend_params())
def test_long_rows_match_reference(backend):
    """Rows long enough for the kernels' large-row paths (multi-item sorts, bucketed CPU sort)."""
    g = torch.Generator().manual_seed(12)
    for length in (300, 700):
        ids, _, maskable = make_batch(3, length, g, density=0.95)
        maskable[:, : length // 2] |= True  # at least half the row is maskable
        rows = torch.arange(3, device=DEVICE) * 7919
        for contiguous in (False, True):
            args = (ids, maskable, rows, *philox_key(5, 1), 7, contiguous, T_MASK, T_RANDOM, MASK_ID, VOCAB)
            assert_same(library.op("fully_explored_mask", backend)(*args), reference.fully_explored_mask(*args))
        args = (ids, maskable, rows, *philox_key(5, 1), T_SELECT, COUNT_NUM, COUNT_DEN, T_MASK, T_RANDOM, MASK_ID, VOCAB,
                True)
        assert_same(library.op("mask_tokens", backend)(*args), reference.mask_tokens(*args))


def edge_rows(length, generator):
    """Ids and a maskable mask over rows of `length`: random, all maskable, nothing maskable, only
    the last token."""
    ids, _, maskable = make_batch(4, length, generator, density=0.7)
    maskable[1:] = False
    maskable[1] = True
    maskable[3, -1] = True
    return ids, maskable


def test_triton_ranks_long_rows_in_chunks():
    """Whole-row Triton ranking kernels stop at 2048 lanes (16 warps: at most 4 lanes a thread,
    no spills for sm_90: docs/resource-budgets.md); longer rows are walked in chunks."""
    common = pytest.importorskip("fastmask.triton.common")
    launches = [tuple(common.ranked_launch(n)) for n in (1, 512, 513, 1024, 1025, 2048)]
    assert launches == [(False, 16, 4), (False, 512, 4), (False, 1024, 8), (False, 1024, 8), (False, 2048, 16),
                        (False, 2048, 16)]
    assert tuple(common.ranked_launch(2049)) == tuple(common.ranked_launch(16384)) == (True, 1024, common.LONG_ROW_WARPS)


@pytest.mark.parametrize("backend", [p for p in backend_params() if p.id == "triton"])
def test_triton_long_rows_match_reference(backend, triton_long_rows):
    """Rows beyond the (lowered) long-row length take Triton's long-row kernels: exact counts by
    radix select, partitions by scanning the row; with k = n, k = 1, nothing maskable, no rows."""
    g = torch.Generator().manual_seed(21)
    for length, (count_num, count_den), num_segments in ((33, (COUNT_NUM, COUNT_DEN), 7), (70, (1, 1), 3)):
        ids, maskable = edge_rows(length, g)
        rows = torch.randint(-(2**63), 2**63 - 1, (4,), generator=g).to(DEVICE)
        for batch in (4, 0):
            head = (ids[:batch], maskable[:batch], rows[:batch], *philox_key(-7, 2**32 - 1))
            args = (*head, T_SELECT, count_num, count_den, T_MASK, T_RANDOM, MASK_ID, VOCAB, True)
            assert_same(library.op("mask_tokens", backend)(*args), reference.mask_tokens(*args))
            for contiguous in (False, True):
                args = (*head, num_segments, contiguous, T_MASK, T_RANDOM, MASK_ID, VOCAB)
                assert_same(library.op("fully_explored_mask", backend)(*args), reference.fully_explored_mask(*args))


@pytest.mark.parametrize("backend", backend_params())
def test_maskable_mask_matches_reference(backend):
    g = torch.Generator().manual_seed(3)
    for trial in range(12):
        ids, attn, _ = make_batch(trial % 4, 3 + 5 * trial, g, int32=trial % 2 == 1)
        # 2**32 + 11 would wrap to 11 in int32: ids compare in int64, so it matches nothing
        special = torch.tensor([CLS, SEP, PAD, 7, 2**32 + 11][: trial % 6], dtype=torch.int64)
        for mask in (None, attn, attn.bool(), attn.int(), attn.to(torch.uint8)):
            got = fastmask.maskable_mask(ids, mask, special, backend=backend)
            want = reference.maskable_mask(ids, None if mask is None else mask.bool(), special.to(DEVICE))
            assert torch.equal(got, want)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(0, 4), length=st.integers(0, 40), seed=st.integers(0, 2**63 - 1),
    epoch=st.integers(0, 2**32 - 1), p_milli=st.integers(0, 1000), mask_p=st.floats(0, 1), exact=st.booleans(),
    k=st.integers(1, 12), partition=st.sampled_from(["random", "contiguous"]), data=st.data(),
)
def test_public_api_properties(batch, length, seed, epoch, p_milli, mask_p, exact, k, partition, data):
    """Property test over random shapes and arguments, through the public API and backend='auto'."""
    p = p_milli / 1000  # written with three decimals: p is exactly p_milli / 1000
    random_p = data.draw(st.floats(0, 1 - mask_p))
    g = torch.Generator().manual_seed(seed % 2**31)
    ids, _, maskable = make_batch(batch, length, g)
    out = fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, p, mask_p, random_p, exact, seed=seed, epoch=epoch)
    want = reference.mask_tokens(
        ids, maskable, torch.arange(batch, device=DEVICE), *philox_key(seed, epoch), probability_threshold("p", p),
        *count_fraction(p),
        probability_threshold("p", mask_p), probability_threshold("p", random_p), MASK_ID, VOCAB, exact,
    )
    assert_same(out, want)
    labelled = out.labels != -100
    assert not (labelled & ~maskable).any()
    assert torch.equal(out.labels[labelled], ids[labelled])
    assert torch.equal(out.input_ids[~labelled], ids[~labelled])
    if exact:
        # k = min(n, max(1, floor(p n + 1/2))) at the p as written, exact halves rounding up
        expected = [min(n, max(1, math.floor(Fraction(p_milli, 1000) * n + Fraction(1, 2)))) if n else 0
                    for n in maskable.sum(1).tolist()]
        assert labelled.sum(1).tolist() == expected

    views = fastmask.fully_explored_mask(ids, maskable, MASK_ID, VOCAB, k, partition, seed=seed, epoch=epoch)
    assert views.input_ids.shape == (k, batch, length)
    times_masked = (views.labels != -100).sum(0)
    assert torch.equal(times_masked, maskable.long())  # every maskable token exactly once, nothing else


# --------------------------------------------------------------------------------------------
# Exact counts: k = min(n, max(1, floor(p n + 1/2))) at the p as written, on every backend.

COUNT_PROBABILITIES = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def written_count(n: int, p: float) -> int:
    """The promised count, in exact decimal arithmetic on p as written."""
    return min(n, max(1, math.floor(Fraction(repr(p)) * n + Fraction(1, 2)))) if n else 0


def test_masked_count_keeps_the_promised_formula():
    # The exact halves that a 2**-24 quantisation of p sends down (2516582 / 2**24 < 0.15).
    assert [fastmask.masked_count(n, 0.15) for n in (10, 30, 50, 70, 90)] == [2, 5, 8, 11, 14]
    assert fastmask.masked_count(10, 0.25) == 3
    for p in (*COUNT_PROBABILITIES, 0.0, 1.0, 0.123456789, 0.999, 0.1 + 0.2):
        want = [written_count(n, p) for n in range(9000)]
        assert [fastmask.masked_count(n, p) for n in range(9000)] == want, p
        assert fastmask.masked_count(torch.arange(9000, dtype=torch.int32), p).tolist() == want, p
    # Rows as long as the ops accept (2**31): no int64 overflow at the largest fraction.
    n = torch.tensor([2**31 - 1, 2**31])
    assert fastmask.masked_count(n, 0.999999999).tolist() == [written_count(int(v), 0.999999999) for v in n]
    assert fastmask.masked_count(3, 1 / 3) == 1 and fastmask.masked_count(2**31 - 2, 1 / 3) == (2**31 - 2) // 3
    for bad, match in ((dict(n=-1, p=0.1), "n must"), (dict(n=3, p=1.5), "p must"), (dict(n=torch.ones(2), p=0.1), "n must")):
        with pytest.raises((ValueError, TypeError), match=match):
            fastmask.masked_count(**bad)


def test_gather_capacity():
    for length in (0, 1, 10, 128, 512, 8192):
        for p in COUNT_PROBABILITIES:
            assert fastmask.gather_capacity(length, p) == max(1, written_count(length, p))
            bernoulli = fastmask.gather_capacity(length, p, exact_count=False)
            assert written_count(length, p) <= bernoulli <= max(1, length)
        assert fastmask.gather_capacity(length, num_segments=7) == max(1, math.ceil(length / 7))
    # Bernoulli: the stated bound, P(Binomial(512, 0.15) > capacity) <= 1e-9, and not far beyond it.
    capacity = fastmask.gather_capacity(512, 0.15, exact_count=False)
    tail = lambda c: sum(math.comb(512, j) * 0.15**j * 0.85 ** (512 - j) for j in range(c + 1, 513))  # noqa: E731
    assert tail(capacity) <= 1e-9 < tail(capacity - 1)
    with pytest.raises(ValueError, match="length"):
        fastmask.gather_capacity(-1)


def _count_rows(n_max: int):
    """Ids and a maskable mask whose row n has exactly n maskable tokens, scattered over the row."""
    length = max(n_max, 1)
    perm = torch.randperm(length, generator=torch.Generator().manual_seed(13))
    maskable = (torch.arange(length)[None, :] < torch.arange(n_max + 1)[:, None])[:, perm]
    return torch.full(maskable.shape, 9, device=DEVICE), maskable.to(DEVICE)


@pytest.mark.parametrize("backend", [*backend_params(), "reference"])
def test_exact_counts_on_every_row_length(backend):
    """Every kernel masks written_count(n, p) of n maskable tokens, for every n up to the longest
    row the CUDA kernels rank on a GPU (a shorter range on CPU; the Triton interpreter, slow, takes
    the smallest exact halves: n = 10, 30 at p = 0.15 and n = 10, 18, 26 at p = 0.25)."""
    interpreted = backend == "triton" and DEVICE.type == "cpu"
    n_max = 8192 if DEVICE.type == "cuda" else 30 if interpreted else 1100
    ids, maskable = _count_rows(n_max)
    for p in (0.15, 0.25) if interpreted else COUNT_PROBABILITIES:
        want = torch.tensor([written_count(n, p) for n in range(n_max + 1)], device=DEVICE)
        out = fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, p, exact_count=True, backend=backend)
        assert torch.equal((out.labels != -100).sum(1), want), p
        sampled = fastmask.proposal_mask(ids, torch.zeros(ids.shape, device=DEVICE), maskable, MASK_ID, VOCAB, p,
                                         backend=backend)
        assert torch.equal((sampled.labels != -100).sum(1), want), p


# --------------------------------------------------------------------------------------------
# Statistics (the backends are bit-exact, so these run on the default backend).


def test_bernoulli_rate_and_replacement_split():
    g = torch.Generator().manual_seed(4)
    ids, _, maskable = make_batch(128, 256, g, density=1.0)
    p = 0.15
    out = fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, p, seed=11)
    n_maskable = maskable.sum().item()
    chosen = out.labels != -100
    n = chosen.sum().item()
    assert abs(n - p * n_maskable) < 4 * math.sqrt(n_maskable * p * (1 - p))
    masked = (out.input_ids == MASK_ID) & chosen
    kept = (out.input_ids == ids) & chosen
    random = chosen & ~masked & ~kept
    for share, expected in ((masked, 0.8), (random, 0.1 * (1 - 1 / VOCAB)), (kept, 0.1)):
        assert abs(share.sum().item() - expected * n) < 4 * math.sqrt(n * expected * (1 - expected))
    assert out.input_ids[random].min() >= 0 and out.input_ids[random].max() < VOCAB


def test_random_tokens_uniform_over_small_vocab():
    vocab = 5
    ids = torch.zeros(64, 512, dtype=torch.int64, device=DEVICE)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    out = fastmask.mask_tokens(ids, maskable, 0, vocab, 1.0, 0.0, 1.0, seed=5)
    counts = torch.bincount(out.input_ids.flatten(), minlength=vocab).double()
    expected = ids.numel() / vocab
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 18.5  # 99.9th percentile of chi-square with 4 degrees of freedom


def test_exact_count_positions_uniform():
    """Exact-count masking picks positions uniformly: per-position frequencies over many rows."""
    rows, length, p = 4000, 20, 0.25
    ids = torch.full((rows, length), 9, device=DEVICE)
    out = fastmask.mask_tokens(ids, torch.ones_like(ids, dtype=torch.bool), MASK_ID, VOCAB, p, exact_count=True)
    per_row = (out.labels != -100).sum(1)
    assert (per_row == 5).all()
    freq = (out.labels != -100).sum(0).double()
    expected = rows * 5 / length
    chi2 = ((freq - expected) ** 2 / expected).sum().item()
    assert chi2 < 43.8  # 99.9th percentile, 19 degrees of freedom


@pytest.mark.parametrize("partition", ["random", "contiguous"])
def test_fully_explored_partition(partition):
    g = torch.Generator().manual_seed(6)
    ids, _, maskable = make_batch(16, 64, g)
    for k in (1, 4, 7, 10):
        views = fastmask.fully_explored_mask(ids, maskable, MASK_ID, VOCAB, k, partition, seed=3)
        labelled = views.labels != -100
        sizes = labelled.sum(2)  # (K, B)
        assert (sizes.max(0).values - sizes.min(0).values <= 1).all()
        assert torch.equal(labelled.sum(0), maskable.long())
        for v in range(k):
            assert torch.equal(views.labels[v][labelled[v]], ids[labelled[v]])
            assert torch.equal(views.input_ids[v][~labelled[v]], ids[~labelled[v]])
        if partition == "contiguous":
            segment = torch.argmax(labelled.long(), dim=0)  # the view that masks each token
            for b in range(16):
                order = segment[b][maskable[b]]
                assert (order[1:] >= order[:-1]).all()


def test_fully_explored_random_partition_is_uniform():
    """Each position lands in each segment equally often across rows."""
    k, rows, length = 4, 3000, 12
    ids = torch.full((rows, length), 9, device=DEVICE)
    views = fastmask.fully_explored_mask(ids, torch.ones_like(ids, dtype=torch.bool), MASK_ID, VOCAB, k)
    hits = (views.labels != -100).sum(1).double()  # (K, L)
    expected = rows / k
    chi2 = ((hits - expected) ** 2 / expected).sum().item()
    assert chi2 < 62.5  # 99.9th percentile, 33 degrees of freedom


# --------------------------------------------------------------------------------------------
# Properties every user relies on.


@pytest.mark.parametrize("exact", [False, True])
def test_specials_and_padding_untouched(exact):
    g = torch.Generator().manual_seed(7)
    ids, attn, _ = make_batch(32, 48, g)
    maskable = fastmask.maskable_mask(ids, attn, [CLS, SEP, PAD])
    out = fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, 0.9, exact_count=exact)
    special = torch.isin(ids, torch.tensor([CLS, SEP, PAD], device=DEVICE)) | (attn == 0)
    assert torch.equal(out.input_ids[special], ids[special])
    assert (out.labels[special] == -100).all()
    assert (out.labels[~special] != -100).any()


def test_rows_are_independent_of_the_batch():
    g = torch.Generator().manual_seed(8)
    ids, _, maskable = make_batch(12, 40, g)
    rows = torch.arange(100, 112, device=DEVICE)
    full = fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, exact_count=True, row_ids=rows, seed=1)
    views = fastmask.fully_explored_mask(ids, maskable, MASK_ID, VOCAB, 5, row_ids=rows, seed=1)
    perm = torch.randperm(12, generator=g)[:7].to(DEVICE)
    part = fastmask.mask_tokens(ids[perm], maskable[perm], MASK_ID, VOCAB, exact_count=True, row_ids=rows[perm], seed=1)
    part_views = fastmask.fully_explored_mask(ids[perm], maskable[perm], MASK_ID, VOCAB, 5, row_ids=rows[perm], seed=1)
    assert torch.equal(part.input_ids, full.input_ids[perm]) and torch.equal(part.labels, full.labels[perm])
    assert torch.equal(part_views.labels, views.labels[:, perm])


def test_seed_and_epoch_change_the_masks():
    ids = torch.full((8, 128), 9, device=DEVICE)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    base = fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, seed=1, epoch=0).labels
    assert not torch.equal(base, fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, seed=2, epoch=0).labels)
    assert not torch.equal(base, fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, seed=1, epoch=1).labels)
    assert torch.equal(base, fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, seed=1, epoch=0).labels)


@pytest.mark.parametrize("backend", ["auto", "reference", *backend_params()])
@pytest.mark.parametrize("shape", [(0, 16), (3, 0), (0, 0), (2, 5)])
def test_degenerate_shapes(backend, shape):
    ids = torch.full(shape, 9, dtype=torch.int64, device=DEVICE)
    nothing = torch.zeros(shape, dtype=torch.bool, device=DEVICE)
    out = fastmask.mask_tokens(ids, nothing, MASK_ID, VOCAB, exact_count=True, backend=backend)
    assert torch.equal(out.input_ids, ids) and (out.labels == -100).all()
    views = fastmask.fully_explored_mask(ids, nothing, MASK_ID, VOCAB, 3, backend=backend)
    assert views.labels.shape == (3, *shape) and (views.labels == -100).all()
    assert fastmask.maskable_mask(ids, special_ids=[9], backend=backend).shape == shape


# --------------------------------------------------------------------------------------------
# Bad input: a clear exception naming the argument.

IDS = torch.full((2, 6), 9, device=DEVICE)
OK = torch.ones(2, 6, dtype=torch.bool, device=DEVICE)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: fastmask.mask_tokens(IDS.float(), OK, MASK_ID, VOCAB), "input_ids"),
        (lambda: fastmask.mask_tokens(IDS[0], OK[0], MASK_ID, VOCAB), "input_ids"),
        (lambda: fastmask.mask_tokens(IDS, OK.long(), MASK_ID, VOCAB), "maskable"),
        (lambda: fastmask.mask_tokens(IDS, OK[:, :3], MASK_ID, VOCAB), "maskable"),
        (lambda: fastmask.mask_tokens(IDS, OK.to("meta"), MASK_ID, VOCAB), "maskable"),
        (lambda: fastmask.mask_tokens(IDS, OK, MASK_ID, VOCAB, mlm_probability=1.5), "mlm_probability"),
        (lambda: fastmask.mask_tokens(IDS, OK, MASK_ID, VOCAB, mlm_probability=float("nan")), "mlm_probability"),
        (lambda: fastmask.mask_tokens(IDS, OK, MASK_ID, VOCAB, mask_replace_prob=-0.1), "mask_replace_prob"),
        (lambda: fastmask.mask_tokens(IDS, OK, MASK_ID, VOCAB, 0.15, 0.8, 0.3), "random_replace_prob"),
        (lambda: fastmask.mask_tokens(IDS, OK, VOCAB, VOCAB), "mask_token_id"),
        (lambda: fastmask.mask_tokens(IDS, OK, -1, VOCAB), "mask_token_id"),
        (lambda: fastmask.mask_tokens(IDS, OK, 0, 0), "vocab_size"),
        (lambda: fastmask.mask_tokens(IDS, OK, MASK_ID, VOCAB, seed=-1), "seed"),
        (lambda: fastmask.mask_tokens(IDS, OK, MASK_ID, VOCAB, epoch=2**32), "epoch"),
        (lambda: fastmask.mask_tokens(IDS, OK, MASK_ID, VOCAB, row_ids=torch.arange(3)), "row_ids"),
        (lambda: fastmask.mask_tokens(IDS, OK, MASK_ID, VOCAB, row_ids=torch.arange(2).int()), "row_ids"),
        (lambda: fastmask.mask_tokens(IDS, OK, MASK_ID, VOCAB, backend="tpu"), "backend"),
        (lambda: fastmask.fully_explored_mask(IDS, OK, MASK_ID, VOCAB, num_segments=0), "num_segments"),
        (lambda: fastmask.fully_explored_mask(IDS, OK, MASK_ID, VOCAB, partition="spans"), "partition"),
        (lambda: fastmask.maskable_mask(IDS, attention_mask=OK[:1]), "attention_mask"),
        (lambda: fastmask.maskable_mask(IDS, attention_mask=OK.float()), "attention_mask"),
        (lambda: fastmask.maskable_mask(IDS, special_ids=[1.5]), "special_ids"),
        (lambda: fastmask.maskable_mask(IDS, special_ids=torch.tensor([[1]]).float()), "special_ids"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_unavailable_backend_says_why():
    other, other_device = ("cpp", "cpu") if DEVICE.type == "cuda" else ("cuda", "cuda")
    with pytest.raises(RuntimeError, match=f"backend='{other}' is unavailable: .*{other_device} tensors"):
        fastmask.mask_tokens(IDS, OK, MASK_ID, VOCAB, backend=other)


# --------------------------------------------------------------------------------------------
# Real ops: opcheck and torch.compile.


def _layouts(t):
    """t as given, permuted (column-major strides) and offset (a slice of a larger tensor)."""
    wider = torch.cat([t[:1], t])
    return t, t.t().contiguous().t(), wider[1:]


def _opcheck_args(int32, layout, key_device):
    g = torch.Generator().manual_seed(9)
    ids, attn, maskable = (_layouts(t)[layout] for t in make_batch(3, 17, g, int32=int32))
    rows = torch.arange(3, device=DEVICE)
    seed, epoch = philox_key(5, 1, key_device)
    return {
        "maskable_mask": (ids, attn, torch.tensor([CLS, SEP], device=DEVICE)),
        "mask_tokens": (ids, maskable, rows, seed, epoch, T_SELECT, COUNT_NUM, COUNT_DEN, T_MASK, T_RANDOM, MASK_ID,
                        VOCAB, True),
        "fully_explored_mask": (ids, maskable, rows, seed, epoch, 3, False, T_MASK, T_RANDOM, MASK_ID, VOCAB),
    }


@pytest.mark.parametrize("backend", op_variant_params())
@pytest.mark.parametrize("name", ["maskable_mask", "mask_tokens", "fully_explored_mask"])
def test_opcheck(name, backend):
    """Contiguous, permuted and offset inputs (the outputs are contiguous: the fakes must say so),
    seed and epoch on the inputs' device and on the CPU."""
    op = library.op(name, backend)
    for int32, layout, key_device in ((False, 0, DEVICE), (True, 0, "cpu"), (False, 1, DEVICE), (True, 2, DEVICE)):
        torch.library.opcheck(op, _opcheck_args(int32, layout, key_device)[name])


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_torch_compile_fullgraph(backend):
    g = torch.Generator().manual_seed(10)
    ids, attn, _ = make_batch(4, 24, g)

    def step(ids, attn):
        maskable = fastmask.maskable_mask(ids, attn, [CLS, SEP, PAD], backend=backend)
        out = fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, exact_count=True, seed=3, backend=backend)
        views = fastmask.fully_explored_mask(ids, maskable, MASK_ID, VOCAB, 3, seed=3, backend=backend)
        return out.input_ids, out.labels, views.labels

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(ids, attn), step(ids, attn)):
        assert torch.equal(got, want)


# --------------------------------------------------------------------------------------------
# Graph-safe seed and epoch: 0-dim tensors read by the kernels, the same masks as ints.


def _all_masks(ids, maskable, seed, epoch, backend):
    """Every masking variant's outputs under one (seed, epoch)."""
    outs = []
    for exact in (False, True):
        outs += fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, exact_count=exact, seed=seed, epoch=epoch,
                                     backend=backend)
    for partition in ("random", "contiguous"):
        outs += fastmask.fully_explored_mask(ids, maskable, MASK_ID, VOCAB, 3, partition, seed=seed, epoch=epoch,
                                             backend=backend)
    return outs


@pytest.mark.parametrize("backend", [*backend_params(), "reference"])
def test_philox_key_tensors_give_the_masks_of_ints(backend):
    ids, _, maskable = make_batch(3, 40, torch.Generator().manual_seed(14))
    for seed, epoch in ((0, 0), (2**63 - 1, 2**32 - 1), (123456789012, 7)):
        want = _all_masks(ids, maskable, seed, epoch, backend)
        for device in {DEVICE, torch.device("cpu")}:
            got = _all_masks(ids, maskable, *philox_key(seed, epoch, device), backend)
            for g, w in zip(got, want):
                assert torch.equal(g, w)


def test_seed_tensor_is_the_key_bits():
    """A negative seed tensor keys Philox with its two's-complement bits: as the int 2**64 + seed
    would, whose high word the ints' range cannot reach; the reference and kernels agree on it."""
    ids, _, maskable = make_batch(2, 30, torch.Generator().manual_seed(15))
    seed, epoch = philox_key(-2, 3)
    got = fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, seed=seed, epoch=epoch)
    assert not torch.equal(got.labels, fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, seed=2, epoch=3).labels)
    want = reference.mask_tokens(ids, maskable, torch.arange(2, device=DEVICE), seed, epoch, T_SELECT, COUNT_NUM,
                                 COUNT_DEN, T_MASK, T_RANDOM, MASK_ID, VOCAB, False)
    assert_same(got, want)


@pytest.mark.parametrize("backend", [*backend_params(), "reference"])
def test_in_place_advance_changes_the_next_masks(backend):
    ids, _, maskable = make_batch(3, 40, torch.Generator().manual_seed(16))
    seed, epoch = philox_key(9, 0)
    first = _all_masks(ids, maskable, seed, epoch, backend)
    epoch.add_(1)
    second = _all_masks(ids, maskable, seed, epoch, backend)
    # Every variant's draw changes (contiguous views keep their positions, not their replacements).
    assert all(not torch.equal(a, b) for a, b in zip(first[::2], second[::2]))  # the corrupted ids
    for g, w in zip(second, _all_masks(ids, maskable, 9, 1, backend)):
        assert torch.equal(g, w)


@pytest.mark.parametrize("backend", [*backend_params(), "reference"])
def test_compiled_step_compiles_once_across_epochs(backend):
    """One graph for every epoch: the epoch tensor is an input, not a guarded constant. (A
    probability no other test uses: its exact fraction is memoised, which must not recompile.)"""
    ids, attn, _ = make_batch(3, 24, torch.Generator().manual_seed(17))
    specials = torch.tensor([CLS, SEP, PAD], device=DEVICE)
    p = {"cpp": 0.1371, "cuda": 0.1372, "triton": 0.1373, "reference": 0.1374}[backend]

    def step(ids, attn, epoch):
        maskable = fastmask.maskable_mask(ids, attn, specials, backend=backend)
        out = fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, p, exact_count=True, seed=3, epoch=epoch,
                                   backend=backend)
        views = fastmask.fully_explored_mask(ids, maskable, MASK_ID, VOCAB, 3, seed=3, epoch=epoch, backend=backend)
        return out.labels, views.labels

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    epoch = torch.zeros((), dtype=torch.int64, device=DEVICE)
    seen = []
    with torch._dynamo.config.patch(error_on_recompile=True):
        for e in range(3):
            epoch.fill_(e)
            got = compiled(ids, attn, epoch)
            for g, w in zip(got, step(ids, attn, e)):
                assert torch.equal(g, w)
            seen.append(got[0])
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])


@pytest.mark.parametrize("backend", [p for p in backend_params() if p.id == "triton"])
def test_triton_passes_cpu_philox_key_by_value(backend, monkeypatch):
    """Seed and epoch on the CPU with inputs on a GPU reach the Triton kernel by value, read at
    launch. Forced here on CPU inputs by telling philox_key_args that the kernel runs elsewhere."""
    from fastmask.triton import common, masking

    seed, epoch = philox_key(2**40 + 9, 4, "cpu")
    by_value = common.philox_key_args(seed, epoch, torch.device("meta"))
    assert (by_value["seed_ptr"], by_value["seed"], by_value["SEED_IN_MEMORY"]) == (None, 2**40 + 9, False)
    assert (by_value["epoch_ptr"], by_value["epoch"], by_value["EPOCH_IN_MEMORY"]) == (None, 4, False)
    ids, _, maskable = make_batch(3, 40, torch.Generator().manual_seed(19))
    in_memory = _all_masks(ids, maskable, seed, epoch, backend)
    monkeypatch.setattr(masking, "philox_key_args", lambda seed, epoch, device: by_value)
    for g, w in zip(_all_masks(ids, maskable, seed, epoch, backend), in_memory):
        assert torch.equal(g, w)


def test_special_ids_list_is_copied_once():
    ids, attn, _ = make_batch(2, 10, torch.Generator().manual_seed(18))
    first = fastmask.maskable_mask(ids, attn, [CLS, SEP, PAD])
    with RecordOps() as recorder:
        again = fastmask.maskable_mask(ids, attn, [CLS, SEP, PAD])
    assert torch.equal(first, again)
    made = {"aten.lift_fresh", "aten._to_copy", "aten.copy_"}  # a new tensor from the list, or a copy
    assert not recorder.ops & made, recorder.ops & made


# --------------------------------------------------------------------------------------------
# GPU only.

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_no_host_sync_on_gpu():
    g = torch.Generator().manual_seed(11)
    ids, attn, _ = make_batch(64, 128, g)
    rows = torch.arange(64, device=DEVICE)
    specials = torch.tensor([CLS, SEP, PAD], device=DEVICE)  # a host-to-device copy: made up front
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for backend in ("auto", "cuda", "triton"):
            maskable = fastmask.maskable_mask(ids, attn, specials, backend=backend)
            fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, row_ids=rows, backend=backend)
            fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, exact_count=True, row_ids=rows, backend=backend)
            fastmask.fully_explored_mask(ids, maskable, MASK_ID, VOCAB, 7, row_ids=rows, backend=backend)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@needs_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_graph_replays_fresh_masks(backend):
    """A captured step reads seed and epoch from device memory: advancing the epoch in place between
    replays gives the masks an eager call with that epoch gives (an int epoch would be baked in)."""
    ids, attn, _ = make_batch(8, 64, torch.Generator().manual_seed(20))
    specials = torch.tensor([CLS, SEP, PAD], device=DEVICE)
    seed, epoch = philox_key(7, 0)

    def step():
        maskable = fastmask.maskable_mask(ids, attn, specials, backend=backend)
        out = fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, exact_count=True, seed=seed, epoch=epoch,
                                   backend=backend)
        views = fastmask.fully_explored_mask(ids, maskable, MASK_ID, VOCAB, 3, seed=seed, epoch=epoch, backend=backend)
        return out.labels, views.labels

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()  # warm-up: compiles the Triton kernels outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    replays = []
    for e in range(3):
        epoch.fill_(e)
        graph.replay()
        for got, want in zip(captured, step()):
            assert torch.equal(got, want)
        replays.append(captured[0].clone())
    assert not torch.equal(replays[0], replays[1]) and not torch.equal(replays[1], replays[2])


@needs_cuda
def test_long_rows_beyond_the_cuda_ranking_limit():
    ids = torch.full((2, 9000), 9, device=DEVICE)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    with pytest.raises(RuntimeError, match="input_ids rows have length 9000"):
        fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, exact_count=True, backend="cuda")
    out = fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, exact_count=True)  # auto: not the CUDA kernel
    assert ((out.labels != -100).sum(1) == 1350).all()


def test_strategy_masks_per_row_draws_independent_masks_of_each_row():
    """K random masks per row (the compute-fair twin of fully explored's K views): view-major rows,
    exact counts in every view, view 0 is the single mask, the views differ."""
    ids = torch.randint(5, VOCAB, (3, 40), generator=torch.Generator().manual_seed(3)).to(DEVICE)
    rows = torch.arange(3, device=DEVICE) + 100
    single = fastmask.MaskingStrategy("random", mask_token_id=MASK_ID, vocab_size=VOCAB)(ids, row_ids=rows, epoch=2)
    strategy = fastmask.MaskingStrategy("random", mask_token_id=MASK_ID, vocab_size=VOCAB, masks_per_row=4)
    step = strategy(ids, row_ids=rows, epoch=2)
    assert step.views == 4 and step.labels.shape == (12, 40) and step.repeat(ids).shape == (12, 40)
    chosen = (step.labels != -100).view(4, 3, 40)
    assert (chosen.sum(2) == fastmask.masked_count(40, 0.15)).all()
    assert torch.equal(step.labels[:3], single.labels)
    assert all(not torch.equal(chosen[0], chosen[v]) for v in range(1, 4))
    with pytest.raises(ValueError, match="masks_per_row"):
        fastmask.MaskingStrategy("fully-explored", mask_token_id=MASK_ID, vocab_size=VOCAB, masks_per_row=2)
    with pytest.raises(ValueError, match="masks_per_row"):
        fastmask.MaskingStrategy("random", mask_token_id=MASK_ID, vocab_size=VOCAB, masks_per_row=0)
