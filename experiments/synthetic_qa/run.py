"""The synthetic fine-grained QA experiment: several seeds, curves, and weight steering.

    python experiments/synthetic_qa/run.py --seeds=0,1,2 --workdir=runs/synthetic_qa_exp \
        [--config.ppo.iterations=60 ...]

For each seed, the whole pipeline of ``python -m fgjax.train`` (``fgjax.pipelines.synthetic_qa``,
its stages cached in ``<workdir>/seed<k>/``) with ``--config.seed=<k>``; on the steering seeds,
two more fine-grained PPO runs from the same SFT policy and reward models, one with R1's
weight raised and one with R3's weight raised (``--r1_high`` / ``--r3_high``), evaluated by the
oracle like the others. With ``--r2_world_lm``, ``r2_world_lm.py --ppo`` then runs per seed in
``<workdir>/seed<k>_r2`` (R2 from a backbone pre-trained on the world, ~40 min more per seed on
2 cores) and its fine-grained RLHF joins the tables and curves as a further policy; with
``--r2_sft_large``, likewise ``r2_world_lm.py --ppo --init=sft`` in ``<workdir>/seed<k>_r2sft``
(R2 from the SFT policy, as the pipeline's, on the same large feedback); with
``--r12_sft_large``, ``--init=sft --r1_steps=3000`` in ``<workdir>/seed<k>_r12sft`` (R1 too);
with ``--r123_sft_large``, ``--init=sft --r1_steps=3000 --r3_steps=9000`` in
``<workdir>/seed<k>_r123sft`` (R1, R2 and R3 all on the large feedback).
``--h_sft_large`` is their control with equal feedback: ``--init=sft --rm_steps=0
--holistic_steps=9000`` (R2's steps) in ``<workdir>/seed<k>_hsft``, holistic RLHF whose
preference RM is trained on the same large feedback. ``--steer_rm_variants=r12_sft_large``
runs the two steering runs on that policy's reward models as well (in
``<workdir>/seed<k>_r12sft/pipeline``), with a steering table of their own.
Then, in ``--out`` (default: this folder):

- ``results.md``: final oracle error rates (mean +- std over seeds) of SFT, holistic and
  fine-grained RLHF, per seed with the paired gap, the SFT policy's error rates per seed
  (greedy held-out and sampled train answers), the reward models' held-out agreement with the
  oracle, the steering table and the seconds per stage;
- ``curves_error_rates.png``: oracle error rates of the greedy held-out answers per PPO
  iteration, fine-grained vs holistic (mean line, min-max band over seeds);
- ``curves_rm_accuracy.png``: R1 / R2 segment accuracy against the oracle on those answers
  per PPO iteration (do the reward models stay right as the policy moves?);
- ``results.json``: every number above.

Any ``--config.<key>=<value>`` is passed to every seed's pipeline (keys:
``python -m fgjax.train --help``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
from typing import NamedTuple

import numpy as np

from fgjax import runner
from fgjax.config import CommandLine, parse_command_line
from fgjax.data.synthetic_oracle import METRIC_TYPES
from fgjax.pipelines import synthetic_qa as pipeline
from fgjax.pipelines.synthetic_config import SYNTHETIC_SCHEMA

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "..", "..", "configs", "synthetic_qa.py")
VARIANTS = {"fine_grained": "fine-grained RLHF", "holistic": "holistic RLHF"}


class RMVariant(NamedTuple):
    """RLHF with reward models of ``r2_world_lm.py --ppo`` (run per seed in
    ``<workdir>/seed<k><suffix>``), reported as a further policy; its run.py flag takes that
    script's further options in one quoted string."""
    policy: str  # its column in the tables
    rms: tuple[tuple[str, str], ...]  # (stage, row in the reward-model table) of its new RMs
    curve: str  # its key in the curves
    suffix: str
    options: tuple[str, ...]  # r2_world_lm.py options before the user's
    about: str  # what its reward models are, for --help
    ppo: str = "fine_grained"  # which PPO variant of that run it is (a key of VARIANTS)

    def help(self) -> str:
        command = " ".join(("r2_world_lm.py --ppo", *self.options))
        return (f"also run {command} per seed in <workdir>/seed<k>{self.suffix} ({self.about}; "
                "further options such as '--rm_steps=9000' in one quoted string) and report "
                f"{self.policy} next to the others")


RM_VARIANTS = {  # run.py flag: variant
    "r2_world_lm": RMVariant(
        "fine-grained RLHF, world-LM R2", (("rm_r2", "r2, world LM"),),
        "fine_grained_world_lm_r2", "_r2", (), "R2 from a backbone pre-trained on the world"),
    "r2_sft_large": RMVariant(
        "fine-grained RLHF, large-feedback R2", (("rm_r2", "r2, large feedback"),),
        "fine_grained_sft_large_r2", "_r2sft", ("--init=sft",),
        "R2 from the SFT policy on the same large feedback"),
    # Its R2 is r2_sft_large's recipe, so only its R1 gets a row.
    "r12_sft_large": RMVariant(
        "fine-grained RLHF, large-feedback R1 + R2", (("rm_r1", "r1, large feedback"),),
        "fine_grained_sft_large_r1_r2", "_r12sft", ("--init=sft", "--r1_steps=3000"),
        "R1 and R2 from the SFT policy on the large feedback"),
    # The control with equal feedback: holistic RLHF whose preference RM sees the same records.
    "h_sft_large": RMVariant(
        "holistic RLHF, large-feedback RM", (("rm_holistic", "holistic, large feedback"),),
        "holistic_sft_large", "_hsft", ("--init=sft", "--rm_steps=0", "--holistic_steps=9000"),
        "its preference RM from the SFT policy on the same large feedback", ppo="holistic"),
    # Its R1 and R2 are r12_sft_large's recipes, so only its R3 gets a row.
    "r123_sft_large": RMVariant(
        "fine-grained RLHF, large-feedback R1 + R2 + R3", (("rm_r3", "r3, large feedback"),),
        "fine_grained_sft_large_r1_r2_r3", "_r123sft",
        ("--init=sft", "--r1_steps=3000", "--r3_steps=9000"),
        "every fine-grained RM from the SFT policy on the large feedback"),
}
CURVE_VARIANTS = {**VARIANTS, **{v.curve: v.policy for v in RM_VARIANTS.values()}}
CURVE_KEYS = [f"error_rate/{t}" for t in (*METRIC_TYPES, "any")] + [
    "errors_per_answer", "fact_recall", "mean_words"]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--steer_seeds", default=None,
                        help="seeds with the two weight-steering runs (default: all; '' for none)")
    parser.add_argument("--r1_high", type=float, default=3.0, help="R1 weight of the R1 run")
    parser.add_argument("--r3_high", type=float, default=3.0, help="R3 weight of the R3 run")
    parser.add_argument("--steer_rm_variants", default="",
                        help="comma-separated extra-policy flags (e.g. r12_sft_large) whose "
                             "reward models get the two steering runs too, on the steering "
                             "seeds")
    parser.add_argument("--out", default=HERE, help="folder for results.md / plots")
    for flag, variant in RM_VARIANTS.items():
        parser.add_argument(f"--{flag}", nargs="?", const="", default=None,
                            metavar="'R2_WORLD_LM_OPTIONS'", help=variant.help())
    args, rest = parser.parse_known_args(argv[1:])
    args.steer_rm_variants = [f for f in args.steer_rm_variants.split(",") if f]
    for flag in args.steer_rm_variants:
        if flag not in RM_VARIANTS or getattr(args, flag) is None:
            parser.error(f"--steer_rm_variants: {flag!r} is not one of the extra-policy flags "
                         f"given ({', '.join('--' + f for f in RM_VARIANTS)})")
    if not any(a.startswith("--workdir") for a in rest):
        rest.append("--workdir=runs/synthetic_qa_exp")
    command_line = parse_command_line([argv[0], *rest], DEFAULT_CONFIG, SYNTHETIC_SCHEMA)
    seeds = [int(s) for s in args.seeds.split(",")]
    steer = seeds if args.steer_seeds is None else [int(s) for s in args.steer_seeds.split(",")
                                                    if s]
    return args, command_line, seeds, steer


def run_seed(base: CommandLine, seed: int, steer: bool, args) -> dict:
    config = base.config.copy_and_resolve_references()
    config.seed = seed
    workdir = os.path.join(os.path.abspath(base.workdir), f"seed{seed}")
    evaluation = pipeline.run(CommandLine(config, workdir, None))
    out = {"final": evaluation["results"], "rm": {}, "curves": {}, "steering": None}
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    # The oracle on the SFT policy's sampled answers to the train prompts (the first of the 4
    # samples per prompt), the answers the feedback is given on.
    out["sft_samples"] = summary["feedback"]["sft_samples"]
    out["seconds"] = {stage: s["seconds"] for stage, s in summary.items() if "seconds" in s}
    for name in ("r1", "r2", "r3", "holistic"):
        with open(os.path.join(workdir, f"rm_{name}", "rm_report.json")) as f:
            out["rm"][name] = json.load(f)
    for variant in VARIANTS:
        out["curves"][variant] = read_eval_curve(os.path.join(workdir, f"ppo_{variant}"),
                                                 out["final"]["SFT"])
    if steer:
        out["steering"], seconds = run_steering(config, workdir, args)
        out["seconds"].update(seconds)
    out["variant_steering"] = {}
    for flag, variant in RM_VARIANTS.items():
        if getattr(args, flag) is not None:
            target = add_rm_variant(out, config, workdir, variant, getattr(args, flag))
            if steer and flag in args.steer_rm_variants:
                out["variant_steering"][flag], _ = run_steering(config, target, args)
    return out


def run_steering(config, workdir: str, args) -> tuple[dict, dict]:
    """Two more fine-grained PPO runs in ``workdir`` (a pipeline workdir whose fine-grained
    RLHF has run) from its SFT policy and reward models, one with R1's weight raised and one
    with R3's, and the oracle on all three: ``(metrics per policy, seconds per stage)``."""
    paths = pipeline.stage_paths(workdir)
    policies = {"fine-grained RLHF": paths["ppo_fine_grained"]}
    seconds = {}
    for rm, weight in (("r1", args.r1_high), ("r3", args.r3_high)):
        variant_config = config.copy_and_resolve_references()
        variant_config.rewards[f"{rm}_weight"] = weight
        stage = f"ppo_steer_{rm}"
        summary = pipeline.run_stage(workdir, stage, lambda d, c=variant_config: pipeline.
                                     run_ppo(c, "fine_grained", paths, d))
        seconds[stage] = summary["seconds"]
        policies[f"{rm.upper()} x{weight:g}"] = os.path.join(
            workdir, stage, pipeline.ppo_job.POLICY_EXPORT_DIR)
    steering = pipeline.run_stage(workdir, "evaluate_steering", lambda d: pipeline.
                                  evaluate_policies(config, paths, d, policies))
    seconds["evaluate_steering"] = steering["seconds"]
    return steering["results"], seconds


def add_rm_variant(out: dict, config, workdir: str, variant: RMVariant, options: str) -> str:
    """``r2_world_lm.py --ppo`` for this seed; its fine-grained RLHF (the pipeline's other
    stages, its reward models) joins ``out`` as ``variant.policy``. Returns that pipeline's
    workdir."""
    spec = importlib.util.spec_from_file_location("r2_world_lm",
                                                  os.path.join(HERE, "r2_world_lm.py"))
    r2_world_lm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(r2_world_lm)
    r2_out = workdir + variant.suffix
    r2_args = r2_world_lm.build_parser().parse_args(
        [f"--out={r2_out}", "--ppo", *variant.options, *shlex.split(options)])
    r2_world_lm.run(r2_args, CommandLine(config, workdir, None))
    target = os.path.join(r2_out, "pipeline")
    with open(os.path.join(target, "summary.json")) as f:
        summary = json.load(f)
    out["final"][variant.policy] = summary["evaluate"]["results"][VARIANTS[variant.ppo]]
    for stage, row in variant.rms:
        with open(os.path.join(r2_out, stage, "rm_report.json")) as f:
            out["rm"][row] = json.load(f)
    out["curves"][variant.curve] = read_eval_curve(
        os.path.join(target, f"ppo_{variant.ppo}"), out["final"]["SFT"])
    return target


def read_eval_curve(ppo_dir: str, start: dict) -> dict:
    """``{key: [[iteration, value], ...]}`` of the logged oracle evaluations of one PPO run,
    starting at iteration 0 with ``start`` (the SFT policy's oracle metrics, same prompts)."""
    curve = {f"oracle/{k}": [[0, v]] for k, v in start.items()}
    with open(os.path.join(ppo_dir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            for key, value in row.items():
                if key.startswith(("eval/oracle/", "eval/rm_accuracy/", "eval/rm_error_f1/")):
                    curve.setdefault(key.removeprefix("eval/"), []).append([row["step"], value])
    return curve


def mean_std(values) -> str:
    """Mean +- the sample standard deviation (ddof 1) over seeds; 0 for one seed."""
    values = np.asarray(values, np.float64)
    return f"{values.mean():.3f} +- {values.std(ddof=1 if len(values) > 1 else 0):.3f}"


def final_table(per_seed: list[dict]) -> str:
    names = list(per_seed[0]["final"])
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key in CURVE_KEYS:
        cells = [mean_std([s["final"][n][key] for s in per_seed]) for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_seed_table(seeds: list[int], per_seed: list[dict]) -> str:
    """error_rate/any / errors_per_answer of each policy per seed, and the paired gaps
    holistic - fine-grained of error_rate/any (positive: fine-grained RLHF is better): holistic
    RLHF against every fine-grained policy, and holistic RLHF on the large-feedback preference RM
    against the fine-grained policies on large-feedback RMs."""
    names = list(per_seed[0]["final"])
    fine = [n for n in names if n.startswith("fine-grained")]
    large_holistic = RM_VARIANTS["h_sft_large"].policy
    pairs = [("holistic RLHF", n) for n in fine]
    if large_holistic in names:
        pairs += [(large_holistic, n) for n in fine if "large-feedback" in n]

    def label(pair):
        holistic = "holistic" if pair[0] == "holistic RLHF" else "holistic, large-feedback RM"
        return f"{holistic} - {pair[1].removesuffix(' RLHF')}, any"

    lines = ["| seed | " + " | ".join(names) + " | " + " | ".join(map(label, pairs)) + " |",
             "|---" * (len(names) + len(pairs) + 1) + "|"]
    gaps = {p: [s["final"][p[0]]["error_rate/any"] - s["final"][p[1]]["error_rate/any"]
                for s in per_seed] for p in pairs}
    for i, (seed, s) in enumerate(zip(seeds, per_seed)):
        final = s["final"]
        cells = [f"{final[n]['error_rate/any']:.3f} / {final[n]['errors_per_answer']:.3f}"
                 for n in names] + [f"{gaps[p][i]:+.3f}" for p in pairs]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    lines.append("| mean +- std | " + " | ".join(
        [mean_std([s["final"][n]["error_rate/any"] for s in per_seed]) for n in names]
        + [mean_std(gaps[p]) for p in pairs]) + " |")
    return "\n".join(lines)


def sft_rates_table(seeds: list[int], per_seed: list[dict]) -> str:
    """The SFT policy's error rates per seed: greedy answers to the held-out prompts (the
    evaluation) and sampled answers to the train prompts (what the feedback is given on)."""
    head = " | ".join(f"seed {k}" for k in seeds)
    lines = [f"| error type | {head} | min over seeds |", "|---" * (len(seeds) + 2) + "|"]
    for error in (*METRIC_TYPES, "any"):
        key = f"error_rate/{error}"
        pairs = [(s["final"]["SFT"][key], s["sft_samples"][key]) for s in per_seed]
        cells = [f"{greedy:.3f} / {sampled:.3f}" for greedy, sampled in pairs]
        low = f"{min(p[0] for p in pairs):.3f} / {min(p[1] for p in pairs):.3f}"
        lines.append(f"| {error} | " + " | ".join(cells) + f" | {low} |")
    return "\n".join(lines)


def seconds_table(seeds: list[int], per_seed: list[dict]) -> str:
    stages = list(dict.fromkeys(k for s in per_seed for k in s["seconds"]))
    head = " | ".join(f"seed {k}" for k in seeds)
    lines = [f"| stage | {head} |", "|---" * (len(seeds) + 1) + "|"]
    rows = {stage: [s["seconds"].get(stage, 0.0) for s in per_seed] for stage in stages}
    rows["total"] = [sum(s["seconds"].values()) for s in per_seed]
    for stage, values in rows.items():
        lines.append(f"| {stage} | " + " | ".join(f"{v:.0f}" for v in values) + " |")
    return "\n".join(lines)


def majority_accuracy(report: dict) -> float | None:
    """A token-classification RM's held-out accuracy when always predicting the majority class.
    With P errors among N segments, accuracy a = 1 - (P/N)(1 - 2r + r/p) for error precision p
    and recall r, so the error share P/N follows from the report; None when p or r is 0, or
    both are 1 (a perfect classifier's report does not fix P/N)."""
    a, p, r = (report["heldout_accuracy"], report["heldout_error_precision"],
               report["heldout_error_recall"])
    if p <= 0 or r <= 0 or (p >= 1 and r >= 1):
        return None
    share = (1.0 - a) / (1.0 - 2.0 * r + r / p)
    return max(share, 1.0 - share)


def rm_table(per_seed: list[dict]) -> str:
    lines = ["| reward model | held-out accuracy | held-out majority class | held-out error F1 "
             "| train accuracy |", "|---|---|---|---|---|"]
    for name in per_seed[0]["rm"]:
        reports = [s["rm"][name] for s in per_seed]
        f1 = majority = "-"
        if "heldout_error_f1" in reports[0]:
            f1 = mean_std([r["heldout_error_f1"] for r in reports])
            baselines = [majority_accuracy(r) for r in reports]
            if None not in baselines:
                majority = mean_std(baselines)
        lines.append(f"| {name} | {mean_std([r['heldout_accuracy'] for r in reports])} | "
                     f"{majority} | {f1} | {mean_std([r['train_accuracy'] for r in reports])} |")
    return "\n".join(lines)


# What each reward model targets, as oracle counts per answer (REFERENCE.md: R1 scores
# sub-sentences for NF-ERR, every span type but Wrong-Grounding / Unverifiable; R2 sentences
# for F-ERR; R3 completeness).
ERROR_GROUPS = {
    "R1 target: NF-ERR spans per answer": ("Irrelevant", "Redundant", "Incoherent"),
    "R2 target: F-ERR spans per answer": ("Wrong-Grounding", "Unverifiable"),
    "R3 target: missing facts per answer": ("Missing",),
}


def group_count(metrics: dict, types: tuple[str, ...]) -> float:
    return sum(metrics[f"mean_count/{t}"] for t in types)


def steering_table(steered: list[dict | None]) -> str:
    """Mean +- std over seeds of each steering policy's oracle metrics (``None``: a seed
    without steering runs)."""
    steered = [s for s in steered if s]
    if not steered:
        return "(no steering runs)"
    names = list(steered[0])
    keys = ["mean_words", "fact_recall", "errors_per_answer", "error_rate/Missing",
            "error_rate/Irrelevant", "error_rate/Redundant", "error_rate/Incoherent",
            "error_rate/Wrong-Grounding", "error_rate/Unverifiable"]
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for group, types in ERROR_GROUPS.items():
        lines.append(f"| {group} | " + " | ".join(
            mean_std([group_count(s[n], types) for s in steered]) for n in names) + " |")
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(mean_std([s[n][key] for s in steered])
                                                 for n in names) + " |")
    return "\n".join(lines)


def plot_curves(per_seed: list[dict], keys: list[str], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 3
    rows = -(-len(keys) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for variant, label in CURVE_VARIANTS.items():
            curves = [s["curves"][variant][key] for s in per_seed
                      if key in s["curves"].get(variant, {})]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            x = np.asarray([point[0] for point in curves[0][:length]])
            y = np.asarray([[point[1] for point in c[:length]] for c in curves], np.float64)
            line, = ax.plot(x, y.mean(0), label=label)
            ax.fill_between(x, y.min(0), y.max(0), color=line.get_color(), alpha=0.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("PPO iteration", fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"{title} (mean, min-max band over {len(per_seed)} seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    args, command_line, seeds, steer = parse_args(argv)
    runner.use_compilation_cache(command_line.config)  # seeds after the first load its programs
    per_seed = []
    for seed in seeds:
        print(f"===== seed {seed} =====", flush=True)
        per_seed.append(run_seed(command_line, seed, seed in steer, args))
    os.makedirs(args.out, exist_ok=True)
    plot_curves(per_seed, [f"oracle/{k}" for k in CURVE_KEYS],
                os.path.join(args.out, "curves_error_rates.png"),
                "oracle metrics of greedy held-out answers")
    plot_curves(per_seed, ["rm_accuracy/r1", "rm_accuracy/r2", "rm_error_f1/r1",
                           "rm_error_f1/r2"],
                os.path.join(args.out, "curves_rm_accuracy.png"),
                "R1 / R2 agreement with the oracle on the policy's answers")
    report = "\n\n".join([
        f"seeds: {seeds}; steering seeds: {steer}; workdir: {command_line.workdir}",
        "## Final oracle metrics on held-out prompts (mean +- sample std over seeds)",
        final_table(per_seed),
        "## Per seed: error_rate/any / errors_per_answer (held-out, greedy)",
        per_seed_table(seeds, per_seed),
        "## SFT error rates per seed: greedy held-out answers / sampled train answers "
        "(the feedback's)",
        sft_rates_table(seeds, per_seed),
        "## Reward models against the oracle (held-out feedback records)",
        rm_table(per_seed),
        f"## Weight steering (fine-grained RLHF; R1 x{args.r1_high:g}, R3 x{args.r3_high:g})",
        steering_table([s["steering"] for s in per_seed]),
        *[part for flag in args.steer_rm_variants for part in (
            f"## Weight steering with the reward models of {RM_VARIANTS[flag].policy} "
            f"(R1 x{args.r1_high:g}, R3 x{args.r3_high:g})",
            steering_table([s["variant_steering"].get(flag) for s in per_seed]))],
        "## Seconds per stage (as run; a cached stage keeps the time of its run)",
        seconds_table(seeds, per_seed),
    ])
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(report + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"seeds": seeds, "per_seed": per_seed}, f, indent=1)
    print(report)


if __name__ == "__main__":
    with runner.user_errors_as_one_line():
        main(sys.argv)
