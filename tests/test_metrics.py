"""Metrics outputs: TensorBoard (read back with tbparse), JSONL, progress bar, run info, PNG."""

import json
import re

import numpy as np
import pytest
import runner_toy
from runner_toy import logged, run_in_process

from fgjax import metrics as mlog


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    return runner_toy.reference_run(tmp_path_factory)


def test_tensorboard_holds_the_namespaced_scalars_of_the_jsonl(reference_run):
    from tbparse import SummaryReader

    workdir, _ = reference_run
    records = logged(workdir)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]  # log_every = 1
    scalars = SummaryReader(str(workdir / mlog.TENSORBOARD_DIR)).scalars
    tags = set(scalars["tag"])
    expected = {"reward/raw", "reward/toy_fit", "kl/mean", "loss/total", "eval/reward",
                "guard/nonfinite_skipped", "guard/kl_strikes", "perf/seconds_per_iteration"}
    assert expected <= tags
    for tag in ("reward/raw", "kl/mean"):
        rows = scalars[scalars["tag"] == tag].sort_values("step")
        assert list(rows["step"]) == [1, 2, 3, 4, 5, 6]
        np.testing.assert_allclose(rows["value"], [r[tag] for r in records], rtol=1e-6)
    eval_rows = scalars[scalars["tag"] == "eval/reward"]
    assert sorted(eval_rows["step"]) == [2, 4, 6]  # eval_every = 2


def test_jsonl_has_one_line_per_logged_step(tmp_path):
    run_in_process(tmp_path, "--config.logging.log_every=4", "--config.eval_every=0",
                   "--config.checkpoint.keep_best=0")
    lines = (tmp_path / mlog.METRICS_FILE).read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [4, 6]  # every 4th, and the last


def test_run_info_config_and_curves(reference_run):
    workdir, _ = reference_run
    info = json.loads((workdir / mlog.RUN_INFO_FILE).read_text())
    assert info["fgjax_version"] == "0.1.0" and info["device_count"] == 8
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown \(.*\)", info["git_revision"])
    config = json.loads((workdir / mlog.CONFIG_FILE).read_text())
    assert config["num_iterations"] == 6 and config["checkpoint"]["every"] == 2
    png = (workdir / mlog.CURVES_FILE).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    plotted = mlog.plot_curves(str(workdir / mlog.METRICS_FILE), str(workdir / "again.png"))
    assert plotted == ["eval/reward", "reward/raw", "reward/toy_fit", "kl/mean", "loss/total"]


def test_resumed_writer_drops_lines_after_the_checkpoint(tmp_path):
    writer = mlog.MetricsWriter(str(tmp_path), tensorboard=False)
    for step in range(1, 6):
        writer.write(step, {"reward/raw": np.float32(step), "kl/mean": np.asarray(0.5)})
    writer.close()
    writer = mlog.MetricsWriter(str(tmp_path), tensorboard=False, resume_step=3)
    writer.write(4, {"reward/raw": 40.0, "kl/mean": 0.25})
    writer.close()
    records = mlog.read_jsonl(str(tmp_path / mlog.METRICS_FILE))
    assert records == [
        {"step": 1, "kl/mean": 0.5, "reward/raw": 1.0},
        {"step": 2, "kl/mean": 0.5, "reward/raw": 2.0},
        {"step": 3, "kl/mean": 0.5, "reward/raw": 3.0},
        {"step": 4, "kl/mean": 0.25, "reward/raw": 40.0},
    ]
    with pytest.raises(ValueError, match="metric 'x' has shape"):
        mlog.to_python({"x": np.zeros(3)})


def test_only_process_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(mlog.jax, "process_index", lambda: 1)
    writer = mlog.MetricsWriter(str(tmp_path / "w"), tensorboard=True)
    writer.write(1, {"reward/raw": 1.0})
    writer.close()
    mlog.write_run_info(str(tmp_path / "w"), {"seed": 0})
    assert not (tmp_path / "w").exists()


def test_progress_bar_shows_eta_and_the_latest_reward_and_kl(capsys):
    bar = mlog.ProgressBar(total=4, initial=1, keys=("reward/raw", "kl/mean"))
    bar.update(2, {"reward/raw": -1.5, "kl/mean": 0.25, "loss/total": 3.0})
    bar.update(3, {"reward/raw": -1.25, "kl/mean": 0.5})
    bar.close()
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert "3/4" in last and "<" in last  # elapsed<remaining (the ETA)
    assert "reward/raw=-1.25" in last and "kl/mean=0.5" in last and "loss" not in last
