"""Compile-time resource budgets (docs/resource-budgets.md, scripts/resource_budgets.py).

The CUDA kernels are recompiled with ptxas -v (the one compile of compile_check.cu in the tests): no
compiler warnings, no spills, no stack frame, registers and static shared
memory within their limits, and the committed table matches. The Triton table takes minutes to
regenerate, so here it is only checked to be current: a fingerprint of fastmask/triton/*.py.
"""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "resource_budgets.py")
_spec = importlib.util.spec_from_file_location("resource_budgets", SCRIPT)
budgets = importlib.util.module_from_spec(_spec)
sys.modules["resource_budgets"] = budgets  # its dataclass looks its module up there
_spec.loader.exec_module(budgets)


@pytest.mark.skipif(budgets.nvcc_path() is None, reason="nvcc not found: the CUDA kernels cannot be compiled here")
def test_cuda_kernels_within_budgets_and_table_current():
    result = subprocess.run([sys.executable, SCRIPT, "--check", "--no-triton"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_triton_table_current():
    recorded = budgets.FINGERPRINT.search(budgets.committed_doc())
    assert recorded is not None, f"{budgets.DOC} has no Triton table: {budgets.REGENERATE}"
    assert recorded.group(1) == budgets.triton_fingerprint(), (
        f"fastmask/triton/*.py changed since the Triton table of {budgets.DOC} was generated: {budgets.REGENERATE}")


def test_ptxas_log_parsing():
    log = """ptxas info    : Compiling entry function '_Z1kILi8EEvPf' for 'sm_90'
ptxas info    : Function properties for _Z1kILi8EEvPf
    8 bytes stack frame, 4 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 128 registers, used 1 barriers, 8 bytes cumulative stack size, 34224 bytes smem
ptxas info    : Compiling entry function '_Z1gv' for 'sm_90'
ptxas info    : Function properties for _Z1gv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 0 barriers, 360 bytes cmem[0]
"""
    usages = budgets.parse_ptxas_log(log)
    assert usages["_Z1kILi8EEvPf"] == budgets.Usage("_Z1kILi8EEvPf", 128, 8, 4, 8, 34224)
    assert usages["_Z1gv"] == budgets.Usage("_Z1gv", 12, 0, 0, 0, 0)
    assert budgets.cuda_violations(list(usages.values())) == [
        "_Z1kILi8EEvPf: 4 B spill stores, 8 B spill loads", "_Z1kILi8EEvPf: 8 B stack frame"]
    assert budgets.readable_name("void fastmask::kernels::k<long, (f)(1)>(long const*, int)") == "k<long, (f)(1)>"
