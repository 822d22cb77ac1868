"""fastmask experiment: the variance statistics are right, and both experiments run end to end
and write their JSON, plots and the generated report."""

import json

import pytest
import torch

from fastmask import experiments


def test_total_variance_from_gram_and_bootstrap():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 30, generator=g, dtype=torch.float64)
    b = 2 * torch.randn(40, 30, generator=g, dtype=torch.float64)
    direct = (a - a.mean(0)).pow(2).sum() / 39
    assert experiments._total_variance(a @ a.T, torch.arange(40)) == pytest.approx(direct.item())
    ratio, low, high = experiments._ratio_ci(a, b)
    assert low < ratio < high and low < 0.25 < high  # the true ratio is 1/4


def test_variance_and_convergence_end_to_end(corpus, tmp_path):
    common = ["--corpus", corpus, "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
              "--work", str(tmp_path / "work"), "--doc", str(tmp_path / "docs" / "experiments.md"), "--batch-size", "4"]
    assert experiments.main(["variance", *common, "--repeats", "3", "--pairs", "2", "--train-steps", "4",
                             "--batch", "2"]) == 0
    assert experiments.main(["convergence", *common, "--steps", "4", "--eval-interval", "2", "--seeds", "1"]) == 0
    variance = json.loads((tmp_path / "out" / "variance.json").read_text())
    for state in ("initialisation", "after_training"):
        ratio, low, high = variance[state]["fully_explored_vs_random"]
        assert ratio > 0 and low <= ratio <= high
        assert len(variance[state]["covariance_vs_hamming"]) >= 2
        signal = variance[state]["signal"]
        assert signal["tokens"] >= 2 and 0 < signal["ceiling"] <= 1 and -1 <= signal["signal"][1] <= 1
    convergence = json.loads((tmp_path / "out" / "convergence.json").read_text())
    assert set(convergence["steps_to_target"]) == {"random/0", "fully-explored/0", "mapnet/0"}
    assert (tmp_path / "out" / "covariance_vs_hamming.png").stat().st_size > 5000
    assert (tmp_path / "out" / "convergence.png").stat().st_size > 5000
    doc = (tmp_path / "docs" / "experiments.md").read_text()
    assert "## Gradient variance from the masks" in doc and "## Convergence" in doc
    assert "(../out/convergence.png)" in doc
