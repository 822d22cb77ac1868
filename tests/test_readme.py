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


def test_the_hf_extra_brings_what_the_readmes_hf_examples_need():
    """The README's Hugging Face examples run the Trainer and accelerate, which need accelerate (at
    transformers' minimum): the `hf` extra brings it, the README says so where the examples are,
    and the test extra (what CI installs) takes the hf extra."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    from packaging.requirements import Requirement
    from packaging.version import Version
    from transformers.utils.import_utils import ACCELERATE_MIN_VERSION

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    (accelerate,) = [r for r in map(Requirement, extras["hf"]) if r.name == "accelerate"]
    floors = [Version(s.version) for s in accelerate.specifier if s.operator == ">="]
    assert floors and min(floors) >= Version(ACCELERATE_MIN_VERSION), accelerate
    (itself,) = [r for r in map(Requirement, extras["test"]) if r.name == "fastmask"]
    assert {"hf", "datasets"} <= itself.extras  # the Trainer tests; the parquet and datasets-folder tests
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("## Use fastmask in your own trainer")[1].split("\n## ")[0]
    assert re.search(r"pip install [^`]*-e \"\.\[hf\]\"", section), "the README's HF section names no install"


def test_info_and_demo_run():
    info = subprocess.run([sys.executable, "-m", "fastmask", "info"], capture_output=True, text=True, check=True)
    assert "cpu tensors (auto ->" in info.stdout
    demo = subprocess.run(
        [sys.executable, "-m", "fastmask", "demo", "--batch", "8", "--length", "64", "--min-run-time", "0.05"],
        capture_output=True, text=True, check=True,
    )
    assert "[MASK]" in demo.stdout and "faster than the HF collator" in demo.stdout
    from fastmask.strategy import STRATEGIES

    shown = re.findall(r"^(\S+) \(.*:$", demo.stdout, re.M)  # a heading per masked sentence
    assert set(shown) == set(STRATEGIES), shown  # the README: "a sentence masked by each strategy"


def test_help_is_plain_text(capsys):
    """--help screens are read in a terminal: no reST markup from the docstrings they come from."""
    from fastmask import cli

    for argv in ([], ["info"], ["demo"], ["bench"], ["pretrain"], ["prepare"], ["experiment"], ["experiment", "variance"],
                 ["experiment", "convergence"]):
        with pytest.raises(SystemExit):
            cli.main([*argv, "--help"])
        text = capsys.readouterr().out
        assert "usage: fastmask" in text and "``" not in text and ":func:" not in text and ":mod:" not in text, argv


def test_bench_quick_runs_every_family(tmp_path):
    """`fastmask bench --quick` (the CPU smoke run) covers every op family, so the suite never rots."""
    out = subprocess.run([sys.executable, "-m", "fastmask", "bench", "--quick"],
                         capture_output=True, text=True, check=True)
    for row in ("| mask_tokens | 32x128 | int64 | hf-collator |", "| fully_explored_k7 | 32x128 | int64 | reference |",
                "| gather | 8x128x64 | float32 | index-select |", "| proposal_topk | 32x128 | float32 | eager-multinomial |",
                "| bert_step_tiny | 4x64 | fp32 | sparse-head |", "| collator_call | 32x126 | int64 | hf-collator-call |"):
        assert row in out.stdout


def test_report_and_plots_from_results(tmp_path):
    """report.py and plot.py turn result rows into RESULTS.md and PNGs (run on a copy of bench/)."""
    import shutil

    bench = tmp_path / "bench"
    shutil.copytree(os.path.join(ROOT, "bench"), bench, ignore=shutil.ignore_patterns("results", "plots", "RESULTS.md"))
    subprocess.run([sys.executable, str(bench / "bench_masking.py"), "--quick"], check=True, capture_output=True)
    assert not (bench / "results").exists()  # saving is opt-in
    subprocess.run([sys.executable, str(bench / "bench_masking.py"), "--quick", "--save"], check=True,
                   capture_output=True)
    subprocess.run([sys.executable, str(bench / "report.py")], check=True, capture_output=True)
    assert "mask_tokens" not in (bench / "RESULTS.md").read_text()  # smoke-test rows are never reported
    (results,) = (bench / "results").iterdir()
    results.write_text(results.read_text().replace('"quick": true', '"quick": false'))  # as a full run's rows
    subprocess.run([sys.executable, str(bench / "report.py")], check=True, capture_output=True)
    subprocess.run([sys.executable, str(bench / "plot.py")], check=True, capture_output=True)
    assert "| mask_tokens | 32x128 | int64 | cpp |" in (bench / "RESULTS.md").read_text()
    assert (bench / "plots" / "masking-cpu.png").stat().st_size > 5000
    assert (bench / "plots" / "masking-cpu-speedup.png").stat().st_size > 5000
