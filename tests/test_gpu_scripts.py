"""scripts/gpu/: the steps a session lent a GPU runs are valid bash, all.sh runs each of them in
order, and their time limits fit one device call (at most 10 minutes)."""

import glob
import os
import re
import subprocess
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU = os.path.join(ROOT, "scripts", "gpu")
STEPS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(GPU, "0*.sh")))


def test_scripts_parse():
    for path in glob.glob(os.path.join(GPU, "*.sh")) + [os.path.join(ROOT, ".ci", "run")]:
        result = subprocess.run(["bash", "-n", path], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{path}: {result.stderr}"


def test_all_runs_every_step_in_order_within_nine_minutes():
    stages = re.findall(r'"(0\d_\w+) (\d+)"', Path(GPU, "all.sh").read_text())
    assert [name for name, _ in stages] == STEPS
    assert sum(int(limit) for _, limit in stages) <= 9 * 60


def test_readme_lists_every_step():
    readme = Path(GPU, "README.md").read_text()
    for step in STEPS:
        assert f"`{step}.sh`" in readme
