"""scripts/gpu/: the kit a session lent a GPU runs. Its steps are valid bash, all.sh runs each in
order within one device call (9 minutes), and the whole kit runs on this CPU as a dry run
(FASTMASK_GPU_DRY_RUN=1: every step's command, time limit and result files), whose results
publish.py turns into rows, tables, plots, a session report and the README block in a scratch
folder, so that the first GPU minute is never spent on a script error."""

import glob
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU = os.path.join(ROOT, "scripts", "gpu")
STEPS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(GPU, "0*.sh")))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, GPU)
import harness  # noqa: E402
import publish  # noqa: E402


def kit():
    """(step, limit) in all.sh's order, and its default budget."""
    text = Path(GPU, "all.sh").read_text()
    table = re.search(r'KIT="(.*?)"', text, re.S).group(1)
    budget = int(re.search(r"KIT_BUDGET:-(\d+)", text).group(1))
    return [(name, int(limit)) for name, limit in (line.split() for line in table.splitlines())], budget


def test_scripts_parse():
    for path in glob.glob(os.path.join(GPU, "*.sh")) + [os.path.join(ROOT, ".ci", "run")]:
        result = subprocess.run(["bash", "-n", path], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{path}: {result.stderr}"


def test_all_runs_every_step_in_order_within_nine_minutes():
    steps, budget = kit()
    assert [name for name, _ in steps] == STEPS
    assert budget <= 9 * 60
    # The figures first: build, check, headline, bench and the sync checks fill the budget at their
    # limits; the op tests and compute-sanitizer run on what they leave (the second call's plan).
    assert [name for name, _ in steps[:5]] == ["01_build", "02_check_cuda_build", "03_headline", "04_bench",
                                               "05_sync_debug"]
    assert sum(limit for _, limit in steps[:5]) <= budget


def test_readme_lists_every_step_and_the_second_call():
    readme = Path(GPU, "README.md").read_text()
    for step in STEPS:
        assert f"`{step}.sh`" in readme
    assert "all.sh --pack \"$OUT\" /tmp/gpu-results 01_build 06_op_tests 07_sanitizer" in readme


def test_gpu_profile_is_realistic_and_reported():
    gpu = harness.PROFILES["gpu"]
    assert not gpu.quick  # its rows are reported
    token_shapes = harness.sizes(torch.device("cuda"), gpu)
    assert {(256, 512), (1024, 512)} <= set(token_shapes) and sum(length == 8192 for _, length in token_shapes) == 1


def test_compiled_reference_compiles_once_per_op_with_dynamic_shapes(monkeypatch):
    import fastmask

    compiled = []

    def fake_compile(fn, dynamic=None):
        compiled.append((fn.__name__, dynamic))
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(harness, "_COMPILED", {})
    for batch, length in ((2, 16), (3, 40)):  # each shape of a family: a new contender, the same compiled function
        ids, maskable = harness.make_inputs(batch, length, torch.device("cpu"))
        contender = harness.CompiledReference(lambda i, m, backend: fastmask.maskable_mask(i, m, backend=backend))
        assert set(contender.prepare(ids, maskable)) == {"compile_s", "new_graph"}
        torch.testing.assert_close(contender(ids, maskable), fastmask.maskable_mask(ids, maskable, backend="reference"))
    assert compiled == [("maskable_mask", True)]


def test_a_spent_budget_keeps_the_rows_measured(tmp_path, capsys):
    def collect(device, profile):
        for i in range(3):
            harness.check_budget(f"row {i}")
            yield harness.make_row("op", "1x1", torch.int64, f"b{i}", (1.0, 1.0, 1.0), None, device)
            harness.set_budget(-1)  # spent after the first row

    harness.run("fake", "", collect, (), ["--device", "cpu", "--results-dir", str(tmp_path), "--budget", "100"])
    assert "the --budget was spent before row 1" in capsys.readouterr().err
    (saved,) = tmp_path.iterdir()
    assert [json.loads(line)["backend"] for line in saved.read_text().splitlines()] == ["b0"]


def test_a_failing_contender_costs_only_its_own_row(tmp_path, capsys):
    def broken():
        raise RuntimeError("inductor could not compile this")

    def collect(device, profile):
        yield from harness.time_contenders("op", "1x1", torch.int64, {"broken": broken, "fine": lambda: None}, [()],
                                           None, device, profile)

    assert harness.run("fake", "", collect, (), ["--device", "cpu", "--quick", "--results-dir", str(tmp_path)]) == 1
    assert "op 1x1 int64 broken: RuntimeError: inductor could not compile this" in capsys.readouterr().err
    (saved,) = tmp_path.iterdir()
    assert [json.loads(line)["backend"] for line in saved.read_text().splitlines()] == ["fine"]


def test_session_reports_are_never_overwritten(tmp_path):
    first = publish.session_path(str(tmp_path), "2031-01-01", "nvidia-h200")
    assert first.endswith(os.path.join("docs", "gpu-sessions", "2031-01-01-nvidia-h200.md"))
    os.makedirs(os.path.dirname(first))
    Path(first).write_text("another session's report")
    assert publish.session_path(str(tmp_path), "2031-01-01", "nvidia-h200").endswith("2031-01-01-nvidia-h200-2.md")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """The whole kit, rehearsed on this CPU: (the results folder, the packed folder, all.sh's output)."""
    base = tmp_path_factory.mktemp("kit")
    env = dict(os.environ, FASTMASK_GPU_DRY_RUN="1", PYTHON=sys.executable, KIT_WORK=str(base / "work"),
               FASTMASK_CACHE=str(base / "cache"))
    done = subprocess.run(["bash", os.path.join(GPU, "all.sh"), "--pack", str(base / "out"), str(base / "results")],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    return base / "results", base / "out", done


def test_dry_run_makes_every_step_and_its_result_files(dry_run):
    results, out, done = dry_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = [line.split("\t") for line in (results / "steps.tsv").read_text().splitlines()]
    assert [(s[0], s[1]) for s in steps] == [(step, "ok") for step in STEPS]
    checks = [line.split("\t") for line in (results / "checks.tsv").read_text().splitlines()]
    assert [c[0] for c in checks] == ["toolchain", "build", "linkage", "info", "check_cuda_build", "headline", "bench",
                                      "graph-replay", "pretrain-eager", "pretrain-compile", "op-tests", "sanitizer"]
    assert all(c[1] in ("ok", "dry run") for c in checks)
    assert all((results / f"{c[0]}.log").exists() for c in checks if c[0] != "toolchain")  # that one: toolchain.txt
    # The toolchain is recorded before the build: the link environment, sysconfig, where g++ finds libstdc++.
    toolchain = (results / "toolchain.txt").read_text()
    for key in ("CXX=", "CC=", "LDFLAGS=", "CFLAGS=", "CXXFLAGS=", "LIBRARY_PATH=", "LD_LIBRARY_PATH=", "CPATH=",
                "LDSHARED=", "-print-file-name=libstdc++.so:", "-print-file-name=libstdc++.a:"):
        assert key in toolchain
    assert "NEEDED" in (results / "linkage.log").read_text()
    kit_record = json.loads((results / "kit.json").read_text())
    assert kit_record["dry_run"] is True and json.loads((results / "environment.json").read_text())["torch"]
    assert all(r["ok"] for r in json.loads((results / "graph_replay.json").read_text()))
    rows = {p.name: [json.loads(line) for line in p.read_text().splitlines()] for p in (results / "bench").iterdir()}
    assert {"headline-cpu.jsonl", "masking-cpu.jsonl", "gather-cpu.jsonl", "proposal-cpu.jsonl",
            "fully-explored-cpu.jsonl"} <= set(rows)
    headline = {r["backend"] for r in rows["headline-cpu.jsonl"]}
    assert headline == {"fastmask", "fastmask-compile", "hf-pretrain", "apply_fastmask", "hf-trainer-step"}
    assert all(r["metrics"]["tokens_per_s"] > 0 for r in rows["headline-cpu.jsonl"])
    # What a device call brings back: at most 8 files. The pack is two, the tarball all of the results.
    assert sorted(p.name for p in out.iterdir()) == ["gpu-results.tar.gz", "summary.txt"]
    with tarfile.open(out / "gpu-results.tar.gz") as tar:
        names = tar.getnames()
    assert "results/summary.txt" in names and "results/bench/headline-cpu.jsonl" in names
    assert not [n for n in names if n.endswith(".pt")]  # checkpoints stay in KIT_WORK


def test_dry_run_publishes_into_scratch_only(dry_run, tmp_path):
    results, out, _ = dry_run
    refused = subprocess.run([sys.executable, os.path.join(GPU, "publish.py"), str(results)], capture_output=True,
                             text=True, check=False)
    assert refused.returncode == 1 and "dry run" in refused.stderr
    scratch = tmp_path / "scratch"
    done = subprocess.run([sys.executable, os.path.join(GPU, "publish.py"), str(out / "gpu-results.tar.gz"),
                           "--out", str(scratch)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    table = (scratch / "bench" / "RESULTS.md").read_text()
    assert "| pretrain_step_tiny | 4x64 | fp32 | fastmask |" in table and "tokens_per_s" in table
    assert (scratch / "bench" / "plots" / "masking-cpu.png").stat().st_size > 5000
    (doc,) = (scratch / "docs" / "gpu-sessions").iterdir()
    report = doc.read_text()
    assert doc.name.endswith("-dry-run.md") and "DRY RUN" in report
    for part in ("| 04_bench | ok |", "| pretrain-compile | ok |", "2.", "vs hf-pretrain", "vs hf-trainer-step",
                 "libstdc++ among the extension's NEEDED libraries: yes", "| cpp | False | True | True |"):
        assert part in report
    # README: only the gpu-results block changes, and it quotes the headline and links the report.
    tree, new = Path(ROOT, "README.md").read_text(), (scratch / "README.md").read_text()
    outside = re.compile(re.escape(publish.README_START) + ".*?" + re.escape(publish.README_END), re.S)
    assert outside.sub("", tree) == outside.sub("", new)
    assert f"docs/gpu-sessions/{doc.name}" in new and "x vs hf-pretrain" in new
    # The tree is untouched: its results and reports are as they were.
    assert not Path(ROOT, "docs", "gpu-sessions", doc.name).exists()
