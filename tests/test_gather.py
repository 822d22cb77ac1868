"""Sparse gathering: masked_positions, gather_masked (+ its scatter backward) and the sparse MLM
loss, on every backend against the reference; equality with the dense Hugging Face loss; no sync."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmask
from fastmask import library, reference
from conftest import DEVICE, NATIVE, RecordOps, backend_params, op_variant_params

FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def random_labels(batch, length, density, generator):
    labels = torch.randint(0, 1000, (batch, length), generator=generator)
    keep = torch.rand(batch, length, generator=generator) < density
    return torch.where(keep, labels, -100).to(DEVICE)


@pytest.mark.parametrize("backend", backend_params())
def test_masked_positions_match_reference(backend):
    g = torch.Generator().manual_seed(0)
    for trial in range(12 if backend == "triton" else 60):
        batch, length = trial % 4, int(torch.randint(0, 140, (1,), generator=g))
        labels = random_labels(batch, length, float(torch.rand(1, generator=g)), g)
        capacity = int(torch.randint(1, length + 4, (1,), generator=g))
        got = library.op("masked_positions", backend)(labels, capacity)
        for a, b in zip(got, reference.masked_positions(labels, capacity)):
            assert a.dtype == b.dtype and torch.equal(a, b)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_gather_and_scatter_match_reference(backend, dtype):
    g = torch.Generator().manual_seed(1)
    for trial in range(4 if backend == "triton" else 12):
        batch, length, width = trial % 3 + 1, 3 + 11 * trial, [1, 3, 8, 33, 64, 0][trial % 6]
        labels = random_labels(batch, length, 0.3, g)
        index = reference.masked_positions(labels, max(1, length // 4))[0]
        hidden = torch.randn(batch, length, width, generator=g).to(DEVICE, dtype)
        assert torch.equal(library.op("gather_masked", backend)(hidden, index), reference.gather_masked(hidden, index))
        values = torch.randn(batch, index.shape[1], width, generator=g).to(DEVICE, dtype)
        assert torch.equal(library.op("scatter_masked", backend)(values, index, length),
                           reference.scatter_masked(values, index, length))


@pytest.mark.parametrize("backend", ["reference", *backend_params()])
def test_gather_backward_is_the_scatter(backend):
    g = torch.Generator().manual_seed(2)
    labels = random_labels(3, 20, 0.4, g)
    index = reference.masked_positions(labels, 6)[0]
    hidden = torch.randn(3, 20, 5, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_()
    gathered = fastmask.gather_masked(hidden, index, backend=backend)
    grad = torch.randn_like(gathered)
    gathered.backward(grad)
    assert torch.equal(hidden.grad, reference.scatter_masked(grad, index, 20))
    assert torch.autograd.gradcheck(lambda h: fastmask.gather_masked(h, index, backend=backend), (hidden,))


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(0, 4), length=st.integers(0, 50), density=st.floats(0, 1), extra=st.integers(-5, 5),
       seed=st.integers(0, 2**31 - 1))
def test_positions_properties(batch, length, density, extra, seed):
    labels = random_labels(batch, length, density, torch.Generator().manual_seed(seed))
    capacity = max(1, int(length * density) + extra)
    pos = fastmask.masked_positions(labels, capacity)
    n = (labels != -100).sum(1)
    assert torch.equal(pos.count, n)
    used = pos.index >= 0
    assert torch.equal(used.sum(1), n.clamp(max=capacity))
    assert (pos.index[:, 1:][used[:, 1:]] > pos.index[:, :-1][used[:, 1:]]).all()  # ascending
    if length:
        assert torch.equal(pos.labels[used], labels.gather(1, pos.index.clamp(min=0))[used])
    assert (pos.labels[~used] == -100).all()


def test_capacity_none_is_exact_and_overflow_is_visible():
    labels = torch.tensor([[-100, 5, 6, -100, 7], [1, -100, -100, -100, -100]], device=DEVICE)
    assert fastmask.masked_positions(labels).index.shape == (2, 3)
    fastmask.check_capacity(fastmask.masked_positions(labels, 3))
    with pytest.raises(RuntimeError, match="3 labelled tokens but capacity is 2"):
        fastmask.check_capacity(fastmask.masked_positions(labels, 2))


# --------------------------------------------------------------------------------------------
# The sparse loss against Hugging Face's dense BertForMaskedLM loss.


def tiny_bert():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # deterministic
    return BertForMaskedLM(config).to(DEVICE).double()


def masked_batch(batch=4, length=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 101, (batch, length), generator=g).to(DEVICE)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = False
    return fastmask.mask_tokens(ids, maskable, 4, 101, 0.25, exact_count=True, seed=seed)


def test_sparse_loss_equals_dense_hf_loss_and_gradients():
    model = tiny_bert()
    batch = masked_batch()
    dense = model(input_ids=batch.input_ids, labels=batch.labels).loss
    dense_grads = torch.autograd.grad(dense, list(model.parameters()), allow_unused=True)
    hidden = model.bert(input_ids=batch.input_ids)[0]
    capacity = int((batch.labels != -100).sum(1).max())
    sparse = fastmask.sparse_mlm_loss(hidden, batch.labels, model.cls, capacity=capacity)
    sparse_grads = torch.autograd.grad(sparse, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(sparse, dense, rtol=1e-12, atol=1e-12)
    for a, b in zip(sparse_grads, dense_grads):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_weights_multiply_token_losses():
    model = tiny_bert()
    batch = masked_batch(seed=1)
    hidden = model.bert(input_ids=batch.input_ids)[0].detach()
    plain = fastmask.sparse_mlm_loss(hidden, batch.labels, model.cls, capacity=6)
    ones = fastmask.sparse_mlm_loss(hidden, batch.labels, model.cls, capacity=6, weights=torch.ones_like(hidden[..., 0]))
    torch.testing.assert_close(ones, plain)
    weights = torch.rand_like(hidden[..., 0])
    weighted = fastmask.sparse_mlm_loss(hidden, batch.labels, model.cls, capacity=6, weights=weights)
    logits = model.cls(hidden)
    token = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), reduction="none")
    labelled = batch.labels.flatten() != -100
    expected = (token * weights.flatten())[labelled].sum() / labelled.sum()
    torch.testing.assert_close(weighted, expected)


def test_training_path_never_syncs():
    """masked_positions -> gather -> head -> loss -> backward with a capacity: no op that reads
    a value back to the host (nonzero, item, boolean indexing) ever runs."""
    model = tiny_bert()
    batch = masked_batch()
    with RecordOps() as recorder:
        hidden = model.bert(input_ids=batch.input_ids)[0]
        fastmask.sparse_mlm_loss(hidden, batch.labels, model.cls, capacity=6).backward()
    assert f"fastmask.gather_masked_{NATIVE}" in recorder.ops and f"fastmask.scatter_masked_{NATIVE}" in recorder.ops
    syncing = {"aten.nonzero", "aten._local_scalar_dense", "aten.masked_select", "aten.item", "aten.index"}
    assert not recorder.ops & syncing, recorder.ops & syncing


# --------------------------------------------------------------------------------------------
# Bad input, opcheck, torch.compile.


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: fastmask.masked_positions(torch.zeros(2, 3), 2), "labels"),
        (lambda: fastmask.masked_positions(torch.zeros(2, 3, dtype=torch.long), 0), "capacity"),
        (lambda: fastmask.gather_masked(torch.zeros(2, 3), torch.zeros(2, 1, dtype=torch.long)), "hidden"),
        (lambda: fastmask.gather_masked(torch.zeros(2, 3, 4, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long)), "hidden"),
        (lambda: fastmask.gather_masked(torch.zeros(2, 3, 4), torch.zeros(2, 1)), "index"),
        (lambda: fastmask.gather_masked(torch.zeros(2, 3, 4), torch.zeros(3, 1, dtype=torch.long)), "index"),
        (lambda: fastmask.sparse_mlm_loss(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), lambda h: h), "labels"),
        (lambda: fastmask.sparse_mlm_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long), lambda h: h,
                                          weights=torch.ones(2, 4)), "weights"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_out_of_range_indices_never_touch_memory():
    """Indices are not checked on the host (no sync); kernels treat them as unused slots."""
    hidden = torch.randn(2, 5, 3, device=DEVICE)
    index = torch.tensor([[4, 99], [-7, 0]], device=DEVICE)
    for backend in [b.values[0] for b in backend_params() if not b.marks]:
        out = library.op("gather_masked", backend)(hidden, index)
        assert torch.equal(out[0, 0], hidden[0, 4]) and (out[0, 1] == 0).all() and (out[1, 0] == 0).all()
        back = library.op("scatter_masked", backend)(out, index, 5)
        assert torch.equal(back[0, 4], hidden[0, 4]) and torch.equal(back[1, 0], out[1, 1])


@pytest.mark.parametrize("backend", op_variant_params())
def test_opcheck(backend):
    g = torch.Generator().manual_seed(3)
    labels = random_labels(3, 17, 0.3, g)
    index = reference.masked_positions(labels, 5)[0]
    hidden = torch.randn(3, 17, 8, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_()
    values = torch.randn(3, 5, 8, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_()
    torch.library.opcheck(library.op("masked_positions", backend), (labels, 5))
    torch.library.opcheck(library.op("gather_masked", backend), (hidden, index))
    torch.library.opcheck(library.op("scatter_masked", backend), (values, index, 17))


def test_torch_compile_fullgraph_forward_and_backward():
    model = tiny_bert()
    batch = masked_batch()

    def loss_fn(input_ids, labels):
        hidden = model.bert(input_ids=input_ids)[0]
        return fastmask.sparse_mlm_loss(hidden, labels, model.cls, capacity=6)

    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    got = compiled(batch.input_ids, batch.labels)
    got.backward()
    compiled_grad = model.cls.predictions.transform.dense.weight.grad.clone()
    model.zero_grad()
    want = loss_fn(batch.input_ids, batch.labels)
    want.backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(compiled_grad, model.cls.predictions.transform.dense.weight.grad)


def test_token_losses_by_position_match_dense_cross_entropy():
    from fastmask.sparse import losses_by_position, sparse_token_losses

    model = tiny_bert()
    batch = masked_batch(seed=2)
    hidden = model.bert(input_ids=batch.input_ids)[0].detach()
    pos = fastmask.masked_positions(batch.labels, 6)
    by_position = losses_by_position(sparse_token_losses(hidden, model.cls, pos), pos, hidden.shape[1])
    dense = torch.nn.functional.cross_entropy(model.cls(hidden).flatten(0, 1), batch.labels.flatten(), reduction="none")
    torch.testing.assert_close(by_position, dense.view(batch.labels.shape))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["auto", "cuda", "triton"])
def test_no_host_sync_on_gpu(backend):
    """masked_positions -> gather -> head -> loss -> backward, and proposal sampling: no sync."""
    g = torch.Generator().manual_seed(4)
    labels = random_labels(64, 128, 0.15, g)
    hidden = torch.randn(64, 128, 32, generator=g).to(DEVICE).requires_grad_()
    head = torch.nn.Linear(32, 50).to(DEVICE)
    labels = torch.where(labels >= 0, labels % 50, labels)
    scores = torch.randn(64, 128, generator=g).to(DEVICE)
    maskable = torch.ones(64, 128, dtype=torch.bool, device=DEVICE)
    ids = torch.randint(5, 50, (64, 128), generator=g).to(DEVICE)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fastmask.sparse_mlm_loss(hidden, labels, head, capacity=40, backend=backend).backward()
        fastmask.proposal_mask(ids, scores, maskable, 4, 50, backend=backend)
        fastmask.proposal_mask(ids, scores, maskable, 4, 50, sampling="poisson", weighting="sequence", backend=backend)
    finally:
        torch.cuda.set_sync_debug_mode("default")
