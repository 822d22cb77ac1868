"""fastmask experiment: the statistics are right, and both experiments run end to end (tiny sizes)
and write their JSON, plots and the generated report."""

import json
import math

import pytest
import torch

from fastmask import experiments
from fastmask.experiments import common


def test_total_variance_from_gram_and_bootstrap():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 30, generator=g, dtype=torch.float64)
    b = 2 * torch.randn(40, 30, generator=g, dtype=torch.float64)
    direct = (a - a.mean(0)).pow(2).sum() / 39
    assert common.total_variance(a @ a.T, torch.arange(40)) == pytest.approx(direct.item())
    ratio, low, high = common.ratio_ci(a, b)
    assert low < ratio < high and low < 0.25 < high  # the true ratio is 1/4


def test_geometric_interval_and_correlations():
    mean, low, high = common.geometric_ci([0.5, 0.5, 0.5])
    assert mean == pytest.approx(0.5) and low == pytest.approx(0.5) and high == pytest.approx(0.5)
    mean, low, high = common.geometric_ci([1.0, 4.0])
    assert mean == pytest.approx(2.0) and low < 1.0 < 4.0 < high
    diff, low, high = common.difference_ci([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])  # Welch df = 2: t = 4.303
    assert diff == pytest.approx(2.0) and high - diff == pytest.approx(4.303 / math.sqrt(3)) and low < 0
    diff, low, high = common.difference_ci([5.0, 5.1, 5.2], [6.0, 6.1, 6.3])
    assert diff == pytest.approx(-1.0333, abs=1e-4) and low < diff < high < 0
    x = torch.arange(10.0)
    pearson, spearman = common.correlations(x, x.exp())
    assert spearman == pytest.approx(1.0) and 0.5 < pearson < 1.0
    assert common.correlations(x, -x)[0] == pytest.approx(-1.0)


def test_variance_and_convergence_end_to_end(corpus, tmp_path):
    common_args = ["--corpus", corpus, "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
                   "--work", str(tmp_path / "work"), "--doc", str(tmp_path / "docs" / "experiments.md"), "--no-progress"]
    assert experiments.main(["variance", *common_args, "--state-steps", "0,2", "--batches", "2", "--batch", "2",
                             "--length", "16", "--reference-masks", "3", "--repeats", "2", "--proposal-steps", "2",
                             "--proposal-batch", "2", "--fair-rows", "7", "--data-batches", "2", "--masks", "2"]) == 0
    assert experiments.main(["convergence", *common_args, "--rows", "7", "--steps", "2", "--eval-interval", "1",
                             "--seeds", "2", "--lrs", "1e-3,2e-3", "--sweep-steps", "1"]) == 0
    variance = json.loads((tmp_path / "out" / "variance.json").read_text())
    assert [state["steps"] for state in variance["states"]] == [0, 2]
    for state in variance["states"]:
        arms = state["arms"]
        assert set(arms) == {"signal", *experiments.variance.ARMS}
        for arm in experiments.variance.ARMS[1:]:
            ratio, low, high = arms[arm]["mse_ratio"]
            assert 0 < low <= ratio <= high
            assert arms[arm]["weight_sum_over_k"] > 0 and 0 < arms[arm]["ess_over_k"] <= 1 + 1e-9
        assert 0 < arms["signal"]["ceiling"] <= 1 and -1 <= arms["signal"]["signal"][1] <= 1
        fair = state["fair"]
        assert [fair[arm]["encoder_rows"] for arm in experiments.variance.FAIR_ARMS] == [7, 7, 7]
        assert all(fair[arm]["mask_variance"] > 0 for arm in experiments.variance.FAIR_ARMS)
    convergence = json.loads((tmp_path / "out" / "convergence.json").read_text())
    assert set(convergence["runs"]) == {f"{arm}/{seed}" for arm in experiments.convergence.ARMS for seed in (0, 1)}
    assert set(convergence["sweep"]) == {f"{arm}/{lr}" for arm in experiments.convergence.FAIR_ARMS
                                         for lr in ("0.001", "0.002")}
    assert 0 < convergence["unigram_entropy"] < math.log(4096)
    assert (tmp_path / "out" / "convergence.png").stat().st_size > 5000
    doc = (tmp_path / "docs" / "experiments.md").read_text()
    assert "## Gradient noise" in doc and "## Convergence at equal compute" in doc
    assert "(../out/convergence.png)" in doc and "unigram entropy" in doc


def test_convergence_arms_have_equal_encoder_rows(tmp_path):
    args = experiments_args(tmp_path, rows=14)
    rows = {}
    for arm in experiments.convergence.ARMS:
        cfg = experiments.convergence.arm_config(args, arm, 0, 1e-3, 5, str(tmp_path / arm))
        rows[arm] = cfg.batch_size * (cfg.num_segments if cfg.masking == "fully-explored" else cfg.masks_per_row)
    assert set(rows.values()) == {14}
    with pytest.raises(ValueError, match="multiple of K"):
        experiments.convergence.arm_config(experiments_args(tmp_path, rows=10), "random", 0, 1e-3, 5, str(tmp_path))


def experiments_args(tmp_path, rows):
    import argparse

    return argparse.Namespace(preset="tiny", corpus=None, seed=0, cache_dir=str(tmp_path / "cache"), rows=rows,
                              eval_interval=50)
