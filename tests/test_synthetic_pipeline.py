"""A miniature of the default job (``python -m fgjax.train``): every stage runs with the real
trainers on tiny sizes, prints the table, and a rerun reuses every cached stage."""

import contextlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from fgjax import train, train_rm
from fgjax.config import CommandLine, defaults
from fgjax.data import rm_builders
from fgjax.data.synthetic_oracle import METRIC_TYPES
from fgjax.errors import StagePreempted
from fgjax.pipelines import synthetic_qa as pipeline
from fgjax.pipelines import synthetic_report
from fgjax.pipelines.synthetic_config import MINIATURE, SYNTHETIC_SCHEMA
from fgjax.tokenizers import load_tokenizer

# The miniature's overrides for the experiment scripts, without the pipeline's RM steps
# (r2_world_lm.py sets its RMs' steps with --rm_steps / --r1_steps).
EXPERIMENT_MINIATURE = [a for a in MINIATURE if not a.startswith("--config.rm.iterations")]

STAGES = ("data", "sft", "feedback", "rm_r1", "rm_r2", "rm_r3", "rm_holistic",
          "ppo_fine_grained", "ppo_holistic", "evaluate")


@pytest.fixture(scope="module")
def miniature(tmp_path_factory):
    """The miniature pipeline, run once for this module's tests: its workdir and output."""
    workdir = tmp_path_factory.mktemp("miniature")
    before = pipeline._compiled_sampler.cache_info()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        train.main(["fgjax.train", f"--workdir={workdir}", *MINIATURE])
    after = pipeline._compiled_sampler.cache_info()
    sampler_compiles = (after.misses - before.misses, after.hits - before.hits)
    return workdir, printed.getvalue(), sampler_compiles


@pytest.mark.slow  # runs the miniature pipeline when it runs first
def test_miniature_pipeline_runs_every_stage_and_prints_the_table(miniature):
    workdir, out, sampler_compiles = miniature
    # Two samplers compile (4 feedback samples; greedy evaluation), shared by the 3 policies.
    assert sampler_compiles == (2, 2)
    assert "oracle error rate" in out and "fine-grained RLHF" in out and "holistic RLHF" in out
    assert "sampled answers to the train prompts (the feedback's): Irrelevant " in out
    r2 = json.loads((workdir / "rm_r2" / "rm_report.json").read_text())
    agreement = (f"  r2        segment accuracy {r2['heldout_accuracy']:.3f} (always the majority "
                 f"label: {r2['heldout_majority_accuracy']:.3f}), error F1 ")
    assert agreement in out and agreement in (workdir / "results.txt").read_text()
    assert f"PPO curves: {workdir}/ppo_*/curves.png" in out
    for variant in ("ppo_fine_grained", "ppo_holistic"):
        assert (workdir / variant / "curves.png").is_file(), variant
    for stage in STAGES:
        assert (workdir / stage / "DONE.json").is_file(), stage
    # Training stages checkpoint every checkpoint.every steps, so a crash loses at most that.
    assert sorted(p.name for p in (workdir / "sft" / "checkpoints").iterdir()
                  if p.name.isdigit()) == ["100", "150"]
    summary = json.loads((workdir / "summary.json").read_text())
    results = summary["evaluate"]["results"]
    assert set(results) == {"SFT", "holistic RLHF", "fine-grained RLHF"}
    for metrics in results.values():
        assert 0.0 <= metrics["error_rate/any"] <= 1.0
    ppo_lines = (workdir / "ppo_fine_grained" / "metrics.jsonl").read_text().splitlines()
    last = json.loads(ppo_lines[-1])
    assert {"reward/r1", "reward/r2", "reward/r3"} <= set(last)
    # The oracle and the R1/R2 agreement are logged at every evaluation of both variants.
    for variant in ("ppo_fine_grained", "ppo_holistic"):
        rows = [json.loads(x) for x in (workdir / variant / "metrics.jsonl").read_text()
                .splitlines()]
        evaluated = [r for r in rows if "eval/oracle/error_rate/any" in r]
        assert [r["step"] for r in evaluated] == [1, 2], variant
        for row in evaluated:
            assert 0.0 <= row["eval/oracle/fact_recall"] <= 1.0
            assert 0.0 <= row["eval/rm_accuracy/r1"] <= 1.0


@pytest.mark.slow  # runs the miniature pipeline when it runs first
def test_miniature_rerun_reuses_every_stage(miniature, capsys):
    workdir, _, _ = miniature
    train.main(["fgjax.train", f"--workdir={workdir}", *MINIATURE])
    rerun = capsys.readouterr().out
    for stage in STAGES:
        assert f"[{stage}] cached" in rerun, stage


def _experiment_module(script: str):
    spec = importlib.util.spec_from_file_location(
        script.removesuffix(".py"), REPO_ROOT / "experiments" / "synthetic_qa" / script)
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    return experiment


@pytest.mark.slow  # runs the miniature pipeline when it runs first
def test_seed_experiment_report_on_the_miniature(miniature):
    """experiments/synthetic_qa/run.py on the miniature workdir (as its seed 0, every stage
    cached, with --r2_world_lm, --r2_sft_large, --r12_sft_large, --r123_sft_large and
    --h_sft_large, and weight steering on the pipeline's RMs and on --r12_sft_large's): its
    tables and plots come from the seed's own summary and from the RLHF runs on those RMs."""
    workdir, _, _ = miniature
    summary = json.loads((workdir / "summary.json").read_text())
    experiment = _experiment_module("run.py")
    exp, out = workdir.parent / f"{workdir.name}_exp", workdir.parent / f"{workdir.name}_out"
    exp.mkdir()
    (exp / "seed0").symlink_to(workdir)
    experiment.main(["run.py", "--seeds=0", "--steer_rm_variants=r12_sft_large", f"--workdir={exp}",
                     f"--out={out}", "--r2_world_lm=--fresh=40 --prompts=10 --lm_steps=2 "
                     "--rm_steps=2", "--r2_sft_large=--prompts=10 --rm_steps=2",
                     "--r12_sft_large=--prompts=10 --rm_steps=2 --r1_steps=2",
                     "--r123_sft_large=--prompts=10 --rm_steps=2 --r1_steps=2 --r3_steps=2",
                     "--h_sft_large=--prompts=10 --holistic_steps=2",
                     *EXPERIMENT_MINIATURE])
    report = (out / "results.md").read_text()
    for name in ("curves_error_rates.png", "curves_rm_accuracy.png", "results.json"):
        assert (out / name).is_file(), name
    sft, sampled = summary["evaluate"]["results"]["SFT"], summary["feedback"]["sft_samples"]
    key = "error_rate/Irrelevant"
    assert f"| Irrelevant | {sft[key]:.3f} / {sampled[key]:.3f} |" in report
    results = summary["evaluate"]["results"]
    holistic, fine = results["holistic RLHF"], results["fine-grained RLHF"]
    world = json.loads((exp / "seed0_r2" / "pipeline" / "summary.json").read_text())[
        "evaluate"]["results"]
    # The world-LM run copies SFT and holistic RLHF: the same policies, the same numbers.
    assert world["SFT"] == results["SFT"] and world["holistic RLHF"] == holistic
    large, large_r1, large_r123 = (
        json.loads((exp / folder / "pipeline" / "summary.json").read_text())["evaluate"][
            "results"]["fine-grained RLHF"]
        for folder in ("seed0_r2sft", "seed0_r12sft", "seed0_r123sft"))
    # The equal-feedback control: holistic RLHF re-run on its large-feedback preference RM; its
    # run keeps the workdir's fine-grained RLHF (no R1 / R2 of its own).
    control = json.loads((exp / "seed0_hsft" / "pipeline" / "summary.json").read_text())[
        "evaluate"]["results"]
    assert control["fine-grained RLHF"] == fine
    large_holistic = control["holistic RLHF"]
    policies = (sft, holistic, fine, world["fine-grained RLHF"], large, large_r1, large_holistic,
                large_r123)
    cells = [f"{m['error_rate/any']:.3f} / {m['errors_per_answer']:.3f}" for m in policies]
    gaps = [f"{h['error_rate/any'] - m['error_rate/any']:+.3f}" for h, m in (
        *((holistic, m) for m in (*policies[2:6], large_r123)),
        *((large_holistic, m) for m in (large, large_r1, large_r123)))]
    assert "| 0 | " + " | ".join(cells + gaps) + " |" in report
    assert "holistic, large-feedback RM - fine-grained RLHF, large-feedback R1 + R2, any" in report
    for stage, row in (("seed0_r2/rm_r2", "r2, world LM"),
                       ("seed0_r2sft/rm_r2", "r2, large feedback"),
                       ("seed0_r12sft/rm_r1", "r1, large feedback"),
                       ("seed0_r123sft/rm_r3", "r3, large feedback"),
                       ("seed0_hsft/rm_holistic", "holistic, large feedback")):
        rm = json.loads((exp / stage / "rm_report.json").read_text())
        assert f"| {row} | {rm['heldout_accuracy']:.3f} +- 0.000 |" in report
    per_seed = json.loads((out / "results.json").read_text())["per_seed"]
    for key in ("fine_grained_world_lm_r2", "fine_grained_sft_large_r2",
                "fine_grained_sft_large_r1_r2", "fine_grained_sft_large_r1_r2_r3",
                "holistic_sft_large"):
        curve = per_seed[0]["curves"][key]["oracle/error_rate/any"]
        assert [step for step, _ in curve] == [0, 1, 2]  # SFT, then each PPO evaluation
    steering = ("ppo_steer_r1", "ppo_steer_r3", "evaluate_steering")
    total = sum(s["seconds"] for s in summary.values() if "seconds" in s) + sum(
        json.loads((workdir / stage / "DONE.json").read_text())["seconds"] for stage in steering)
    assert f"| total | {total:.0f} |" in report
    # One steering table on the pipeline's RMs, one on the large-feedback R1 + R2's.
    for folder, heading in (
            (workdir, "## Weight steering (fine-grained RLHF; R1 x3, R3 x3)"),
            (exp / "seed0_r12sft" / "pipeline", "## Weight steering with the reward models of "
             "fine-grained RLHF, large-feedback R1 + R2 (R1 x3, R3 x3)")):
        steered = json.loads((folder / "evaluate_steering" / "DONE.json").read_text())[
            "results"]
        assert list(steered) == ["fine-grained RLHF", "R1 x3", "R3 x3"]
        table = report.split(heading + "\n\n")[1].split("\n\n")[0]
        words = " | ".join(f"{steered[n]['mean_words']:.3f} +- 0.000" for n in steered)
        assert f"| mean_words | {words} |" in table, folder


def test_r2_world_lm_ppo_runs_the_pipeline_with_its_rms_and_the_stages_that_do_not_read_them(
        tmp_path, monkeypatch):
    experiment = _experiment_module("r2_world_lm.py")
    workdir, out = tmp_path / "workdir", tmp_path / "out"
    for name in ("data", "sft", "feedback", "rm_r1", "rm_r2", "ppo_fine_grained", "evaluate"):
        (workdir / name).mkdir(parents=True)
        (workdir / name / pipeline.DONE).write_text(json.dumps({"from": "workdir"}))
    (workdir / "rm_r3").mkdir()  # unfinished: runs again there
    (out / "rm_r2").mkdir(parents=True)
    (out / "rm_r2" / pipeline.DONE).write_text(json.dumps({"from": "out"}))
    runs = []
    monkeypatch.setattr(experiment.pipeline, "run", lambda command_line: runs.append(
        command_line.workdir))
    config = defaults(SYNTHETIC_SCHEMA)
    experiment.run_pipeline_with_these_rms(CommandLine(config, str(workdir), None),
                                           str(workdir), str(out))
    target = out / "pipeline"
    assert runs == [str(target)]
    assert sorted(p.name for p in target.iterdir()) == ["data", "feedback", "rm_r1", "rm_r2",
                                                         "sft"]
    assert json.loads((target / "rm_r2" / pipeline.DONE).read_text()) == {"from": "out"}
    assert json.loads((target / "rm_r1" / pipeline.DONE).read_text()) == {"from": "workdir"}
    # An R1 trained by --r1_steps replaces the workdir's in a fresh target.
    (out / "rm_r1").mkdir()
    (out / "rm_r1" / pipeline.DONE).write_text(json.dumps({"from": "out"}))
    shutil.rmtree(target)
    experiment.run_pipeline_with_these_rms(CommandLine(config, str(workdir), None),
                                           str(workdir), str(out))
    assert json.loads((target / "rm_r1" / pipeline.DONE).read_text()) == {"from": "out"}
    # An R3 trained by --r3_steps replaces the workdir's finished one; fine-grained PPO reads it,
    # so it runs again (the workdir's is not copied).
    (workdir / "rm_r3" / pipeline.DONE).write_text(json.dumps({"from": "workdir"}))
    (out / "rm_r3").mkdir()
    (out / "rm_r3" / pipeline.DONE).write_text(json.dumps({"from": "out"}))
    shutil.rmtree(target)
    experiment.run_pipeline_with_these_rms(CommandLine(config, str(workdir), None),
                                           str(workdir), str(out))
    assert sorted(p.name for p in target.iterdir()) == ["data", "feedback", "rm_r1", "rm_r2",
                                                         "rm_r3", "sft"]
    assert json.loads((target / "rm_r3" / pipeline.DONE).read_text()) == {"from": "out"}
    # Only a holistic RM trained by --holistic_steps (--rm_steps=0): fine-grained RLHF is the
    # workdir's, holistic PPO runs again on the new RM.
    for name in ("rm_holistic", "ppo_holistic"):
        (workdir / name).mkdir()
        (workdir / name / pipeline.DONE).write_text(json.dumps({"from": "workdir"}))
    shutil.rmtree(out)
    (out / "rm_holistic").mkdir(parents=True)
    (out / "rm_holistic" / pipeline.DONE).write_text(json.dumps({"from": "out"}))
    experiment.run_pipeline_with_these_rms(CommandLine(config, str(workdir), None),
                                           str(workdir), str(out))
    assert sorted(p.name for p in target.iterdir()) == [
        "data", "feedback", "ppo_fine_grained", "rm_holistic", "rm_r1", "rm_r2", "rm_r3", "sft"]
    assert json.loads((target / "rm_holistic" / pipeline.DONE).read_text()) == {"from": "out"}
    assert json.loads((target / "rm_r2" / pipeline.DONE).read_text()) == {"from": "workdir"}


@pytest.mark.slow  # runs the miniature pipeline when it runs first
def test_r2_world_lm_experiment_on_the_miniature(miniature, capsys):
    """experiments/synthetic_qa/r2_world_lm.py on the miniature workdir: R2 trains on feedback
    on the policy's samples for new prompts only and is tested on exactly the pipeline's
    held-out R2 sentences."""
    workdir, _, _ = miniature
    experiment = _experiment_module("r2_world_lm.py")
    out = workdir / "r2_world_lm"
    experiment.main(["r2_world_lm.py", f"--workdir={workdir}", f"--out={out}", "--fresh=40",
                     "--prompts=10", "--lm_steps=2", "--rm_steps=2", *EXPERIMENT_MINIATURE])
    assert "R2 from the world LM, 40 records on policy samples, 2 steps" in \
        capsys.readouterr().out
    counts = json.loads((out / "policy_feedback" / "DONE.json").read_text())
    assert (counts["new_records"], counts["heldout_records"]) == (40, 256 - int(256 * 0.8))
    # The pipeline's own split of its feedback, every held-out sentence.
    config = defaults(train_rm.RM_SCHEMA)
    config.data.dir, config.data.split, config.data.splitter = str(workdir / "feedback"), \
        "train", "rules"
    config.data.num_train, config.data.heldout_fraction, config.data.num_eval = 0, 0.2, 0
    config.rm.name, config.rm.max_prompt_len, config.rm.max_answer_len = "r2", 96, 40
    _, held, _ = train_rm.build_examples(config, load_tokenizer(str(workdir / "data" /
                                                                    "tokenizer")))
    labelled = int((held["labels"] != rm_builders.IGNORE_LABEL).sum())
    report = json.loads((out / "rm_r2" / "DONE.json").read_text())["report"]
    assert report["heldout_examples"] == labelled


@pytest.mark.slow  # runs the miniature pipeline when it runs first
def test_r2_world_lm_with_init_sft_starts_r2_from_the_pipelines_sft_policy(miniature, capsys):
    workdir, _, _ = miniature
    experiment = _experiment_module("r2_world_lm.py")
    out = workdir / "r2_from_sft"
    experiment.main(["r2_world_lm.py", f"--workdir={workdir}", f"--out={out}", "--init=sft",
                     "--prompts=10", "--rm_steps=2", "--r1_steps=3", "--r3_steps=4",
                     *EXPERIMENT_MINIATURE])
    printed = capsys.readouterr().out
    assert "R2 from the SFT policy, 40 records on policy samples, 2 steps" in printed
    assert "R1 from the SFT policy, same records, 3 steps" in printed
    assert "R3 from the SFT policy, same records, 4 steps" in printed
    assert sorted(p.name for p in out.iterdir()) == ["policy_feedback", "policy_prompts",
                                                     "rm_r1", "rm_r2", "rm_r3"]
    for name, steps in (("rm_r1", 3), ("rm_r2", 2), ("rm_r3", 4)):
        rm_config = json.loads((out / name / "config.json").read_text())
        assert rm_config["model"]["path"] == str(workdir / "sft" / "hf")
        assert rm_config["data"]["dir"] == str(out / "policy_feedback")
        assert rm_config["num_iterations"] == steps

def test_a_preempted_stage_is_not_cached_and_resumes_from_its_checkpoint(tmp_path, capsys):
    calls = []

    def preempted_trainer(stage_dir):
        calls.append(sorted(os.listdir(stage_dir)))
        os.makedirs(os.path.join(stage_dir, "checkpoints", "7"))
        raise StagePreempted("preempted")

    with pytest.raises(StagePreempted):
        pipeline.run_stage(str(tmp_path), "rm_r2", preempted_trainer)
    assert not (tmp_path / "rm_r2" / pipeline.DONE).exists()

    def resumed_trainer(stage_dir):
        calls.append(sorted(os.listdir(os.path.join(stage_dir, "checkpoints"))))
        return {"resumed": True}

    assert pipeline.run_stage(str(tmp_path), "rm_r2", resumed_trainer)["resumed"]
    assert calls == [[], ["7"]]  # the checkpoint survived for the trainer to resume from
    assert "[rm_r2] resuming from its checkpoint at step 7" in capsys.readouterr().out

    # An interrupted stage without a checkpoint (an empty checkpoint folder: the trainer had
    # not saved yet) starts again from an empty folder.
    (tmp_path / "feedback" / "checkpoints").mkdir(parents=True)
    (tmp_path / "feedback" / "train_feedback.json.tmp").write_text("half written")
    pipeline.run_stage(str(tmp_path), "feedback", lambda d: {"files": os.listdir(d)})
    assert json.loads((tmp_path / "feedback" / pipeline.DONE).read_text())["files"] == []


@pytest.mark.parametrize("stop_reason, raises", [("preempted", True), ("finished", False)])
def test_reward_model_stage_fails_when_its_trainer_was_preempted(tmp_path, monkeypatch,
                                                                 stop_reason, raises):
    report = {"rm": "r2", "iterations": 3, "stop_reason": stop_reason, "heldout_accuracy": 0.5}
    monkeypatch.setattr(train_rm, "run", lambda command_line: dict(report))
    config = defaults(SYNTHETIC_SCHEMA)
    paths = pipeline.stage_paths(str(tmp_path))
    if raises:
        with pytest.raises(StagePreempted, match="rerun the same command to resume"):
            pipeline.run_reward_model(config, "r2", paths, str(tmp_path / "rm_r2"))
    else:
        summary = pipeline.run_reward_model(config, "r2", paths, str(tmp_path / "rm_r2"))
        assert summary == {"report": {k: v for k, v in report.items() if k != "stop_reason"}}


@pytest.mark.parametrize("script", ["run.py", "r2_world_lm.py"])
def test_experiment_scripts_reject_a_bad_config_in_one_line_before_any_stage(tmp_path, script):
    workdir, out = tmp_path / "workdir", tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "experiments" / "synthetic_qa" / script),
         f"--workdir={workdir}", f"--out={out}", "--config.sft.iterations=0"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        "error: config key 'sft.iterations' = 0; allowed: an integer >= 1"
    assert not workdir.exists() and not out.exists()


def test_run_rejects_steering_an_extra_policy_that_is_not_run(capsys):
    experiment = _experiment_module("run.py")
    with pytest.raises(SystemExit):
        experiment.parse_args(["run.py", "--r2_sft_large", "--steer_rm_variants=r12_sft_large"])
    assert "--steer_rm_variants: 'r12_sft_large' is not one of the extra-policy flags given" in (
        capsys.readouterr().err)
    args, *_ = experiment.parse_args(["run.py", "--r12_sft_large=--rm_steps=5",
                                      "--steer_rm_variants=r12_sft_large"])
    assert args.steer_rm_variants == ["r12_sft_large"]


def test_rm_agreement_names_the_segment_models_below_the_target():
    def segment(accuracy):
        return {"heldout_accuracy": accuracy, "heldout_majority_accuracy": 0.8,
                "heldout_error_f1": 0.5, "heldout_examples": 100.0}
    pairwise = {"heldout_accuracy": 0.6, "heldout_examples": 20.0}
    reports = {"r1": segment(0.9), "r2": segment(0.6), "r3": pairwise, "holistic": pairwise}
    text = synthetic_report.format_rm_agreement(reports)
    assert "  r1        segment accuracy 0.900 (always the majority label: 0.800), error F1 " \
           "0.500, on 100 sub-sentences" in text
    assert "  holistic  pairwise accuracy 0.600 on 20 preference pairs" in text
    assert "  R2 below 0.85: more feedback and steps lift it (" in text
    reports["r1"] = segment(0.7)
    assert "  R1 and R2 below 0.85: more feedback and steps lift them (" in (
        synthetic_report.format_rm_agreement(reports))
    reports["r1"] = reports["r2"] = segment(0.85)
    assert "below" not in synthetic_report.format_rm_agreement(reports)


def test_steering_table_counts_each_reward_models_target_errors_per_answer():
    experiment = _experiment_module("run.py")
    def metrics(**counts):
        zero = {f"{k}/{t}": 0.0 for k in ("error_rate", "mean_count") for t in METRIC_TYPES}
        return zero | {"mean_words": 20.0, "fact_recall": 0.5, "errors_per_answer": 1.0} | {
            f"mean_count/{t.replace('_', '-')}": v for t, v in counts.items()}
    per_seed = [{"steering": {"R1 x3": metrics(Irrelevant=0.1, Redundant=0.2, Incoherent=0.3,
                                                Wrong_Grounding=0.5, Missing=0.7)}},
                {"steering": {"R1 x3": metrics(Irrelevant=0.3, Unverifiable=0.4, Missing=0.9)}},
                {"steering": None}]
    table = experiment.steering_table([s["steering"] for s in per_seed])
    assert "| R1 target: NF-ERR spans per answer | 0.450 +- 0.212 |" in table
    assert "| R2 target: F-ERR spans per answer | 0.450 +- 0.071 |" in table
    assert "| R3 target: missing facts per answer | 0.800 +- 0.141 |" in table


def test_rm_table_majority_class_from_accuracy_precision_recall():
    """The majority-class baseline comes back exactly from a confusion matrix's accuracy,
    error precision and recall (20 errors in 100 segments; 10 found, 5 false alarms)."""
    experiment = _experiment_module("run.py")
    tp, fp, fn, tn = 10, 5, 10, 75
    report = {"heldout_accuracy": (tp + tn) / 100, "heldout_error_precision": tp / (tp + fp),
              "heldout_error_recall": tp / (tp + fn), "heldout_error_f1": 0.5,
              "train_accuracy": 0.9}
    assert experiment.majority_accuracy(report) == pytest.approx(0.8)
    mostly_errors = dict(report, heldout_accuracy=0.8, heldout_error_precision=60 / 70,
                         heldout_error_recall=60 / 70)  # 70 errors: 60 found, 10 false alarms
    assert experiment.majority_accuracy(mostly_errors) == pytest.approx(0.7)
    assert experiment.majority_accuracy(dict(report, heldout_error_precision=0.0)) is None
    perfect = dict(report, heldout_accuracy=1.0, heldout_error_precision=1.0,
                   heldout_error_recall=1.0)
    assert experiment.majority_accuracy(perfect) is None
    table = experiment.rm_table([{"rm": {"r1": report, "r3": {"heldout_accuracy": 0.6,
                                                                 "train_accuracy": 0.7}}}])
    assert "| r1 | 0.850 +- 0.000 | 0.800 +- 0.000 | 0.500 +- 0.000 | 0.900 +- 0.000 |" in table
    assert "| r3 | 0.600 +- 0.000 | - | - | 0.700 +- 0.000 |" in table
