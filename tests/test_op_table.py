"""The op table (fastmask.library.OPS): every op has every part docs/adding-an-op.md lists, its
record every field the rest of the project reads (summary, wrapper, example arguments, bad cases,
sanitizer cases, benchmark family), and every entry point rejects the same bad input with a
message naming the argument."""

import contextlib
import dataclasses
import importlib
import importlib.util
import os
import re
import sys
import types

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import fastmask
from fastmask import backends, cli, library, ops, reference
from conftest import DEVICE, op_variant_params

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


@pytest.mark.parametrize("ranked", [True, False], ids=["ranked", "unranked"])
@pytest.mark.parametrize("name", OPS)
def test_sanitizer_cases_exercise_the_op(name, ranked):
    """scripts/exercise_cuda_kernels.py runs each op's sanitizer cases: some at every length, each a
    valid argument tuple of the schema; none where ranking does not fit, for an op that always ranks."""
    generator = torch.Generator().manual_seed(0)
    spec = library.OPS[name]
    for length in (1, 37):
        cases = spec.sanitizer_cases(length, torch.device("cpu"), generator, ranked)
        if spec.always_ranks and not ranked:
            assert not cases, f"{name} always ranks its rows, but has a sanitizer case for unranked lengths"
            continue
        assert cases, f"{name} has no sanitizer case at length {length} (ranked: {ranked})"
        for args in cases:
            assert len(args) == len(library.argument_names(name)), f"{name}: a sanitizer case of {len(args)} arguments"
            library.OPS[name].check(*args)


def test_sanitizer_script_runs_every_op(capsys):
    """The script runs the table's cases (here: Triton on CPU tensors, under the interpreter)."""
    reason = backends.why_unavailable("triton", "cpu")
    if reason:
        pytest.skip(reason)
    _load(os.path.join(ROOT, "scripts", "exercise_cuda_kernels.py")).main(
        ["--backend", "triton", "--device", "cpu", "--lengths", "5"])
    assert "all triton kernels ran and matched the reference" in capsys.readouterr().out


@pytest.mark.parametrize("name", OPS)
def test_benchmark_family_times_the_op(name):
    family = library.OPS[name].bench
    assert family in cli.BENCH_FAMILIES, f"fastmask bench does not run {name}'s family {family}"
    path = os.path.join(ROOT, "bench", library.bench_script(family))
    assert os.path.exists(path), f"no benchmark script {path}"
    source = _read(path)
    # The script calls the op: through its public wrapper, or by name through the table.
    assert re.search(rf'fastmask\.{name}\(|library\.call\("{name}"', source), f"{path} does not time {name}"


@pytest.mark.parametrize("name", OPS)
def test_summary_is_one_line(name):
    summary = library.OPS[name].summary
    assert summary.strip() and "\n" not in summary and "|" not in summary, f"{name}'s summary: {summary!r}"


def test_readme_ops_table_is_generated_from_the_table():
    """The committed README holds the table scripts/readme_ops_table.py writes: one row per op."""
    readme = _read("README.md")
    script = _load(os.path.join(ROOT, "scripts", "readme_ops_table.py"))
    assert script.with_ops_table(readme) == readme, "README.md's Ops table is stale: run scripts/readme_ops_table.py"
    table = readme.split("## Ops", 1)[1].split("\n## ", 1)[0]
    for name in OPS:
        assert f"| `{name}` |" in table, f"README.md's Ops table has no row for {name}"


@pytest.mark.parametrize("name", OPS)
def test_public_wrapper_is_exported(name):
    if library.OPS[name].wrapper:
        assert callable(getattr(ops, name, None)), f"fastmask/ops.py has no wrapper {name}"
        assert name in fastmask.__all__ and getattr(fastmask, name) is getattr(ops, name), f"fastmask does not export {name}"
    else:
        assert name not in fastmask.__all__ and not hasattr(fastmask, name)


def test_exports_are_defined():
    assert len(set(fastmask.__all__)) == len(fastmask.__all__)
    for export in fastmask.__all__:
        assert hasattr(fastmask, export), f"fastmask.__all__ names {export}, which fastmask lacks"


@pytest.mark.parametrize("name", OPS)
def test_example_and_bad_cases(name):
    spec = library.OPS[name]
    assert len(spec.example(torch.device("cpu"))) == len(library.argument_names(name)), f"{name}'s example"
    assert spec.bad, f"{name} has no bad cases"
    for case in spec.bad:
        assert case.argument in library.argument_names(name), f"{name} has no argument {case.argument}"


def test_docs_checklist_names_every_part():
    doc = _read("docs", "adding-an-op.md")
    for part in ("fastmask/library.py", "fastmask/checks.py", "fastmask/reference.py", "fastmask/triton/",
                 "fastmask/ops.py", "csrc/cpu/", "csrc/cuda/", "csrc/binding/", "compile_check.cu", "sanitizer_cases",
                 "bench/", "readme_ops_table.py", "opcheck", "torch.compile"):
        assert part in doc, f"docs/adding-an-op.md does not mention {part}"
    for field in dataclasses.fields(library.OpSpec):
        assert f"`{field.name}`" in doc, f"docs/adding-an-op.md does not describe OpSpec.{field.name}"


# --------------------------------------------------------------------------------------------
# One contract at every entry point: direct calls of each backend's op, and the fake that
# torch.compile traces, reject the same bad input, naming the argument.

VALID = {name: spec.example(DEVICE) for name, spec in library.OPS.items()}
# (op, argument position, bad value, the name the error must give, and for a message carrying
# numbers how the compiled kernels' message must end: tests/test_error_messages.py), from the table
BAD = [(name, position, args[position], case.argument, case.tail)
       for name, position, case, args in library.bad_calls(DEVICE)]
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
