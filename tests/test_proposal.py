"""MAPNet proposal sampling: backends against the reference (integers bit-exact, weights within
float tolerance), sampling statistics, unbiasedness, the uniform limit, bad input, the real-op
checks, and a MaskProposalNet that learns to propose the hard positions."""

import itertools
import math

import pytest
import torch

import fastmask
from fastmask import library, reference
from conftest import (COUNT_DEN, COUNT_NUM, DEVICE, T_MASK, T_RANDOM, RecordOps, backend_params, op_variant_params,
                      philox_key)

MASK_ID, VOCAB = 4, 1000
TOPK, POISSON, SYSTEMATIC = reference.SAMPLING_TOPK, reference.SAMPLING_POISSON, reference.SAMPLING_SYSTEMATIC
SAMPLING_CODES = (TOPK, POISSON, SYSTEMATIC)


def test_canonical_exp_and_log_are_accurate():
    x = torch.linspace(-63.99, 80, 100_001)
    rel = (reference.canonical_exp(x).double() / torch.exp(x.double()) - 1).abs().max().item()
    assert rel < 5 * 2.0**-24
    assert (reference.canonical_exp(torch.tensor([-64.5, -200.0])) == 0).all()
    u = torch.logspace(-37, 37, 100_001).float()
    assert (reference.canonical_log(u).double() - torch.log(u.double())).abs().max().item() < 1e-5
    near_one = torch.linspace(0.5, 2.0, 100_001)
    ref = torch.log(near_one.double())
    assert ((reference.canonical_log(near_one).double() - ref).abs() <= 4 * 2.0**-24 * ref.abs().clamp(min=0.5)).all()


def random_case(g):
    randint = lambda lo, hi: int(torch.randint(lo, hi, (1,), generator=g))  # noqa: E731
    batch, length = randint(0, 5), randint(0, 70)
    ids = torch.randint(5, VOCAB, (batch, length), generator=g)
    if randint(0, 2):
        ids = ids.int()
    maskable = torch.rand(batch, length, generator=g) < float(torch.rand(1, generator=g))
    scale = [0.01, 1.0, 30.0, 200.0][randint(0, 4)]
    scores = (torch.randn(batch, length, generator=g) * scale).to([torch.float32, torch.bfloat16, torch.float16][randint(0, 3)])
    if batch and length and randint(0, 4) == 0:
        scores[randint(0, batch), randint(0, length)] = [float("nan"), float("inf"), -float("inf")][randint(0, 3)]
    rows = torch.randint(-(2**62), 2**62, (batch,), generator=g)
    count_den = [20, 2, randint(1, 2**31)][randint(0, 3)]
    args = (
        ids.to(DEVICE), scores.to(DEVICE), maskable.to(DEVICE), rows.to(DEVICE),
        *philox_key(randint(-(2**62), 2**62), randint(0, 2**32)),
        randint(0, count_den + 1), count_den, [0.0, 0.1, 0.5, 1.0][randint(0, 4)], [0.3, 1.0, 5.0][randint(0, 3)],
    )
    return args


@pytest.mark.parametrize("backend", backend_params())
def test_matches_reference(backend):
    g = torch.Generator().manual_seed(0)
    for _ in range(10 if backend == "triton" else 60):
        head = random_case(g)
        for sampling, sequence in itertools.product(SAMPLING_CODES, (False, True)):
            args = (*head, sampling, sequence, T_MASK, T_RANDOM, MASK_ID, VOCAB)
            ids, labels, weights = library.op("proposal_mask", backend)(*args)
            want_ids, want_labels, want_weights = reference.proposal_mask(*args)
            assert torch.equal(ids, want_ids) and torch.equal(labels, want_labels)
            assert weights.dtype == torch.float32
            torch.testing.assert_close(weights, want_weights, rtol=1e-5 if sequence else 1e-6, atol=0)


def long_rows(length, scale, g):
    """Ids, scores and maskable rows of `length`: random, all maskable, a NaN score (the uniform
    fallback), only the last token maskable."""
    ids = torch.randint(5, VOCAB, (4, length), generator=g)
    scores = torch.randn(4, length, generator=g) * scale
    maskable = torch.rand(4, length, generator=g) < 0.7
    maskable[1:] = False
    maskable[1:3] = True
    scores[2, length // 2] = float("nan")
    maskable[3, -1] = True
    rows = torch.randint(-(2**62), 2**62, (4,), generator=g)
    return ids.to(DEVICE), scores.to(DEVICE), maskable.to(DEVICE), rows.to(DEVICE)


@pytest.mark.parametrize("backend", [p for p in backend_params() if p.id == "triton"])
def test_triton_long_rows_match_reference(backend, triton_long_rows):
    """Rows beyond the (lowered) long-row length take the long-row kernels: top-k by radix select with
    ties at the k-th key taken in position order, Poisson, systematic, both weightings, k = n, no rows."""
    g = torch.Generator().manual_seed(9)
    cases = (  # length, score scale, count fraction, uniform mix, sampling, sequence weights
        (33, 3.0, (COUNT_NUM, COUNT_DEN), 0.1, TOPK, False),
        # Without a uniform floor most q underflow to 0: their keys tie at +inf, among the first k.
        (70, 200.0, (1, 2), 0.0, TOPK, True),
        (33, 1.0, (1, 1), 0.5, TOPK, False),
        (70, 1.0, (COUNT_NUM, COUNT_DEN), 0.1, POISSON, False),
        (33, 30.0, (COUNT_NUM, COUNT_DEN), 0.1, POISSON, True),
        (70, 3.0, (COUNT_NUM, COUNT_DEN), 0.1, SYSTEMATIC, False),
        (33, 200.0, (1, 2), 0.0, SYSTEMATIC, True),  # most weights at the floor W = 1, many capped
        (70, 1.0, (1, 1), 0.5, SYSTEMATIC, False),  # k = n: every position capped
    )
    for length, scale, (count_num, count_den), uniform_mix, sampling, sequence in cases:
        ids, scores, maskable, rows = long_rows(length, scale, g)
        if scale == 200.0:
            q, _, k = reference.proposal_inclusion(scores, maskable, count_num, count_den, uniform_mix, 1.0)
            assert ((q > 0).sum(1) < k)[:2].all()
        for batch in (4, 0):
            args = (ids[:batch], scores[:batch], maskable[:batch], rows[:batch], *philox_key(3, 8), count_num, count_den,
                    uniform_mix, 1.0, sampling, sequence, T_MASK, T_RANDOM, MASK_ID, VOCAB)
            ids_out, labels, weights = library.op("proposal_mask", backend)(*args)
            want_ids, want_labels, want_weights = reference.proposal_mask(*args)
            assert torch.equal(ids_out, want_ids) and torch.equal(labels, want_labels)
            torch.testing.assert_close(weights, want_weights, rtol=1e-5 if sequence else 1e-6, atol=0)


def capping_rounds(w_row, k):
    """Rounds the kernels' capping rule takes on one row of integer weights (the last caps nothing)."""
    capped, rounds = torch.zeros_like(w_row, dtype=torch.bool), 1
    while (new := ~capped & (w_row > 0) & ((k - int(capped.sum())) * w_row >= int(w_row[~capped].sum()))).any():
        capped, rounds = capped | new, rounds + 1
    return rounds


@pytest.mark.parametrize("backend", backend_params())
def test_systematic_edge_rows_match_reference(backend):
    """Systematic rows the random cases rarely make: capping over several rounds of the kernels'
    rule (geometric q), most weights at the floor W = 1 (no uniform mix), k = n (all capped, no
    draw), a single maskable position, and long rows (the CPU's bucketed sort, CUDA's largest block;
    not under the Triton interpreter, whose long-row kernel test_triton_long_rows_match_reference
    runs at lowered limits)."""
    g = torch.Generator().manual_seed(15)
    for length in (200,) if backend == "triton" else (200, 8192):
        ids = torch.randint(5, VOCAB, (4, length), generator=g)
        scores = torch.full((4, length), -30.0)
        maskable = torch.rand(4, length, generator=g) < 0.9
        for row in (0, 2):  # q geometric over 40 scattered positions, tiny elsewhere
            scores[row, torch.randperm(length, generator=g)[:40]] = -0.35 * torch.arange(40.0)
        maskable[0] = True
        scores[1] = torch.randn(length, generator=g) * 3.0
        maskable[3] = False
        maskable[3, length // 3] = True
        rows = torch.randint(-(2**62), 2**62, (4,), generator=g)
        cases = itertools.product(((1, 4), (3, 20), (1, 2), (1, 1)), (0.0, 0.05))
        if backend == "triton":  # the interpreter is slow: several capping rounds, and k = n
            cases = itertools.product(((1, 4), (1, 1)), (0.0,))
        for (count_num, count_den), uniform_mix in cases:
            q, _, k = reference.proposal_inclusion(scores, maskable, count_num, count_den, uniform_mix, 1.0)
            w = reference.systematic_weights(q, maskable)
            if count_den > 1:
                assert capping_rounds(w[0], int(k[0])) >= 3  # two rounds cap, the last finds none
            for sequence in (False, True):
                args = (ids.to(DEVICE), scores.to(DEVICE), maskable.to(DEVICE), rows.to(DEVICE), *philox_key(5, 6),
                        count_num, count_den, uniform_mix, 1.0, SYSTEMATIC, sequence, T_MASK, T_RANDOM, MASK_ID, VOCAB)
                ids_out, labels, weights = library.op("proposal_mask", backend)(*args)
                want_ids, want_labels, want_weights = reference.proposal_mask(*args)
                assert torch.equal(ids_out, want_ids) and torch.equal(labels, want_labels)
                assert torch.equal((labels != -100).sum(1).cpu(), k)
                torch.testing.assert_close(weights, want_weights, rtol=1e-5 if sequence else 1e-6, atol=0)


# --------------------------------------------------------------------------------------------
# Statistics (backends are bit-exact, so these use the default backend).


def many_rows(scores_row, maskable_row, rows, **kwargs):
    """The same row sampled `rows` times (row ids differ): (labels != -100, weights)."""
    scores = scores_row.expand(rows, -1).contiguous().to(DEVICE)
    maskable = maskable_row.expand(rows, -1).contiguous().to(DEVICE)
    ids = torch.full(scores.shape, 9, device=DEVICE)
    out = fastmask.proposal_mask(ids, scores, maskable, MASK_ID, VOCAB, **kwargs)
    return out.labels != -100, out.weights


def test_topk_counts_are_exact():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(64, 50, generator=g).to(DEVICE) * 3
    maskable = (torch.rand(64, 50, generator=g) < 0.7).to(DEVICE)
    out = fastmask.proposal_mask(torch.full_like(maskable, 9, dtype=torch.long), scores, maskable, MASK_ID, VOCAB, 0.2,
                                 sampling="topk")
    n = maskable.sum(1)
    k = torch.minimum(torch.clamp(torch.floor(0.2 * n + 0.5), min=1).long(), n)
    assert torch.equal((out.labels != -100).sum(1), torch.where(n > 0, k, 0))
    assert not ((out.labels != -100) & ~maskable).any()


def successive_sampling_inclusion(q, k):
    """Exact inclusion probabilities of drawing k items without replacement proportionally to q."""
    pi = torch.zeros_like(q, dtype=torch.float64)
    for order in itertools.permutations(range(len(q)), k):
        p, left = 1.0, 1.0
        for i in order:
            p *= q[i].item() / left
            left -= q[i].item()
        for i in order:
            pi[i] += p
    return pi


def test_topk_inclusion_frequencies_match_successive_sampling():
    scores = torch.tensor([[2.0, 0.0, -1.0, 1.0, 0.5]])
    maskable = torch.ones_like(scores, dtype=torch.bool)
    rows = 40_000
    chosen, _ = many_rows(scores, maskable, rows, sampling="topk", mlm_probability=0.4, uniform_mix=0.2)  # k = 2
    q = torch.exp(fastmask.proposal_log_q(scores, maskable, 0.2))[0].double()
    pi = successive_sampling_inclusion(q, 2)
    freq = chosen.double().mean(0).cpu()
    sd = torch.sqrt(pi * (1 - pi) / rows)
    assert ((freq - pi).abs() < 4.5 * sd).all(), (freq, pi)


def test_poisson_inclusion_and_unbiased_token_weights():
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(1, 40, generator=g) * 1.5
    maskable = torch.rand(1, 40, generator=g) < 0.8
    rows = 30_000
    chosen, weights = many_rows(scores, maskable, rows, sampling="poisson", uniform_mix=0.1)
    _, pi, k = reference.proposal_inclusion(scores, maskable, COUNT_NUM, COUNT_DEN, 0.1, 1.0)
    pi = pi[0].double()
    freq = chosen.double().mean(0).cpu()
    sd = torch.sqrt(pi * (1 - pi) / rows).clamp(min=1e-12)
    assert ((freq - pi).abs() <= 4.5 * sd).all()
    # E[sum_i w_i l_i] = (k / n) sum_i l_i for any fixed per-token losses l.
    losses = torch.rand(40, generator=g).double()
    estimates = (weights.double().cpu() * losses).sum(1)
    n = maskable.sum().item()
    target = (k.item() / n) * losses[maskable[0]].sum().item()
    assert abs(estimates.mean().item() - target) < 4.5 * estimates.std().item() / math.sqrt(rows)


def systematic_pi(scores, maskable, count_fraction=(COUNT_NUM, COUNT_DEN), uniform_mix=0.1):
    """The reference's exact systematic inclusion probabilities (float64) of one row, and k."""
    q, _, k = reference.proposal_inclusion(scores, maskable, *count_fraction, uniform_mix, 1.0)
    w = reference.systematic_weights(q, maskable)
    capped, m = reference.systematic_capped(w, k)
    uncapped = torch.where(capped, 0, w)
    pi = torch.where(capped, 1.0, (k - m)[:, None].double() * uncapped.double() / uncapped.sum(1, keepdim=True).double())
    return pi[0], int(k[0])


def test_systematic_inclusion_frequencies_counts_and_unbiased_weights():
    """Exactly k positions per row; each position drawn with its stated probability (capped
    positions always); E[sum w_i l_i] = (k / n) sum l_i for fixed per-token losses."""
    g = torch.Generator().manual_seed(12)
    scores = torch.randn(1, 40, generator=g) * 2.5
    scores[0, :3] = 6.0  # k q > 1 there: capped, the excess spread over the others
    maskable = torch.rand(1, 40, generator=g) < 0.85
    maskable[0, :3] = True
    rows = 30_000
    chosen, weights = many_rows(scores, maskable, rows, sampling="systematic", mlm_probability=0.25)
    pi, k = systematic_pi(scores, maskable, (1, 4))
    assert (pi == 1).sum() >= 3 and pi.sum().item() == pytest.approx(k, abs=1e-9)
    assert (chosen.sum(1) == k).all() and not (chosen & ~maskable.to(DEVICE)).any()
    freq = chosen.double().mean(0).cpu()
    sd = torch.sqrt(pi * (1 - pi) / rows).clamp(min=1e-12)
    assert ((freq - pi).abs() <= 4.5 * sd).all(), (freq, pi)
    torch.testing.assert_close(weights.cpu()[chosen.cpu()], ((k / maskable.sum()) / pi.float()).expand(rows, -1)[chosen.cpu()])
    losses = torch.rand(40, generator=g).double()
    estimates = (weights.double().cpu() * losses).sum(1)
    target = (k / maskable.sum().item()) * losses[maskable[0]].sum().item()
    assert abs(estimates.mean().item() - target) < 4.5 * estimates.std().item() / math.sqrt(rows)


def test_systematic_matches_exact_inclusion_where_topk_does_not():
    """The audit's case (n = 126, k = 19, max n q near 9.5): top-k's total weight is biased
    (about 1.2 k), systematic's is k on average; systematic's weights are exact."""
    g = torch.Generator().manual_seed(13)
    scores = torch.randn(1, 126, generator=g) * 1.6
    maskable = torch.ones(1, 126, dtype=torch.bool)
    rows = 4000
    _, k = systematic_pi(scores, maskable)
    totals = {}
    for sampling in ("topk", "systematic"):
        chosen, weights = many_rows(scores, maskable, rows, sampling=sampling)
        totals[sampling] = weights.double().sum(1).mean().item() * 126 / k  # E[sum w] = n when unbiased
    q, _, _ = reference.proposal_inclusion(scores, maskable, COUNT_NUM, COUNT_DEN, 0.1, 1.0)
    assert 126 * q.max() > 5
    assert abs(totals["systematic"] / 126 - 1) < 0.02, totals
    assert totals["topk"] / 126 > 1.05, totals


def test_systematic_capping_is_the_fixed_point_of_the_kernels_rule():
    """The reference's sorted closed form gives the set the kernels' rule converges to (cap every
    uncapped i with (k - m) W_i >= A until none is left), ties included."""
    g = torch.Generator().manual_seed(14)
    for _ in range(200):
        n = int(torch.randint(1, 30, (1,), generator=g))
        w = torch.randint(1, 50, (1, n), generator=g) ** int(torch.randint(1, 4, (1,), generator=g))
        w[0, torch.rand(n, generator=g) < 0.3] = w.max()  # ties at the top
        k = torch.randint(1, n + 1, (1,), generator=g)
        capped = torch.zeros(n, dtype=torch.bool)
        while True:
            m, a = int(capped.sum()), int(w[0][~capped].sum())
            new = ~capped & ((int(k) - m) * w[0] >= a)
            if not new.any():
                break
            capped |= new
        got, got_m = reference.systematic_capped(w, k)
        assert torch.equal(got[0], capped) and int(got_m) == int(capped.sum()) <= int(k)
        uncapped = w[0][~capped]
        assert ((int(k) - int(got_m)) * uncapped < max(int(uncapped.sum()), 1)).all()  # each pi < 1


def test_uniform_mix_one_is_uniform_masking():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(1, 30, generator=g) * 10
    maskable = torch.ones(1, 30, dtype=torch.bool)
    rows = 20_000
    for sampling in fastmask.ops.SAMPLINGS:
        chosen, weights = many_rows(scores, maskable, rows, uniform_mix=1.0, sampling=sampling, mlm_probability=0.2)
        assert (weights[chosen] == 1).all() and (weights[~chosen] == 0).all()
        freq = chosen.double().mean(0)
        assert ((freq - 0.2).abs() < 4.5 * math.sqrt(0.2 * 0.8 / rows)).all()
        if sampling != "poisson":
            assert (chosen.sum(1) == 6).all()


def test_non_finite_scores_fall_back_to_uniform():
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(5, VOCAB, (3, 40), generator=g).to(DEVICE)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    scores = torch.randn(3, 40, generator=g).to(DEVICE)
    scores[1, 7] = float("nan")
    scores[2, 3] = float("inf")
    out = fastmask.proposal_mask(ids, scores, maskable, MASK_ID, VOCAB, seed=5)
    uniform = fastmask.proposal_mask(ids, torch.zeros_like(scores), maskable, MASK_ID, VOCAB, uniform_mix=1.0, seed=5)
    for field in range(3):
        assert torch.equal(out[field][1:], uniform[field][1:])
    assert torch.isfinite(out.weights).all()


def test_sequence_weights_are_clipped_and_normalised():
    g = torch.Generator().manual_seed(5)
    scores = torch.randn(32, 64, generator=g).to(DEVICE) * 3
    maskable = torch.ones(32, 64, dtype=torch.bool, device=DEVICE)
    ids = torch.full(scores.shape, 9, device=DEVICE)
    out = fastmask.proposal_mask(ids, scores, maskable, MASK_ID, VOCAB, weighting="sequence")
    chosen = out.labels != -100
    row = out.weights.amax(1)
    assert ((out.weights == row[:, None]) | ~chosen).all()  # one weight per row
    q, _, _ = reference.proposal_inclusion(scores, maskable, COUNT_NUM, COUNT_DEN, 0.1, 1.0)
    raw = reference.clipped_sequence_weights(chosen, q, maskable).amax(1)
    assert ((raw >= 0.8) & (raw <= 1.2)).all() and (raw != 1).any()
    torch.testing.assert_close(row, raw / raw.mean())


# --------------------------------------------------------------------------------------------
# MaskProposalNet and its REINFORCE objective.


def test_mask_proposal_net_learns_the_hard_positions():
    """Tokens with a 'hard' id have a systematically higher loss; q must move toward them."""
    torch.manual_seed(0)
    vocab, length = 50, 24
    embedding = torch.nn.Embedding(vocab, 16)
    net = fastmask.MaskProposalNet(embedding, num_layers=1, hidden_size=32, num_heads=2, max_len=length, dropout=0.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    hard = torch.arange(vocab) < 10  # ids 0..9 are hard

    def hard_mass():
        ids = torch.randint(0, vocab, (256, length), generator=torch.Generator().manual_seed(99))
        with torch.no_grad():
            q = torch.exp(fastmask.proposal_log_q(net(ids), torch.ones_like(ids, dtype=torch.bool)))
        return (q * hard[ids]).sum(1).mean().item() / hard[ids].float().mean(1).mean().item()

    before = hard_mass()
    for step in range(60):
        ids = torch.randint(0, vocab, (64, length))
        maskable = torch.ones_like(ids, dtype=torch.bool)
        scores = net(ids)
        out = fastmask.proposal_mask(ids, scores.detach(), maskable, 3, vocab, 0.25, seed=step)
        token_losses = torch.where(hard[ids], 3.0, 1.0) + 0.1 * torch.rand(ids.shape)
        loss = fastmask.mapnet_loss(scores, out.labels, token_losses, maskable)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = hard_mass()
    assert before == pytest.approx(1.0, rel=1e-5)  # the zero-initialised head proposes uniformly
    assert after > 2.0 * before, (before, after)


def test_shared_embedding_is_not_a_parameter_and_not_trained():
    embedding = torch.nn.Embedding(20, 8)
    net = fastmask.MaskProposalNet(embedding, num_layers=1, hidden_size=8, num_heads=2, max_len=10)
    assert all(p is not embedding.weight for p in net.parameters())
    net(torch.randint(0, 20, (2, 10))).sum().backward()
    assert embedding.weight.grad is None
    with pytest.raises(ValueError, match="max_len"):
        net(torch.randint(0, 20, (2, 11)))


def test_mapnet_loss_gradient_pushes_toward_high_loss():
    scores = torch.zeros(1, 4, requires_grad=True)
    labels = torch.tensor([[5, 6, -100, -100]])
    losses = torch.tensor([[3.0, 1.0, 0.0, 0.0]])
    fastmask.mapnet_loss(scores, labels, losses, torch.ones(1, 4, dtype=torch.bool), uniform_mix=0.0).backward()
    assert scores.grad[0, 0] < 0 < scores.grad[0, 1]  # descent raises the score of the hard position


@pytest.mark.parametrize("objective", fastmask.mapnet.OBJECTIVES)
def test_mapnet_score_gradient_is_the_gradient_of_mapnet_loss(objective):
    g = torch.Generator().manual_seed(15)
    scores = torch.randn(3, 12, generator=g)
    maskable = torch.rand(3, 12, generator=g) < 0.8
    maskable[2] = False  # a row with nothing to sample
    labels = torch.where((torch.rand(3, 12, generator=g) < 0.4) & maskable, 5, -100)
    reward = torch.rand(3, 12, generator=g) + 0.1
    weights = torch.rand(3, 12, generator=g) * 2 + 0.1
    for temperature in (1.0, 0.7):
        leaf = scores.clone().requires_grad_()
        value = fastmask.mapnet_loss(leaf, labels, reward, maskable, 0.1, temperature, objective=objective,
                                     weights=weights)
        (want,) = torch.autograd.grad(value, leaf)
        got, got_value = fastmask.mapnet.mapnet_score_gradient(leaf, labels, reward, maskable, 0.1, temperature,
                                                               objective=objective, weights=weights)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(got_value, value.detach())
        assert want.abs().max() > 1e-3


def test_regression_and_variance_objectives_are_scale_free():
    """The signal's scale (the loss normaliser, accumulation, AMP's scaler) must not matter."""
    g = torch.Generator().manual_seed(16)
    scores = torch.randn(2, 10, generator=g)
    maskable = torch.ones(2, 10, dtype=torch.bool)
    labels = torch.where(torch.rand(2, 10, generator=g) < 0.5, 5, -100)
    signal = torch.rand(2, 10, generator=g) + 0.1
    for objective in ("regression", "variance"):
        grads = [fastmask.mapnet.mapnet_score_gradient(scores, labels, signal * c, maskable, objective=objective)[0]
                 for c in (1.0, 1e-4)]
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("objective", ["regression", "variance"])
def test_feedback_objective_gets_the_gradient_of_the_true_signal(objective):
    """MaskingStrategy reads G_i = ||dl_i / dh_i|| in the MLM backward (no extra pass): the
    proposal's gradient equals mapnet_loss's on the signal computed explicitly, token by token."""
    torch.manual_seed(17)
    vocab, width, batch, length = 50, 16, 4, 20
    net = fastmask.MaskProposalNet(torch.nn.Embedding(vocab, width), num_layers=1, hidden_size=8, num_heads=2,
                                   max_len=length, dropout=0.0)
    torch.nn.init.normal_(net.head.weight, std=0.5)
    head = torch.nn.Linear(width, vocab)
    strategy = fastmask.MaskingStrategy("mapnet", mask_token_id=3, vocab_size=vocab, special_ids=[0], proposal=net,
                                        objective=objective)
    ids = torch.randint(1, vocab, (batch, length)).to(DEVICE)
    step = strategy(ids, row_ids=torch.arange(batch, device=DEVICE), epoch=0)
    hidden = torch.randn(batch, length, width, requires_grad=True)
    losses = strategy.losses(step, hidden, head, num_items=7)  # any normaliser: the objectives are scale-free
    assert losses.objective.item() == 0  # its value comes in the backward
    (losses.loss + 0.5 * losses.objective).backward()
    got = net.head.weight.grad.clone()
    gathered = fastmask.gather_masked(hidden.detach(), step.positions.index).requires_grad_()
    token_losses = fastmask.sparse.slot_cross_entropy(head(gathered), step.positions)
    norms = torch.autograd.grad(token_losses.sum(), gathered)[0].norm(dim=-1)
    signal = fastmask.sparse.losses_by_position(norms, step.positions, length)
    net.zero_grad()
    want = 0.5 * fastmask.mapnet_loss(net(ids), step.labels, signal, step.maskable, objective=objective,
                                      weights=step.weights)
    want.backward()
    torch.testing.assert_close(got, net.head.weight.grad, rtol=1e-4, atol=1e-6)
    assert strategy.take_proposal_stats()["mapnet_objective"] == pytest.approx(want.item() / 0.5, rel=1e-4)


def test_regression_objective_moves_q_to_the_signal_without_collapse():
    """Free scores trained on a fixed signal G: q approaches G / sum G (mixed with the uniform
    floor), where the author's objective on the same reward sharpens past it."""
    g = torch.Generator().manual_seed(18)
    length, rows = 30, 64
    signal = torch.exp(torch.randn(length, generator=g) * 0.7)
    maskable = torch.ones(rows, length, dtype=torch.bool)
    ids = torch.full((rows, length), 9)
    final = {}
    for objective in ("regression", "loss"):
        scores = torch.zeros(length, requires_grad=True)
        optimizer = torch.optim.Adam([scores], lr=0.05)
        for step in range(150):
            batch = scores.expand(rows, -1)
            out = fastmask.proposal_mask(ids, batch.detach(), maskable, MASK_ID, VOCAB, 0.2, seed=step)
            loss = fastmask.mapnet_loss(batch, out.labels, signal.expand(rows, -1), maskable, objective=objective,
                                        weights=out.weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        final[objective] = torch.softmax(scores.detach(), 0)
    target = signal / signal.sum()
    assert (final["regression"] / target - 1).abs().max() < 0.05, final["regression"] / target
    assert final["loss"].max() > 2 * target.max()  # the faithful mode has no interior optimum


# --------------------------------------------------------------------------------------------
# Bad input, opcheck, torch.compile.

IDS = torch.full((2, 6), 9, device=DEVICE)
OK = torch.ones(2, 6, dtype=torch.bool, device=DEVICE)
SCORES = torch.zeros(2, 6, device=DEVICE)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(scores=SCORES[:, :3]), "scores"),
        (dict(scores=SCORES.double()), "scores"),
        (dict(scores=SCORES.long()), "scores"),
        (dict(uniform_mix=1.5), "uniform_mix"),
        (dict(uniform_mix=-0.1), "uniform_mix"),
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=float("inf")), "temperature"),
        (dict(sampling="multinomial"), "sampling"),
        (dict(weighting="row"), "weighting"),
        (dict(mlm_probability=2.0), "mlm_probability"),
        (dict(maskable=OK.int()), "maskable"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    args = dict(input_ids=IDS, scores=SCORES, maskable=OK, mask_token_id=MASK_ID, vocab_size=VOCAB)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        fastmask.proposal_mask(**args)


@pytest.mark.parametrize("backend", op_variant_params())
def test_opcheck(backend):
    g = torch.Generator().manual_seed(6)
    ids = torch.randint(5, VOCAB, (3, 17), generator=g).to(DEVICE)
    scores = torch.randn(3, 17, generator=g).to(DEVICE)
    maskable = (torch.rand(3, 17, generator=g) < 0.8).to(DEVICE)
    rows = torch.arange(3, device=DEVICE)
    for sampling in SAMPLING_CODES:
        for sequence in (False, True):
            args = (ids, scores, maskable, rows, *philox_key(1, 2, "cpu" if sampling == POISSON else DEVICE), 3, 10, 0.1,
                    1.0, sampling, sequence, T_MASK, T_RANDOM, MASK_ID, VOCAB)
            torch.library.opcheck(library.op("proposal_mask", backend), args)


@pytest.mark.parametrize("backend", [*backend_params(), "reference"])
def test_philox_key_tensors_give_the_samples_of_ints(backend):
    g = torch.Generator().manual_seed(9)
    ids = torch.randint(5, VOCAB, (3, 30), generator=g).to(DEVICE)
    scores = torch.randn(3, 30, generator=g).to(DEVICE)
    maskable = (torch.rand(3, 30, generator=g) < 0.8).to(DEVICE)
    for sampling in fastmask.ops.SAMPLINGS:
        sample = lambda seed, epoch: fastmask.proposal_mask(  # noqa: E731
            ids, scores, maskable, MASK_ID, VOCAB, sampling=sampling, seed=seed, epoch=epoch, backend=backend)
        want = sample(2**40 + 3, 5)
        for device in {DEVICE, torch.device("cpu")}:
            seed, epoch = philox_key(2**40 + 3, 5, device)
            for got_t, want_t in zip(sample(seed, epoch), want):
                assert torch.equal(got_t, want_t)
            epoch.add_(1)  # advanced in place: the next call draws fresh samples
            assert not torch.equal(sample(seed, epoch).labels, want.labels)


def test_reference_divides_by_the_temperature_on_the_scores_device():
    """CUDA divides by a CPU scalar tensor as a * (1 / b), not correctly rounded: the reference
    must divide by a divisor shaped like the scores, as the kernels round (correctly)."""
    scores = torch.randn(2, 7)
    maskable = torch.ones(2, 7, dtype=torch.bool)

    class RecordDivisors(RecordOps):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket is torch.ops.aten.div and isinstance(args[1], torch.Tensor):
                self.ops.add((tuple(args[0].shape), tuple(args[1].shape)))
            return func(*args, **(kwargs or {}))

    with RecordDivisors() as recorder:
        reference.proposal_inclusion(scores, maskable, COUNT_NUM, COUNT_DEN, 0.1, 0.3)
    assert ((2, 7), (2, 7)) in recorder.ops
    assert not any(divisor == () and dividend != () for dividend, divisor in recorder.ops), recorder.ops


def test_torch_compile_fullgraph():
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(5, VOCAB, (4, 20), generator=g).to(DEVICE)
    scores = torch.randn(4, 20, generator=g).to(DEVICE).requires_grad_()
    maskable = torch.ones_like(ids, dtype=torch.bool)

    def step(ids, scores):
        out = fastmask.proposal_mask(ids, scores.detach(), maskable, MASK_ID, VOCAB, seed=3)
        losses = torch.where(out.labels != -100, 1.0 + out.weights, 0.0)
        return out.labels, fastmask.mapnet_loss(scores, out.labels, losses, maskable)

    torch._dynamo.reset()
    got = torch.compile(step, fullgraph=True, backend="aot_eager")(ids, scores)
    want = step(ids, scores)
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("weighting", ["token", "sequence"])
def test_long_rows_on_gpu(weighting):
    """Poisson rows beyond the CUDA sort limit take the long-row kernel; top-k and systematic leave
    CUDA (auto), and the CUDA kernel refuses them by name."""
    g = torch.Generator().manual_seed(8)
    ids = torch.randint(5, VOCAB, (2, 9000), generator=g).to(DEVICE)
    scores = torch.randn(2, 9000, generator=g).to(DEVICE)
    maskable = (torch.rand(2, 9000, generator=g) < 0.9).to(DEVICE)
    rows = torch.arange(2, device=DEVICE)
    args = (ids, scores, maskable, rows, *philox_key(1, 2), COUNT_NUM, COUNT_DEN, 0.1, 1.0, POISSON, weighting == "sequence",
            T_MASK, T_RANDOM, MASK_ID, VOCAB)
    got, want = library.op("proposal_mask", "cuda")(*args), reference.proposal_mask(*args)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    torch.testing.assert_close(got[2], want[2], rtol=1e-5, atol=0)
    for sampling, code, named in (("topk", TOPK, "top-k"), ("systematic", SYSTEMATIC, "systematic")):
        ranked = fastmask.proposal_mask(ids, scores, maskable, MASK_ID, VOCAB, sampling=sampling)  # auto: not CUDA
        assert torch.equal((ranked.labels != -100).sum(1), fastmask.masked_count(maskable.sum(1), 0.15))
        with pytest.raises(RuntimeError, match=f"length 9000 but the CUDA kernel samples {named} from at most"):
            library.op("proposal_mask", "cuda")(*args[:10], code, *args[11:])
