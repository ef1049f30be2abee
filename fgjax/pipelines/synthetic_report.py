"""The text ``python -m fgjax.train`` prints at the end of the synthetic QA pipeline (and writes
to ``results.txt``): the oracle's error rates per policy, the SFT policy's on the sampled
answers the feedback is given on, and the reward models' agreement with the oracle."""

from __future__ import annotations

from fgjax import train_rm
from fgjax.data.synthetic_oracle import METRIC_TYPES


def format_results(results: dict, sft_samples: dict, rm_reports: dict[str, dict]) -> str:
    """``results``: oracle metrics per policy; ``sft_samples``: the oracle on the SFT policy's
    sampled train answers; ``rm_reports``: each reward model's ``train_rm`` report."""
    sampled = ("the SFT policy's sampled answers to the train prompts (the feedback's): "
               + ", ".join(f"{t} {sft_samples[f'error_rate/{t}']:.3f}"
                           for t in (*METRIC_TYPES, "any")))
    return "\n".join((format_table(results), sampled, format_rm_agreement(rm_reports)))


def format_table(results: dict) -> str:
    names = list(results)
    width = max(len(n) for n in names) + 2
    lines = ["oracle error rate (share of answers with >= 1 error of the type), held-out prompts",
             f"{'error type':18}" + "".join(f"{n:>{width}}" for n in names)]
    for error in (*METRIC_TYPES, "any"):
        key = f"error_rate/{error}"
        lines.append(f"{error:18}" + "".join(f"{results[n][key]:>{width}.3f}" for n in names))
    lines.append(f"{'errors per answer':18}" + "".join(
        f"{results[n]['errors_per_answer']:>{width}.3f}" for n in names))
    lines.append(f"{'mean words':18}" + "".join(f"{results[n]['mean_words']:>{width}.1f}"
                                                for n in names))
    lines.append(f"{'fact recall':18}" + "".join(f"{results[n]['fact_recall']:>{width}.3f}"
                                                 for n in names))
    return "\n".join(lines)


# The bar for R1 / R2 segment accuracy against the oracle.
SEGMENT_ACCURACY_TARGET = 0.85


def format_rm_agreement(reports: dict[str, dict]) -> str:
    """The reward models' held-out agreement with the oracle: R1 / R2 segment accuracy next to
    always predicting the more frequent label, and error F1; R3 / holistic pairwise accuracy.
    Below the target, where the full experiment's recipe for better R1 / R2 is."""
    lines = ["reward models vs the oracle on held-out answers:"]
    weak = []
    for name, report in reports.items():
        if name in train_rm.TOKEN_CLS:
            unit = "sub-sentences" if name == "r1" else "sentences"
            # Reports cached before 2026-12-05 lack the majority baseline.
            majority = report.get("heldout_majority_accuracy")
            baseline = "" if majority is None else f" (always the majority label: {majority:.3f})"
            lines.append(
                f"  {name:9} segment accuracy {report['heldout_accuracy']:.3f}{baseline}, error "
                f"F1 {report['heldout_error_f1']:.3f}, on {report['heldout_examples']:.0f} {unit}")
            if report["heldout_accuracy"] < SEGMENT_ACCURACY_TARGET:
                weak.append(name.upper())
        else:
            lines.append(f"  {name:9} pairwise accuracy {report['heldout_accuracy']:.3f} on "
                         f"{report['heldout_examples']:.0f} preference pairs")
    if weak:
        lines.append(
            f"  {' and '.join(weak)} below {SEGMENT_ACCURACY_TARGET}: more feedback and steps "
            f"lift {'it' if len(weak) == 1 else 'them'} (experiments/synthetic_qa/"
            "r2_world_lm.py --init=sft --r1_steps=3000 --ppo; experiments/synthetic_qa/REPORT.md)")
    return "\n".join(lines)
