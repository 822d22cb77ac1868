"""fastmask.linear_cross_entropy: the vocabulary head's decoder and cross-entropy fused, by chunks.

Every backend against float64 F.cross_entropy on the materialised logits (values and every
gradient), within a tolerance table per dtype; ignored rows, importance weights, z-loss, chunk
sizes that divide neither N nor the Triton tile; memory (no (N, V) tensor saved or held), no host
sync, opcheck and torch.compile; the fused head in sparse_mlm_loss and the strategy layer.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmask
from fastmask import library, reference
from fastmask.sparse import VocabularyHead, vocabulary_head
from conftest import DEVICE, NATIVE, RecordOps, op_variant_params

# Relative tolerance (of the largest magnitude) against float64, per input dtype: losses, gradients.
TOLERANCE = {torch.float64: (1e-12, 1e-12), torch.float32: (1e-5, 1e-5), torch.bfloat16: (2e-2, 3e-2)}
SYNCING = {"aten.nonzero", "aten._local_scalar_dense", "aten.masked_select", "aten.item", "aten.index"}


def head_inputs(n=37, width=16, vocab=53, dtype=torch.float32, seed=0, ignored=0.25):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, width, generator=g).to(DEVICE, dtype)
    weight = (torch.randn(vocab, width, generator=g) / width**0.5).to(DEVICE, dtype)
    bias = torch.randn(vocab, generator=g).to(DEVICE, dtype)
    labels = torch.randint(0, vocab, (n,), generator=g)
    labels[torch.rand(n, generator=g) < ignored] = reference.IGNORE_INDEX
    weights = torch.rand(n, generator=g).to(DEVICE)
    return hidden, weight, bias, labels.to(DEVICE), weights


def expected_loss(hidden, weight, bias, labels, weights, z_loss, reduction):
    """The specification in float64: F.cross_entropy on the materialised logits, plus the z-loss."""
    logits = hidden.double() @ weight.double().T + (0 if bias is None else bias.double())
    token = F.cross_entropy(logits, labels, reduction="none", ignore_index=reference.IGNORE_INDEX)
    labelled = labels != reference.IGNORE_INDEX
    token = token + torch.where(labelled, z_loss * torch.logsumexp(logits, 1) ** 2, 0)
    if weights is not None:
        token = token * weights.double()
    if reduction == "none":
        return token
    return token.sum() / (labelled.sum().clamp(min=1) if reduction == "mean" else 1)


def assert_relative(got, want, rtol, what):
    scale = want.abs().max().clamp(min=1e-30) if want.numel() else 1
    err = (got.double() - want).abs().max() / scale if want.numel() else 0
    assert err <= rtol, f"{what}: relative error {float(err):.2e} > {rtol:.0e}"


def check_against_float64(backend, dtype, reduction, z_loss=1e-3, with_bias=True, with_weights=True, chunk_size=10,
                          **shape):
    hidden, weight, bias, labels, weights = head_inputs(dtype=dtype, **shape)
    bias = bias if with_bias else None
    weights = weights if with_weights else None
    leaves = [t.requires_grad_() for t in (hidden, weight, bias, weights) if t is not None]
    got = fastmask.linear_cross_entropy(hidden, weight, labels, bias=bias, weights=weights, z_loss=z_loss,
                                        reduction=reduction, chunk_size=chunk_size, backend=backend)
    assert got.dtype == reference.accumulation_dtype(dtype)
    upstream = torch.linspace(0.5, 1.5, got.numel(), device=DEVICE).view(got.shape)  # "none": a non-uniform grad
    grads = torch.autograd.grad((got * upstream.to(got.dtype)).sum(), leaves)
    doubles = [t.detach().double().requires_grad_() for t in leaves]
    it = iter(doubles)
    h, w = next(it), next(it)
    b = next(it) if with_bias else None
    wt = next(it) if with_weights else None
    want = expected_loss(h, w, b, labels, wt, z_loss, reduction)
    want_grads = torch.autograd.grad((want * upstream.double()).sum(), doubles)
    loss_tol, grad_tol = TOLERANCE[dtype]
    assert_relative(got, want, loss_tol, "loss")
    for name, a, e in zip(("hidden", "weight", "bias", "weights"), grads, want_grads):
        assert a.dtype == (torch.float32 if name == "weights" else dtype) and a.shape == e.shape
        assert_relative(a, e, grad_tol, f"grad of {name}")


@pytest.mark.parametrize("backend", op_variant_params())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_values_and_gradients_match_float64_cross_entropy(backend, reduction, dtype):
    if dtype == torch.float64 or dtype == torch.bfloat16:  # weights carried in float32 would cap float64's match
        check_against_float64(backend, dtype, reduction, with_weights=False)
    else:
        check_against_float64(backend, dtype, reduction)


@pytest.mark.parametrize("backend", op_variant_params())
def test_float64_weights_and_no_bias(backend):
    check_against_float64(backend, torch.float32, "mean", with_bias=False, z_loss=0.0, chunk_size=1)
    check_against_float64(backend, torch.float32, "sum", with_bias=False, chunk_size=100)  # one chunk > N


@pytest.mark.parametrize("backend", op_variant_params())
def test_vocabulary_of_several_triton_tiles(backend):
    """V = 2,500: three 1,024-wide tiles, the last partial (the online logsumexp across tiles)."""
    check_against_float64(backend, torch.float32, "mean", n=6, vocab=2500, chunk_size=4)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(0, 40), width=st.integers(1, 12), vocab=st.integers(1, 70), chunk=st.integers(1, 50),
       ignored=st.floats(0, 1), z_loss=st.sampled_from([0.0, 1e-4, 0.1]), seed=st.integers(0, 2**16))
def test_random_shapes_match_the_reference(n, width, vocab, chunk, ignored, z_loss, seed):
    """The compiled kernel against the reference op, every output, on random shapes and arguments."""
    hidden, weight, bias, labels, weights = head_inputs(n, width, vocab, torch.float64, seed, ignored)
    scale = weights.double()
    for bias_arg in (bias, None):
        args = (hidden, weight, bias_arg, labels, scale, reference.IGNORE_INDEX, z_loss, chunk)
        got = library.op("linear_cross_entropy", NATIVE)(*args)
        want = library.op("linear_cross_entropy", "reference")(*args)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", op_variant_params())
def test_ignored_rows_contribute_nothing_and_out_of_range_labels_give_nan(backend):
    hidden, weight, bias, labels, _ = head_inputs(n=6)
    labels = torch.tensor([reference.IGNORE_INDEX, 3, reference.IGNORE_INDEX, 53, -7, 0], device=DEVICE)
    scale = torch.ones(6, device=DEVICE)
    losses, grad_hidden, _, _ = library.op("linear_cross_entropy", backend)(
        hidden, weight, bias, labels, scale, reference.IGNORE_INDEX, 0.0, 4)
    assert losses[0] == 0 and losses[2] == 0 and (grad_hidden[[0, 2]] == 0).all()
    assert losses[3].isnan() and losses[4].isnan() and grad_hidden[3].isnan().all()  # V = 53: label 53 is outside
    assert losses[[1, 5]].isfinite().all()


@pytest.mark.parametrize("backend", op_variant_params())
def test_no_rows_and_no_labelled_rows_give_zero(backend):
    hidden, weight, bias, labels, _ = head_inputs(n=0)
    hidden.requires_grad_()
    loss = fastmask.linear_cross_entropy(hidden, weight, labels, bias=bias, backend=backend)
    loss.backward()
    assert loss == 0 and hidden.grad.shape == (0, 16)
    hidden, weight, bias, labels, _ = head_inputs(n=5, ignored=1.0)
    weight.requires_grad_()
    loss = fastmask.linear_cross_entropy(hidden, weight, labels, bias=bias, backend=backend)  # F.cross_entropy: NaN
    loss.backward()
    assert loss == 0 and (weight.grad == 0).all()


def test_deterministic_across_calls():
    hidden, weight, bias, labels, _ = head_inputs(n=64, vocab=300)
    args = (hidden, weight, bias, labels, torch.rand(64, device=DEVICE), reference.IGNORE_INDEX, 1e-4, 7)
    first = library.op("linear_cross_entropy", NATIVE)(*args)
    for a, b in zip(first, library.op("linear_cross_entropy", NATIVE)(*args)):
        assert torch.equal(a, b)


def test_forward_holds_no_logits_and_backward_recomputes_nothing():
    """Saved for backward: the gradients (N·H + V·H + V) and per-row values, never an (N, V) tensor;
    and every linear_cross_entropy call happens in the forward (mean/sum)."""
    n, vocab, width = 64, 4000, 8
    hidden, weight, bias, labels, _ = head_inputs(n=n, vocab=vocab, width=width)
    leaves = [t.requires_grad_() for t in (hidden, weight, bias)]
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fastmask.linear_cross_entropy(hidden, weight, labels, bias=bias, chunk_size=16)
    assert max(saved) < n * vocab / 4, saved
    with RecordOps() as recorder:
        loss.backward()
    assert not any("linear_cross_entropy" in op for op in recorder.ops), recorder.ops
    assert all(t.grad is not None for t in leaves)


def test_no_host_sync_in_forward_and_backward():
    hidden, weight, bias, labels, weights = head_inputs()
    for t in (hidden, weight, bias, weights):
        t.requires_grad_()
    with RecordOps() as recorder:
        for reduction in ("mean", "none"):
            fastmask.linear_cross_entropy(hidden, weight, labels, bias=bias, weights=weights,
                                          reduction=reduction).sum().backward()
    assert f"fastmask.linear_cross_entropy_{NATIVE}" in recorder.ops
    assert not recorder.ops & SYNCING, recorder.ops & SYNCING


@pytest.mark.parametrize("backend", op_variant_params())
def test_opcheck(backend):
    hidden, weight, bias, labels, weights = head_inputs(n=9, vocab=11, dtype=torch.float64)
    op = library.op("linear_cross_entropy", backend)
    torch.library.opcheck(op, (hidden, weight, bias, labels, weights.double(), reference.IGNORE_INDEX, 1e-3, 4))
    torch.library.opcheck(op, (hidden, weight, None, labels, None, reference.IGNORE_INDEX, 0.0, 20))


def test_torch_compile_fullgraph_forward_and_backward():
    hidden, weight, bias, labels, weights = head_inputs()

    def loss_fn(hidden, weight, bias):
        return fastmask.linear_cross_entropy(hidden, weight, labels, bias=bias, weights=weights, chunk_size=8)

    torch._dynamo.reset()
    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    results = []
    for fn in (compiled, loss_fn):
        leaves = [t.detach().clone().requires_grad_() for t in (hidden, weight, bias)]
        loss = fn(*leaves)
        results.append((loss, torch.autograd.grad(loss, leaves)))
    (got, got_grads), (want, want_grads) = results
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b)


def test_autocast_runs_the_head_in_the_autocast_dtype():
    hidden, weight, bias, labels, _ = head_inputs()
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        loss = fastmask.linear_cross_entropy(hidden, weight.requires_grad_(), labels, bias=bias)
    loss.backward()
    assert loss.dtype == torch.float32 and weight.grad.dtype == torch.float32
    want = expected_loss(hidden.bfloat16(), weight.bfloat16(), bias.bfloat16(), labels, None, 0.0, "mean")
    assert_relative(loss, want, TOLERANCE[torch.bfloat16][0], "loss")


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda a: fastmask.linear_cross_entropy(a[0], a[1], a[3], reduction="avg"), "reduction"),
        (lambda a: fastmask.linear_cross_entropy(a[0], a[1], a[3], weights=a[4][:3]), "weights"),
        (lambda a: fastmask.linear_cross_entropy(a[0], a[1], a[3], weights=a[4].long()), "weights"),
        (lambda a: fastmask.linear_cross_entropy(a[0], a[1].double(), a[3]), "weight"),
        (lambda a: fastmask.linear_cross_entropy(a[0], a[1], a[3], chunk_size=0), "chunk_size"),
        (lambda a: fastmask.linear_cross_entropy(a[0], a[1], a[3], z_loss=float("nan")), "z_loss"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(head_inputs())


# --------------------------------------------------------------------------------------------
# The fused head where the head runs.


def tiny_bert():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(vocab_size=101, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    return BertForMaskedLM(config).double().eval()


def test_sparse_mlm_loss_fused_equals_unfused():
    model = tiny_bert()
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 20, 16, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 101, (3, 20), generator=g)
    labels[torch.rand(3, 20, generator=g) < 0.7] = reference.IGNORE_INDEX
    weights = torch.rand(3, 20, generator=g, dtype=torch.float64)
    results = []
    for fused in (False, True):
        model.zero_grad()
        loss = fastmask.sparse_mlm_loss(hidden, labels, model.cls, capacity=12, weights=weights, fused=fused)
        loss.backward()
        results.append((loss, [p.grad.clone() for p in model.cls.parameters()]))
    (plain, plain_grads), (fused, fused_grads) = results
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
    for a, b in zip(fused_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_vocabulary_head_splits_known_heads_only():
    model = tiny_bert()
    split = vocabulary_head(model.cls)
    assert split.decoder is model.cls.predictions.decoder and split.transform is model.cls.predictions.transform
    linear = torch.nn.Linear(4, 9)
    assert vocabulary_head(linear).decoder is linear and vocabulary_head(VocabularyHead(abs, linear)).transform is abs
    assert vocabulary_head(lambda h: h) is None
    with pytest.raises(ValueError, match="head"):
        fastmask.sparse_mlm_loss(torch.zeros(1, 2, 4), torch.zeros(1, 2, dtype=torch.long), lambda h: h, fused=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_no_host_sync_on_gpu(backend):
    hidden, weight, bias, labels, weights = head_inputs(n=512, vocab=30522, width=64)
    for t in (hidden, weight, bias):
        t.requires_grad_()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for reduction in ("mean", "none"):
            fastmask.linear_cross_entropy(hidden, weight, labels, bias=bias, weights=weights, reduction=reduction,
                                          backend=backend).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
