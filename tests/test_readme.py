"""The README's promise: .ci/run runs the README's test command, and the demo command works."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    return re.findall(r"```bash\n(pip install [^\n]+)\n```", text)


def test_ci_runs_the_readme_test_command():
    main_job, test_command = _readme_commands()[:2]
    assert test_command.endswith("python -m pytest") and main_job.endswith("fastmask pretrain")
    ci = open(os.path.join(ROOT, ".ci", "run")).read().splitlines()
    assert test_command in ci


def test_info_and_demo_run():
    info = subprocess.run([sys.executable, "-m", "fastmask", "info"], capture_output=True, text=True, check=True)
    assert "cpu tensors (auto ->" in info.stdout
    demo = subprocess.run(
        [sys.executable, "-m", "fastmask", "demo", "--batch", "8", "--length", "64", "--min-run-time", "0.05"],
        capture_output=True, text=True, check=True,
    )
    assert "[MASK]" in demo.stdout and "faster than the HF collator" in demo.stdout


@pytest.mark.parametrize("script,row", [
    ("bench_masking.py", "| mask_tokens | 32x128 | int64 | hf-collator |"),
    ("bench_gather.py", "| bert_step_tiny | 4x64 | fp32 | sparse-head |"),
    ("bench_proposal.py", "| proposal_topk | 16x128 | float32 | eager-multinomial |"),
])
def test_bench_quick_runs(script, row):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", script), "--quick", "--no-save"],
        capture_output=True, text=True, check=True,
    )
    assert row in out.stdout
