"""Smoke runs of the benchmark scripts at minimal sizes: each prints its table (timings are
not checked; the PPO step must not recompile after its first iteration)."""

import os
import re
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "experiments", "benchmarks")
sys.path.insert(0, os.path.abspath(BENCHMARKS))

import compile_cache  # noqa: E402
import generation  # noqa: E402
import ppo_step  # noqa: E402


def test_ppo_step_smoke_with_torch(capsys):
    ppo_step.main(["--smoke", "--compare-torch"])
    out = capsys.readouterr().out
    for label in ("rollout (sample)", "score + advantages", "update (epochs x minibatches)",
                  "full ppo_iteration"):
        row = re.search(rf"^{re.escape(label)}\s+([\d,.]+)\s+([\d,.]+)\s+([\d.]+)x$", out, re.M)
        assert row, f"no fgjax/torch/speed-up row for {label!r} in:\n{out}"
    assert "compilations after the first iteration: 0" in out
    assert re.search(r"MFU \d+\.\d%", out)
    assert re.search(r"parameters: policy [\d.]+M, value [\d.]+M, r1 [\d.]+M, r2 [\d.]+M, r3", out)
    assert "torch 2." in out and "with 2 threads" in out


def test_ppo_step_rejects_torch_for_qwen2():
    with pytest.raises(SystemExit):
        ppo_step.main(["--preset", "qwen2", "--compare-torch"])


def test_generation_smoke(capsys):
    generation.main(["--smoke"])
    out = capsys.readouterr().out
    assert re.search(r"^\s+2\s+[\d,]+\s+[\d,]+\s+[\d.]+x\s+[\d.]+$", out, re.M), out


def test_compile_cache_smoke_on_the_toy_job(capsys):
    compile_cache.main(["--job", "toy"])
    out = capsys.readouterr().out
    for mode in ("off", "cold", "warm"):
        assert re.search(rf"^{mode}\s+[\d.]+\s+[\d.]+x$", out, re.M), out
    entries = re.search(r"cache after the cold run: (\d+) entries", out)
    assert entries and int(entries.group(1)) > 0, out  # the cold run stored its programs
