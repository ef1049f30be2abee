"""R2 from a backbone pre-trained on the world's gold answers, trained on the policy's samples.

    python experiments/synthetic_qa/r2_world_lm.py --workdir=runs/synthetic_qa_exp/seed0 \
        --out=runs/r2_world_lm [--lm_steps=2000 --fresh=20000 --prompts=20000 --rm_steps=9000 --ppo]

The default R2 (from the SFT policy, ~3,300 feedback records) stays at 0.64-0.70 held-out: it
memorises its records and never learns to check a clause against the passages (REPORT.md).
The paper starts R2 from a pre-trained LM and labels many policy samples. This experiment is
the nearest thing the world allows, and its pre-training is a deviation to report as such:

1. ``world_lm``: ``fgjax.sft`` (the pipeline's SFT stage, same tiny GPT-2) on gold answers of
   ``--fresh`` new questions about the same world. Gold answers copy every stated fact of the
   asked person, so this LM learns to look facts up in the passages.
2. ``policy_feedback``: the pipeline's feedback stage on ``--prompts`` other new questions:
   4 samples of the SFT policy each, oracle feedback, one record per rotation. The pipeline's
   held-out feedback records come last and are the test set.
3. ``rm_r2``: ``fgjax.train_rm`` R2 (the pipeline's RM stage) from ``world_lm``'s backbone.
4. With ``--ppo``: the pipeline in ``<out>/pipeline`` with this R2 as its ``rm_r2``:
   fine-grained PPO on this R2, holistic PPO as in the pipeline, the oracle's table.

``--init=sft`` skips step 1 and starts R2 from the pipeline's SFT policy, as the pipeline's own
R2 does: the control that separates what the pre-training adds from what the larger feedback
and the longer training add. ``--r1_steps=N`` also trains R1 on the same records from the same
backbone (stage ``rm_r1``); ``--ppo`` then uses it in place of the pipeline's R1.
``--r3_steps=N`` trains R3 (completeness preferences) the same way (stage ``rm_r3``): with
``--r1_steps`` too, every fine-grained RM learns from the large feedback.
``--holistic_steps=N`` likewise trains the holistic preference RM on the same records'
preferences (stage ``rm_holistic``), and ``--ppo`` re-runs holistic PPO on it: holistic RLHF
with as much feedback as the large-feedback R1 / R2 / R3 (``--rm_steps=0`` skips R2 for that
control).

``--workdir`` is a ``python -m fgjax.train`` workdir: its tokenizer, SFT policy and feedback
are reused, and its data, SFT and feedback stages run first where they have not (pass the same
``--config.*`` overrides as that run). This experiment's stages are cached in ``--out``. The
held-out accuracy of the pipeline's own R2, when its stage finished, is printed next to this
one.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import shutil
import sys

import numpy as np

from fgjax import runner, train_rm
from fgjax.config import parse_command_line
from fgjax.data import synthetic_qa
from fgjax.pipelines import synthetic_qa as pipeline
from fgjax.pipelines.synthetic_config import SYNTHETIC_SCHEMA

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "..", "..", "configs", "synthetic_qa.py")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for this experiment's stages")
    parser.add_argument("--fresh", type=int, default=20000,
                        help="new questions whose gold answers train the world LM")
    parser.add_argument("--lm_steps", type=int, default=2000, help="world-LM steps (32 rows)")
    parser.add_argument("--prompts", type=int, default=20000,
                        help="other new questions: 4 policy samples each, oracle feedback")
    parser.add_argument("--rm_steps", type=int, default=9000,
                        help="R2 steps (0: no R2 here; --ppo uses the pipeline's)")
    parser.add_argument("--rm_learning_rate", type=float, default=3e-4)
    parser.add_argument("--init", choices=("world_lm", "sft"), default="world_lm",
                        help="R2's backbone: the world LM of step 1, or the pipeline's SFT "
                             "policy (as the pipeline's own R2; step 1 is skipped)")
    parser.add_argument("--r1_steps", type=int, default=0,
                        help="also train R1 on the same feedback from the same backbone for "
                             "this many steps, and use it with --ppo (0: the pipeline's R1)")
    parser.add_argument("--r3_steps", type=int, default=0,
                        help="likewise for R3, on the same records' completeness preferences "
                             "(0: the pipeline's R3)")
    parser.add_argument("--holistic_steps", type=int, default=0,
                        help="also train the holistic preference RM on the same records' "
                             "preferences from the same backbone, and with --ppo run holistic "
                             "PPO on it (0: the pipeline's holistic RM and PPO)")
    parser.add_argument("--ppo", action="store_true",
                        help="then run the pipeline's remaining stages (the other RMs, the "
                             "PPO variants on new RMs, evaluation) in <out>/pipeline with "
                             "these RMs")
    return parser


def parse_args(argv):
    parser = build_parser()
    args, rest = parser.parse_known_args(argv[1:])
    command_line = parse_command_line([argv[0], *rest], DEFAULT_CONFIG, SYNTHETIC_SCHEMA)
    if not command_line.workdir:
        parser.error("--workdir (a `python -m fgjax.train` workdir) is required")
    return args, command_line


def build_prompt_data(config, paths, num: int, stream: int, stage_dir: str) -> dict:
    """A data folder like the pipeline's: ``num`` new questions of its world (from a random
    stream the pipeline never uses) with gold answers, its dev split and tokenizer."""
    world = synthetic_qa.make_task(config.seed, 8, 8).world
    seed = int(np.random.SeedSequence([config.seed, stream]).generate_state(1)[0])
    records = [e.to_prompt_record() for e in synthetic_qa.make_examples(world, num, seed)]
    pipeline._write_json(os.path.join(stage_dir, "train.json"), records)
    shutil.copy(os.path.join(paths["data"], "dev.json"), os.path.join(stage_dir, "dev.json"))
    shutil.copytree(paths["tokenizer"], os.path.join(stage_dir, "tokenizer"))
    return {"questions": len(records)}


def build_policy_feedback(config, paths, prompts_dir: str, stage_dir: str) -> dict:
    """The pipeline's feedback stage on new prompts, then its own held-out records last."""
    summary = pipeline.build_feedback(config, prompts_dir, os.path.dirname(paths["sft"]),
                                      stage_dir)
    feedback = os.path.join(stage_dir, "train_feedback.json")
    with open(feedback) as f:
        records = json.load(f)
    with open(os.path.join(paths["feedback"], "train_feedback.json")) as f:
        policy_records = json.load(f)
    # The pipeline's R2 test records: those its train_rm run held out.
    held = policy_records[train_rm.training_records(len(policy_records),
                                                    config.rm.heldout_fraction):]
    pipeline._write_json(feedback, records + held)
    return dict(summary, new_records=len(records), heldout_records=len(held))


def main(argv):
    args, command_line = parse_args(argv)
    runner.use_compilation_cache(command_line.config)
    run(args, command_line)


def run(args, command_line) -> None:
    """The stages above in ``args.out`` for the pipeline workdir ``command_line.workdir``."""
    config = command_line.config
    workdir = os.path.abspath(command_line.workdir)
    paths = pipeline.stage_paths(workdir)
    pipeline.run_feedback_stages(config, workdir)  # cached when `fgjax.train` ran there
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    if args.init == "world_lm":
        lm_data = os.path.join(out, "world_lm_data")
        pipeline.run_stage(out, "world_lm_data",
                           lambda d: build_prompt_data(config, paths, args.fresh, 101, d))
        lm_config = copy.deepcopy(config)
        lm_config.sft.iterations = args.lm_steps
        pipeline.run_stage(out, "world_lm", lambda d: pipeline.run_sft(lm_config, lm_data, d))
        backbone = os.path.join(out, "world_lm", "hf")
    else:
        backbone = paths["sft"]
    prompts = os.path.join(out, "policy_prompts")
    pipeline.run_stage(out, "policy_prompts",
                       lambda d: build_prompt_data(config, paths, args.prompts, 102, d))
    counts = pipeline.run_stage(out, "policy_feedback",
                                lambda d: build_policy_feedback(config, paths, prompts, d))
    rm_config = copy.deepcopy(config)
    rm_config.rm.init = "sft"
    rm_config.rm.iterations = args.rm_steps
    rm_config.rm.learning_rate = args.rm_learning_rate
    rm_config.rm.num_eval = 0  # every held-out sentence
    rm_config.rm.num_train_eval = 2048  # train_* on the first 2,048: all 80,000 take minutes
    total = counts["new_records"] + counts["heldout_records"]
    # train_rm.training_records(total, f) is then exactly the new records.
    rm_config.rm.heldout_fraction = (counts["heldout_records"] - 0.5) / total
    rm_paths = dict(paths, sft=backbone,
                    feedback=os.path.join(out, "policy_feedback"))
    source = "the world LM" if args.init == "world_lm" else "the SFT policy"
    if args.rm_steps:
        summary = pipeline.run_stage(
            out, "rm_r2", lambda d: pipeline.run_reward_model(rm_config, "r2", rm_paths, d))
        report = summary["report"]
        print(f"R2 held-out segment accuracy on the policy's held-out feedback "
              f"({int(report['heldout_examples'])} sentences):")
        default_done = os.path.join(workdir, "rm_r2", pipeline.DONE)
        if os.path.isfile(default_done):  # the pipeline's own R2, for comparison
            with open(default_done) as f:
                default = json.load(f)["report"]
            print(f"  pipeline R2 (from SFT, {int(default['iterations'])} steps): "
                  f"{default['heldout_accuracy']:.3f} on its first "
                  f"{int(default['heldout_examples'])}")
        print(f"  R2 from {source}, {counts['new_records']} records on policy samples, "
              f"{args.rm_steps} steps: "
              f"{report['heldout_accuracy']:.3f}")
    for name, label, steps, unit in (("r1", "R1", args.r1_steps, "sub-sentences"),
                                     ("r3", "R3", args.r3_steps, "preference pairs"),
                                     ("holistic", "holistic RM", args.holistic_steps,
                                      "preference pairs")):
        if steps:
            step_config = copy.deepcopy(rm_config)
            step_config.rm.iterations = steps
            trained = pipeline.run_stage(
                out, f"rm_{name}",
                lambda d, c=step_config, n=name: pipeline.run_reward_model(c, n, rm_paths, d))
            print(f"  {label} from {source}, same records, {steps} steps: "
                  f"{trained['report']['heldout_accuracy']:.3f} on "
                  f"{int(trained['report']['heldout_examples'])} {unit}")
    if args.ppo:
        run_pipeline_with_these_rms(command_line, workdir, out)


def run_pipeline_with_these_rms(command_line, workdir: str, out: str) -> dict:
    """``pipeline.run`` in ``<out>/pipeline`` with this experiment's reward models (R2, and R1,
    R3 and the holistic RM where ``--r1_steps`` / ``--r3_steps`` / ``--holistic_steps`` trained
    them) in place of the pipeline's. The workdir's other finished stages that do not read them
    are copied there (data, SFT, feedback, the other RMs, each PPO variant whose RMs are not
    new); the rest (PPO on the new RMs, evaluation) run on them."""
    target = os.path.join(out, "pipeline")
    os.makedirs(target, exist_ok=True)
    reads = {"ppo_fine_grained": ("rm_r1", "rm_r2", "rm_r3"), "ppo_holistic": ("rm_holistic",)}
    reward_models = [rm for rms in reads.values() for rm in rms]
    trained = {name for name in reward_models
               if os.path.isfile(os.path.join(out, name, pipeline.DONE))}
    copies = {name: os.path.join(workdir, name)
              for name in ("data", "sft", "feedback", *reward_models, *reads)
              if os.path.isfile(os.path.join(workdir, name, pipeline.DONE))
              and not trained.intersection(reads.get(name, ()))}
    copies.update({name: os.path.join(out, name) for name in trained})
    for name, source in copies.items():
        if not os.path.isfile(os.path.join(target, name, pipeline.DONE)):
            shutil.rmtree(os.path.join(target, name), ignore_errors=True)
            shutil.copytree(source, os.path.join(target, name))
    return pipeline.run(dataclasses.replace(command_line, workdir=target))


if __name__ == "__main__":
    with runner.user_errors_as_one_line():
        main(sys.argv)
