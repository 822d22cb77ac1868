"""Whole-word and span masking: every backend against the reference (bit-exact), the word rules,
statistics (all-or-nothing, budgets, rates, span lengths), opcheck, compile and no host sync.
Shapes stay small: Triton runs interpreted on CPU."""

import pytest
import torch

import fastmask
import fastmask.data
from fastmask import counts, library, reference
from conftest import (COUNT_DEN, COUNT_NUM, DEVICE, T_MASK, T_RANDOM, T_SELECT, backend_params, op_variant_params,
                      RecordOps, philox_key)
from test_masking import CLS, MASK_ID, PAD, SEP, VOCAB, assert_same, make_batch, random_case

GEOMETRIC = counts.span_length_thresholds(counts.span_length_distribution("geometric"))
NGRAM = counts.span_length_thresholds(counts.span_length_distribution("ngram"))


def word_inputs(case, g):
    """(ids, maskable, word_start, row ids) of a random case: words of about 1 / rate tokens."""
    ids, _, maskable = make_batch(case["batch"], case["length"], g, case["int32"], case["density"])
    rate = float(torch.rand(1, generator=g))
    word_start = (torch.rand(ids.shape, generator=g) < rate).to(DEVICE)
    rows = torch.randint(-(2**63), 2**63 - 1, (case["batch"],), generator=g).to(DEVICE)
    return ids % case["vocab"], maskable, word_start, rows


def whole_word_args(case, ids, maskable, word_start, rows, exact):
    return (ids, maskable, word_start, rows, *philox_key(case["seed"], case["epoch"]), case["t_select"],
            case["count_num"], case["count_den"], case["t_mask"], case["t_random"], min(MASK_ID, case["vocab"] - 1),
            case["vocab"], exact)


def span_args(case, ids, maskable, word_start, rows, thresholds, per_span):
    return (ids, maskable, word_start, rows, *philox_key(case["seed"], case["epoch"]), case["count_num"],
            case["count_den"], list(thresholds), per_span, case["t_mask"], case["t_random"],
            min(MASK_ID, case["vocab"] - 1), case["vocab"])


# --------------------------------------------------------------------------------------------
# Bit-exact equality with the reference.


@pytest.mark.parametrize("backend", backend_params())
def test_whole_word_mask_matches_reference(backend):
    g = torch.Generator().manual_seed(31)
    for _ in range(16 if backend == "triton" else 100):
        case = random_case(g)
        inputs = word_inputs(case, g)
        for exact in (False, True):
            args = whole_word_args(case, *inputs, exact)
            assert_same(library.op("whole_word_mask", backend)(*args), reference.whole_word_mask(*args))


@pytest.mark.parametrize("backend", backend_params())
def test_span_mask_matches_reference(backend):
    g = torch.Generator().manual_seed(32)
    for _ in range(16 if backend == "triton" else 100):
        case = random_case(g)
        inputs = word_inputs(case, g)
        for thresholds, per_span in ((GEOMETRIC, True), (NGRAM, False), ((), True), ([0, 0, 2**24], False)):
            args = span_args(case, *inputs, thresholds, per_span)
            assert_same(library.op("span_mask", backend)(*args), reference.span_mask(*args))


def explored_word_args(case, ids, maskable, word_start, rows, num_segments, contiguous):
    return (ids, maskable, rows, *philox_key(case["seed"], case["epoch"]), num_segments, contiguous, case["t_mask"],
            case["t_random"], min(MASK_ID, case["vocab"] - 1), case["vocab"], word_start)


@pytest.mark.parametrize("backend", backend_params())
def test_fully_explored_words_match_reference(backend):
    g = torch.Generator().manual_seed(34)
    for _ in range(12 if backend == "triton" else 100):
        case = random_case(g)
        inputs = word_inputs(case, g)
        num_segments = int(torch.randint(1, 9, (1,), generator=g))
        for contiguous in (False, True):
            args = explored_word_args(case, *inputs, num_segments, contiguous)
            assert_same(library.op("fully_explored_mask", backend)(*args), reference.fully_explored_mask(*args))


@pytest.mark.parametrize("backend", [p for p in backend_params() if p.id == "triton"])
def test_triton_fully_explored_words_long_rows_match_reference(backend, triton_long_rows):
    """Rows beyond the (lowered) long-row length take Triton's long-row partition kernels over words."""
    g = torch.Generator().manual_seed(35)
    for length, num_segments in ((33, 7), (70, 3)):
        ids, _, maskable = make_batch(3, length, g, density=0.9)
        word_start = (torch.rand(ids.shape, generator=g) < 0.6).to(DEVICE)
        rows = torch.randint(-(2**63), 2**63 - 1, (3,), generator=g).to(DEVICE)
        for contiguous in (False, True):
            args = (ids, maskable, rows, *philox_key(-7, 3), num_segments, contiguous, T_MASK, T_RANDOM, MASK_ID,
                    VOCAB, word_start)
            assert_same(library.op("fully_explored_mask", "triton")(*args), reference.fully_explored_mask(*args))


@pytest.mark.parametrize("backend", backend_params())
def test_long_rows_match_reference(backend):
    """Rows long enough for the kernels' large-row paths."""
    g = torch.Generator().manual_seed(33)
    for length in (300, 700, 2100):
        ids, _, maskable = make_batch(2, length, g, density=0.95)
        word_start = (torch.rand(ids.shape, generator=g) < 0.75).to(DEVICE)
        rows = torch.arange(2, device=DEVICE) * 7919
        key = philox_key(5, 1)
        for exact in (False, True):
            args = (ids, maskable, word_start, rows, *key, T_SELECT, COUNT_NUM, COUNT_DEN, T_MASK, T_RANDOM, MASK_ID,
                    VOCAB, exact)
            assert_same(library.op("whole_word_mask", backend)(*args), reference.whole_word_mask(*args))
        args = (ids, maskable, word_start, rows, *key, COUNT_NUM, COUNT_DEN, GEOMETRIC, True, T_MASK, T_RANDOM, MASK_ID,
                VOCAB)
        assert_same(library.op("span_mask", backend)(*args), reference.span_mask(*args))
        for contiguous in (False, True):
            args = (ids, maskable, rows, *key, 5, contiguous, T_MASK, T_RANDOM, MASK_ID, VOCAB, word_start)
            assert_same(library.op("fully_explored_mask", backend)(*args), reference.fully_explored_mask(*args))


@pytest.mark.parametrize("backend", ["auto", "reference", *backend_params()])
@pytest.mark.parametrize("shape", [(0, 16), (3, 0), (0, 0), (2, 5)])
def test_degenerate_shapes(backend, shape):
    ids = torch.full(shape, 7, device=DEVICE)
    for maskable, word_start in ((torch.ones(shape, dtype=torch.bool, device=DEVICE),) * 2,
                                 (torch.zeros(shape, dtype=torch.bool, device=DEVICE),) * 2,
                                 (torch.ones(shape, dtype=torch.bool, device=DEVICE),
                                  torch.zeros(shape, dtype=torch.bool, device=DEVICE))):  # no flagged start
        for exact in (False, True):
            got = fastmask.whole_word_mask(ids, maskable, word_start, MASK_ID, VOCAB, exact_count=exact,
                                           backend=backend)
            assert got.input_ids.shape == shape and got.labels.shape == shape
            if not maskable.any():
                assert (got.labels == -100).all() and torch.equal(got.input_ids, ids)
        got = fastmask.span_mask(ids, maskable, word_start, MASK_ID, VOCAB, backend=backend)
        assert got.labels.shape == shape
        for partition in ("random", "contiguous"):
            got = fastmask.fully_explored_mask(ids, maskable, MASK_ID, VOCAB, 3, partition, backend=backend,
                                               word_start=word_start)
            assert got.labels.shape == (3, *shape)
            if not maskable.any():
                assert (got.labels == -100).all()


# --------------------------------------------------------------------------------------------
# The word rules and the statistics (the reference: the backends equal it bit for bit).


def test_words_start_at_flags_and_after_unmaskable_tokens():
    maskable = torch.tensor([[0, 1, 1, 1, 0, 1, 1, 1, 0]], dtype=torch.bool)
    word_start = torch.tensor([[1, 0, 0, 1, 1, 0, 0, 1, 0]], dtype=torch.bool)
    word, words, tokens_before = reference.word_index(maskable, word_start)
    # [CLS] w0 w0 w1 [SEP-like] w2 w2 w3 pad: an unflagged token after an unmaskable one starts a word
    assert word.tolist() == [[-1, 0, 0, 1, -1, 2, 2, 3, -1]]
    assert words.tolist() == [4]
    assert tokens_before[0, :5].tolist() == [0, 2, 3, 5, 6]


def _words_of(labels, word):
    """Per row, {word: list of whether each of its tokens is labelled}."""
    out = []
    for row_labels, row_word in zip(labels.tolist(), word.tolist()):
        groups = {}
        for label, w in zip(row_labels, row_word):
            if w >= 0:
                groups.setdefault(w, []).append(label != -100)
        out.append(groups)
    return out


@pytest.mark.parametrize("exact", [False, True])
def test_whole_words_are_masked_whole_and_specials_never(exact):
    g = torch.Generator().manual_seed(34)
    ids, _, maskable = make_batch(64, 48, g)
    word_start = (torch.rand(ids.shape, generator=g) < 0.6).to(DEVICE)
    out = fastmask.whole_word_mask(ids, maskable, word_start, MASK_ID, VOCAB, exact_count=exact, seed=3)
    assert ((out.labels != -100) <= maskable).all() and torch.equal(out.input_ids[~maskable], ids[~maskable])
    word, _, _ = reference.word_index(maskable.cpu(), word_start.cpu())
    for groups in _words_of(out.labels.cpu(), word):
        assert all(all(flags) or not any(flags) for flags in groups.values())


def test_exact_budgets_hold_every_row():
    """At most k = masked_count(n, p) tokens, at least k minus the longest word's length plus one."""
    g = torch.Generator().manual_seed(35)
    ids, _, maskable = make_batch(400, 64, g, density=0.95)
    word_start = (torch.rand(ids.shape, generator=g) < 0.7).to(DEVICE)
    word, _, _ = reference.word_index(maskable.cpu(), word_start.cpu())
    n = maskable.sum(1)
    k = fastmask.masked_count(n, 0.15)
    longest = torch.tensor([max([list(r).count(w) for w in set(r) - {-1}] or [0]) for r in word.tolist()])
    for out in (fastmask.whole_word_mask(ids, maskable, word_start, MASK_ID, VOCAB, exact_count=True, seed=1),
                fastmask.span_mask(ids, maskable, word_start, MASK_ID, VOCAB, seed=1)):
        got = (out.labels != -100).sum(1).cpu()
        assert (got <= k.cpu()).all()
        assert ((got >= k.cpu() - longest + 1) | (got >= k.cpu())).all()
        assert (got.sum() / k.sum()) > 0.92  # the crossing word costs little on average (93-94% of k here)
    assert max(got.max().item(), 1) <= fastmask.gather_capacity(64, 0.15)


def test_bernoulli_words_are_chosen_at_the_rate():
    g = torch.Generator().manual_seed(36)
    ids, _, maskable = make_batch(300, 64, g, density=1.0)
    word_start = (torch.rand(ids.shape, generator=g) < 0.5).to(DEVICE)
    out = fastmask.whole_word_mask(ids, maskable, word_start, MASK_ID, VOCAB, mlm_probability=0.2, seed=2)
    word, words, _ = reference.word_index(maskable.cpu(), word_start.cpu())
    chosen = sum(sum(all(f) for f in groups.values()) for groups in _words_of(out.labels.cpu(), word))
    total = int(words.sum())
    assert abs(chosen / total - 0.2) < 4 * (0.2 * 0.8 / total) ** 0.5


def test_span_lengths_follow_the_distribution():
    """Tiles (before the budget) have exactly the drawn lengths; the spans taken whole are what the
    budget's random order keeps: a small bias toward short spans, measured here (total variation)."""
    for lengths in ("geometric", "ngram"):
        target = counts.span_length_distribution(lengths)
        thresholds = counts.span_length_thresholds(target)
        g = torch.Generator().manual_seed(37)
        ids, _, maskable = make_batch(2000, 128, g, density=1.0)
        maskable = torch.ones_like(maskable)
        word_start = torch.ones_like(maskable)
        draws = reference.token_randoms(torch.tensor(1), torch.tensor(0), torch.arange(2000), 128)
        word, tile, taken, tile_lengths = reference.span_tiles(draws, maskable, word_start, COUNT_NUM, COUNT_DEN,
                                                               thresholds)
        drawn = torch.bincount(tile_lengths.flatten(), minlength=len(target) + 1)[1:].double()
        assert (drawn / drawn.sum() - torch.tensor(target)).abs().sum() / 2 < 0.01
        # Whole spans taken: tiles all of whose words are taken and not cut at the row's end.
        sizes = []
        for row_tile, row_taken in zip(tile.tolist(), taken.tolist()):
            per = {}
            for t, flag in zip(row_tile, row_taken):
                per.setdefault(t, []).append(flag)
            sizes += [len(f) for t, f in per.items() if all(f) and t != max(per)]
        taken_hist = torch.bincount(torch.tensor(sizes), minlength=len(target) + 1)[1:].double()
        tv = (taken_hist / taken_hist.sum() - torch.tensor(target)).abs().sum().item() / 2
        assert tv < 0.1, (lengths, tv)


def test_per_span_replacement_decides_once_per_span():
    g = torch.Generator().manual_seed(38)
    ids, _, maskable = make_batch(200, 64, g, density=1.0)
    word_start = torch.ones_like(maskable)
    out = fastmask.span_mask(ids, maskable, word_start, MASK_ID, VOCAB, mask_replace_prob=0.5,
                             random_replace_prob=0.0, seed=4)
    draws = reference.token_randoms(torch.tensor(4), torch.tensor(0), torch.arange(200, device=DEVICE), 64)
    _, tile, taken, _ = reference.span_tiles(draws, maskable, word_start, COUNT_NUM, COUNT_DEN, GEOMETRIC)
    is_mask = out.input_ids == MASK_ID
    mixed = 0
    for b in range(200):
        for t in set(tile[b][taken[b]].tolist()):
            flags = is_mask[b][(tile[b] == t) & taken[b]]
            mixed += bool(flags.any() and not flags.all())
    assert mixed == 0


@pytest.mark.parametrize("partition", ["random", "contiguous"])
def test_fully_explored_words_partition_whole_words(partition):
    """Over words: every word masked whole in exactly one view, the views' word counts within one
    of each other, contiguous views in word order; specials in none."""
    g = torch.Generator().manual_seed(36)
    ids, _, maskable = make_batch(12, 48, g)
    word_start = torch.rand(ids.shape, generator=g) < 0.5
    word, words, _ = reference.word_index(maskable, word_start)
    for k in (1, 3, 7):
        views = fastmask.fully_explored_mask(ids, maskable, MASK_ID, VOCAB, k, partition, seed=4,
                                             word_start=word_start)
        labelled = views.labels != -100
        assert torch.equal(labelled.sum(0), maskable.long())  # every maskable token in exactly one view
        view_of = torch.argmax(labelled.long(), dim=0)
        for b in range(ids.shape[0]):
            views_of_word = {}
            for w, v in zip(word[b][maskable[b]].tolist(), view_of[b][maskable[b]].tolist()):
                views_of_word.setdefault(w, set()).add(v)
            assert all(len(v) == 1 for v in views_of_word.values())  # whole words
            per_view = torch.bincount(torch.tensor([min(v) for v in views_of_word.values()], dtype=torch.long),
                                      minlength=k)
            assert len(views_of_word) == words[b] and per_view.max() - per_view.min() <= 1
            if partition == "contiguous":
                order = [min(views_of_word[w]) for w in sorted(views_of_word)]
                assert order == sorted(order)


@pytest.mark.parametrize("partition", ["random", "contiguous"])
def test_fully_explored_words_of_single_tokens_are_the_token_partition(partition):
    """Where every token is maskable and its own word, word w is position w: the partitions agree."""
    g = torch.Generator().manual_seed(37)
    ids = torch.randint(5, VOCAB, (6, 40), generator=g)
    everything = torch.ones_like(ids, dtype=torch.bool)
    tokens = fastmask.fully_explored_mask(ids, everything, MASK_ID, VOCAB, 5, partition, seed=8)
    words = fastmask.fully_explored_mask(ids, everything, MASK_ID, VOCAB, 5, partition, seed=8, word_start=everything)
    assert torch.equal(tokens.labels, words.labels) and torch.equal(tokens.input_ids, words.input_ids)


def test_seed_epoch_and_rows_key_the_masks():
    g = torch.Generator().manual_seed(39)
    ids, _, maskable = make_batch(4, 40, g, density=1.0)
    word_start = (torch.rand(ids.shape, generator=g) < 0.6).to(DEVICE)
    base = fastmask.span_mask(ids, maskable, word_start, MASK_ID, VOCAB, seed=1, epoch=0).labels
    assert not torch.equal(base, fastmask.span_mask(ids, maskable, word_start, MASK_ID, VOCAB, seed=1, epoch=1).labels)
    # A row's masks follow its row id, not its place in the batch.
    flipped = fastmask.span_mask(ids.flip(0), maskable.flip(0), word_start.flip(0), MASK_ID, VOCAB, seed=1,
                                 row_ids=torch.arange(4, device=DEVICE).flip(0)).labels
    assert torch.equal(flipped.flip(0), base)


# --------------------------------------------------------------------------------------------
# Word starts: the vocabulary table and transformers' offsets rule.


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    """A small WordPiece tokenizer (## continuations) trained on the tests' sentences."""
    from conftest import SENTENCES

    return fastmask.data.train_tokenizer(SENTENCES * 20, 120, cache_dir=tmp_path_factory.mktemp("tokenizer"))


def test_word_start_table_and_offsets_agree_on_ordinary_text(wordpiece):
    """Words separated by spaces, no punctuation: the vocabulary table and transformers' offsets
    rule find the same words, and some words span several tokens."""
    from conftest import SENTENCES

    table = fastmask.word_start_table(wordpiece)
    assert table.shape == (len(wordpiece),) and table[wordpiece.all_special_ids].all()
    enc = wordpiece(SENTENCES, padding=True, return_offsets_mapping=True, return_special_tokens_mask=True,
                    return_tensors="pt")
    special = enc["special_tokens_mask"].bool()
    from_offsets = fastmask.word_start_from_offsets(enc["offset_mapping"], special)
    from_table = table[enc["input_ids"]]
    assert torch.equal(from_offsets, from_table & ~special)
    assert (~from_table[~special]).any()  # some words have ## continuations: the test can tell the rules apart


def test_word_start_table_reads_each_vocabulary_kind():
    """WordPiece marks continuations (##), byte-level BPE (Ġ) and SentencePiece (▁) mark starts."""
    class Vocabulary:
        all_special_ids = [0]

        def __init__(self, tokens):
            self.tokens = tokens

        def __len__(self):
            return len(self.tokens)

        def convert_ids_to_tokens(self, ids):
            return [self.tokens[i] for i in ids]

    kinds = {("[CLS]", "play", "##ing", "##s", "."): [1, 1, 0, 0, 1],
             ("<s>", "\u0120play", "ing", "\u0120the", "\u0120a"): [1, 1, 0, 1, 1],
             ("<s>", "\u2581play", "ing", "\u2581the", "s"): [1, 1, 0, 1, 0]}
    for tokens, starts in kinds.items():
        assert fastmask.word_start_table(Vocabulary(list(tokens))).tolist() == [bool(s) for s in starts], tokens
    with pytest.raises(ValueError, match="word_start_from_offsets"):
        fastmask.word_start_table(Vocabulary(["a", "b"]))


def test_bad_input_names_the_argument():
    ids = torch.zeros(2, 6, dtype=torch.long, device=DEVICE)
    ok = torch.ones(2, 6, dtype=torch.bool, device=DEVICE)
    with pytest.raises(ValueError, match="word_start"):
        fastmask.whole_word_mask(ids, ok, ok[:, :3], MASK_ID, VOCAB)
    with pytest.raises(ValueError, match="replace_per"):
        fastmask.span_mask(ids, ok, ok, MASK_ID, VOCAB, replace_per="word")
    with pytest.raises(ValueError, match="lengths"):
        fastmask.span_mask(ids, ok, ok, MASK_ID, VOCAB, lengths="poisson")
    with pytest.raises(ValueError, match="max_span"):
        fastmask.span_mask(ids, ok, ok, MASK_ID, VOCAB, max_span=0)
    with pytest.raises(ValueError, match="span_p"):
        fastmask.span_mask(ids, ok, ok, MASK_ID, VOCAB, span_p=1.5)


# --------------------------------------------------------------------------------------------
# opcheck, torch.compile, no host sync.


def _opcheck_args(int32):
    g = torch.Generator().manual_seed(40)
    ids, _, maskable = make_batch(3, 17, g, int32=int32)
    word_start = (torch.rand(ids.shape, generator=g) < 0.6).to(DEVICE)
    rows = torch.arange(3, device=DEVICE)
    seed, epoch = philox_key(5, 1)
    return {
        "whole_word_mask": (ids, maskable, word_start, rows, seed, epoch, T_SELECT, COUNT_NUM, COUNT_DEN, T_MASK,
                            T_RANDOM, MASK_ID, VOCAB, True),
        "span_mask": (ids, maskable, word_start.t().contiguous().t(), rows, seed, epoch, COUNT_NUM, COUNT_DEN,
                      list(GEOMETRIC), True, T_MASK, T_RANDOM, MASK_ID, VOCAB),
        "fully_explored_mask": (ids, maskable, rows, seed, epoch, 3, False, T_MASK, T_RANDOM, MASK_ID, VOCAB,
                                word_start),
    }


@pytest.mark.parametrize("backend", op_variant_params())
@pytest.mark.parametrize("name", ["whole_word_mask", "span_mask", "fully_explored_mask"])
def test_opcheck(name, backend):
    for int32 in (False, True):
        torch.library.opcheck(library.op(name, backend), _opcheck_args(int32)[name])


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_torch_compile_fullgraph(backend):
    g = torch.Generator().manual_seed(41)
    ids, attn, _ = make_batch(4, 24, g)
    table = (torch.arange(VOCAB, device=DEVICE) % 3 != 0)

    def step(ids, attn):
        maskable = fastmask.maskable_mask(ids, attn, [CLS, SEP, PAD], backend=backend)
        word_start = table[ids]
        whole = fastmask.whole_word_mask(ids, maskable, word_start, MASK_ID, VOCAB, exact_count=True, seed=3,
                                         backend=backend)
        spans = fastmask.span_mask(ids, maskable, word_start, MASK_ID, VOCAB, lengths="ngram", seed=3,
                                   backend=backend)
        views = fastmask.fully_explored_mask(ids, maskable, MASK_ID, VOCAB, 3, seed=3, backend=backend,
                                             word_start=word_start)
        return whole.labels, spans.input_ids, spans.labels, views.labels

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(ids, attn), step(ids, attn)):
        assert torch.equal(got, want)


def test_no_host_sync_in_the_ops_called():
    """The wrappers dispatch only the op and the word-start gather: nothing reads a value back."""
    g = torch.Generator().manual_seed(42)
    ids, _, maskable = make_batch(4, 24, g)
    table = torch.arange(VOCAB, device=DEVICE) % 3 != 0
    with RecordOps() as recorder:
        word_start = table[ids]
        fastmask.whole_word_mask(ids, maskable, word_start, MASK_ID, VOCAB, exact_count=True)
        fastmask.span_mask(ids, maskable, word_start, MASK_ID, VOCAB)
        fastmask.fully_explored_mask(ids, maskable, MASK_ID, VOCAB, 3, word_start=word_start)
    syncing = {"aten._local_scalar_dense", "aten.item", "aten.nonzero", "aten.is_nonzero"}
    assert not recorder.ops & syncing, recorder.ops & syncing


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_no_host_sync_on_gpu():
    g = torch.Generator().manual_seed(43)
    ids, _, maskable = make_batch(64, 128, g)
    word_start = (torch.rand(ids.shape, generator=g) < 0.7).to(DEVICE)
    rows = torch.arange(64, device=DEVICE)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for backend in ("auto", "cuda", "triton"):
            for exact in (False, True):
                fastmask.whole_word_mask(ids, maskable, word_start, MASK_ID, VOCAB, exact_count=exact, row_ids=rows,
                                         backend=backend)
            fastmask.span_mask(ids, maskable, word_start, MASK_ID, VOCAB, row_ids=rows, backend=backend)
            for partition in ("random", "contiguous"):
                fastmask.fully_explored_mask(ids, maskable, MASK_ID, VOCAB, 3, partition, row_ids=rows,
                                             backend=backend, word_start=word_start)
    finally:
        torch.cuda.set_sync_debug_mode("default")
