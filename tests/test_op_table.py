"""The op table (fastmask.library.OPS): every op has every part docs/adding-an-op.md lists, and
every entry point rejects the same bad input with a message naming the argument."""

import contextlib
import importlib
import importlib.util
import os
import re
import sys
import types

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from fastmask import library, reference
from conftest import COUNT_DEN, COUNT_NUM, DEVICE, T_MASK, T_RANDOM, T_SELECT, op_variant_params, stream

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = sorted(library.OPS)


def _read(*path) -> str:
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


def _load(path: str):
    """Imports a script of the repository by path (bench scripts import their harness as a sibling)."""
    sys.path.insert(0, os.path.dirname(path))
    try:
        spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.pop(0)


# --------------------------------------------------------------------------------------------
# The checklist of docs/adding-an-op.md, one test per item, over every op of the table.


@pytest.mark.parametrize("name", OPS)
def test_reference_and_triton_kernel(name):
    assert callable(getattr(reference, name, None)), f"fastmask/reference.py has no {name}"
    module = importlib.import_module(f"fastmask.triton.{library.OPS[name].triton_module}")
    assert callable(getattr(module, name, None)), f"{module.__name__} has no {name}"


@pytest.mark.parametrize("name", OPS)
def test_cpp_kernel_and_cuda_binding(name):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fastmask::{name}_cpp", "CPU"), \
        f"no C++ CPU kernel registered for fastmask::{name}_cpp (csrc/cpu/)"
    cuda_dir = os.path.join(ROOT, "csrc", "cuda")
    bindings = "".join(_read("csrc", "cuda", f) for f in os.listdir(cuda_dir) if f.endswith("_cuda.cu"))
    assert f'm.impl("{name}_cuda"' in bindings, f"no CUDA binding registers fastmask::{name}_cuda (csrc/cuda/*_cuda.cu)"


@pytest.mark.parametrize("name", OPS)
def test_cuda_compile_check_instantiates_the_launcher(name):
    # compile_check.cu makes nvcc build every launcher on machines without a CUDA torch.
    assert re.search(rf"\blaunch_{name}\b", _read("csrc", "cuda", "compile_check.cu")), \
        f"csrc/cuda/compile_check.cu does not instantiate launch_{name}"


def test_sanitizer_exercises_every_op():
    exercise = _load(os.path.join(ROOT, "scripts", "exercise_cuda_kernels.py"))
    assert set(exercise.CASES) == set(OPS)


@pytest.mark.parametrize("name", OPS)
def test_benchmark_family_times_the_op(name):
    path = os.path.join(ROOT, "bench", f"bench_{library.OPS[name].bench}.py")
    assert os.path.exists(path), f"no benchmark script {path}"
    assert name in _load(path).OPS, f"{path} does not list {name} in its OPS"


@pytest.mark.parametrize("name", OPS)
def test_readme_lists_the_op(name):
    table = _read("README.md").split("## Ops", 1)[1].split("\n## ", 1)[0]
    assert f"`{name}`" in table, f"README.md's Ops table has no row for {name}"


def test_docs_checklist_names_every_part():
    doc = _read("docs", "adding-an-op.md")
    for part in ("fastmask/library.py", "fastmask/checks.py", "fastmask/reference.py", "fastmask/triton/",
                 "csrc/cpu/", "csrc/cuda/", "compile_check.cu", "exercise_cuda_kernels.py", "bench/", "README.md",
                 "opcheck", "torch.compile"):
        assert part in doc, f"docs/adding-an-op.md does not mention {part}"


# --------------------------------------------------------------------------------------------
# One contract at every entry point: direct calls of each backend's op, and the fake that
# torch.compile traces, reject the same bad input, naming the argument.

IDS = torch.full((2, 6), 9, device=DEVICE)
OK = torch.ones(2, 6, dtype=torch.bool, device=DEVICE)
ROWS = torch.arange(2, device=DEVICE)
SCORES = torch.zeros(2, 6, device=DEVICE)
LABELS = torch.full((2, 6), -100, device=DEVICE)
HIDDEN = torch.zeros(2, 6, 4, device=DEVICE)
INDEX = torch.zeros(2, 3, dtype=torch.long, device=DEVICE)
SPECIALS = torch.tensor([1, 2], device=DEVICE)
SEED, EPOCH = stream(0, 0)

VALID = {
    "maskable_mask": (IDS, OK.long(), SPECIALS),
    "mask_tokens": (IDS, OK, ROWS, SEED, EPOCH, T_SELECT, COUNT_NUM, COUNT_DEN, T_MASK, T_RANDOM, 4, 10, True),
    "fully_explored_mask": (IDS, OK, ROWS, SEED, EPOCH, 3, False, T_MASK, T_RANDOM, 4, 10),
    "masked_positions": (LABELS, 3),
    "gather_masked": (HIDDEN, INDEX),
    "scatter_masked": (HIDDEN[:, :3], INDEX, 6),
    "proposal_mask": (IDS, SCORES, OK, ROWS, SEED, EPOCH, COUNT_NUM, COUNT_DEN, 0.1, 1.0, 2, False, T_MASK,
                      T_RANDOM, 4, 10),
}

# (op, argument position, bad value, the name the error must give, and for a message carrying
# numbers how the compiled kernels' message must end: tests/test_error_messages.py)
BAD = [
    ("maskable_mask", 0, IDS.float(), "input_ids", None),
    ("maskable_mask", 1, OK[:1].long(), "attention_mask", "got [1, 6]"),
    ("maskable_mask", 1, OK.float(), "attention_mask", None),
    ("maskable_mask", 2, SPECIALS[None], "special_ids", "got 2-D"),
    ("mask_tokens", 0, IDS[0], "input_ids", "got 1-D"),
    ("mask_tokens", 1, OK[:, :2], "maskable", "got [2, 2]"),
    ("mask_tokens", 1, OK.long(), "maskable", None),
    ("mask_tokens", 2, ROWS[:1], "row_ids", "must have shape (2,), got [1]"),
    ("mask_tokens", 2, ROWS.int(), "row_ids", None),
    ("mask_tokens", 3, SEED.int(), "seed", None),
    ("mask_tokens", 4, EPOCH[None], "epoch", "got shape [1]"),
    ("fully_explored_mask", 3, SEED.to("meta"), "seed", None),  # neither the inputs' device nor the CPU
    ("proposal_mask", 5, EPOCH.float(), "epoch", None),
    ("mask_tokens", 5, reference.PROB_ONE + 1, "select_threshold", "got 16777217"),
    ("mask_tokens", 6, COUNT_DEN + 1, "count_num", f"got {COUNT_DEN + 1}"),
    ("mask_tokens", 7, 0, "count_den", "got 0"),
    ("mask_tokens", 8, -1, "mask_threshold", "got -1"),
    ("mask_tokens", 9, reference.PROB_ONE, "random_threshold", "got 16777216"),
    ("mask_tokens", 10, 10, "mask_token_id", "got 10"),
    ("mask_tokens", 11, 0, "vocab_size", "got 0"),
    ("fully_explored_mask", 5, 0, "num_segments", "got 0"),
    ("fully_explored_mask", 10, 2**31, "vocab_size", "got 2147483648"),
    ("masked_positions", 0, LABELS[0], "labels", "got 1-D"),
    ("masked_positions", 0, LABELS.int(), "labels", None),
    ("masked_positions", 1, 0, "capacity", "got 0"),
    ("gather_masked", 0, HIDDEN[0], "hidden", "got 2-D"),
    ("gather_masked", 0, HIDDEN.long(), "hidden", None),
    ("gather_masked", 1, INDEX[0], "index", "got 1-D"),
    ("gather_masked", 1, INDEX[:1], "index", "index has batch 1 but hidden has batch 2"),
    ("gather_masked", 1, INDEX.int(), "index", None),
    ("scatter_masked", 1, INDEX[:, :2], "index", "index has capacity 2 but values has 3 slots per row"),
    ("scatter_masked", 2, -1, "length", "got -1"),
    ("proposal_mask", 1, SCORES[:1], "scores", "got [1, 6]"),
    ("proposal_mask", 1, SCORES.long(), "scores", None),
    ("proposal_mask", 7, 0, "count_den", "got 0"),
    ("proposal_mask", 8, 1.5, "uniform_mix", "got 1.5"),
    ("proposal_mask", 9, 0.0, "temperature", "got 0"),
    ("proposal_mask", 10, 3, "sampling", "got 3"),
]
BAD_IDS = [f"{name}-{argument}" for name, _, _, argument, _ in BAD]


def _with(name, position, value):
    args = list(VALID[name])
    args[position] = value
    return tuple(args)


@pytest.mark.parametrize("backend", op_variant_params())
@pytest.mark.parametrize("name", OPS)
def test_valid_arguments_pass_every_entry_point(name, backend):
    library.op(name, backend)(*VALID[name])


@pytest.mark.parametrize("backend", op_variant_params())
@pytest.mark.parametrize("name,position,value,argument,_", BAD, ids=BAD_IDS)
def test_direct_op_calls_reject_bad_input(name, position, value, argument, _, backend):
    with pytest.raises((TypeError, ValueError), match=argument):
        library.op(name, backend)(*_with(name, position, value))


@pytest.mark.parametrize("name,position,value,argument,_", BAD, ids=BAD_IDS)
def test_fake_kernels_reject_bad_input(name, position, value, argument, _):
    """The fakes run the check: torch.compile traces no unchecked call."""
    args = _with(name, position, value)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fake_args = tuple(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args)
        with pytest.raises((TypeError, ValueError), match=argument):
            library.op(name, "reference")(*fake_args)


def test_compiled_direct_call_is_checked():
    torch._dynamo.reset()
    compiled = torch.compile(lambda *a: library.op("mask_tokens", "reference")(*a), backend="aot_eager", fullgraph=True)
    with pytest.raises(Exception, match="count_den"):
        compiled(*_with("mask_tokens", 7, 0))


def test_triton_launches_on_the_inputs_device(monkeypatch):
    """Triton launches on the current CUDA device and its stream: the op makes the inputs' device
    current (inputs on cuda:1 while cuda:0 is current would be an illegal address). A mock, as
    the GPU machines we can borrow have one GPU."""
    current = []
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext(current.append(device)))
    launched = []
    fake_module = types.SimpleNamespace(gather_masked=lambda *args: launched.append(list(current)))
    monkeypatch.setitem(sys.modules, f"fastmask.triton.{library.OPS['gather_masked'].triton_module}", fake_module)
    run = library._triton_kernel(library.OPS["gather_masked"])
    run(types.SimpleNamespace(device=torch.device("cuda", 1)), None)
    run(types.SimpleNamespace(device=torch.device("cpu")), None)  # the interpreter: no CUDA device to set
    assert launched == [[torch.device("cuda", 1)], [torch.device("cuda", 1)]]
