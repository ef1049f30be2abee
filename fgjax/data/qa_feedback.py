"""QA-Feedback: statistics of the reward-model data builders, and the command line.

    python -m fgjax.data.qa_feedback stats --data_dir ../shared/data/qa_feedback \
        [--split dev] [--splitter syntok]
    python -m fgjax.data.qa_feedback download --data_dir data/qa_feedback [--splits dev test]

``stats`` prints one table: records, error and missing-info types, human preferences,
sentence and sub-sentence counts of ``prediction 1``, and per reward model the examples kept
and the label distribution, plus R3's coverage figures. ``download`` fetches the public
release files. A malformed file or a failed download ends the command with one line (for a
bad record: the file, the record index and the field) and exit status 2, as
``fgjax.errors.UserError`` does in every fgjax entry point.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from collections.abc import Sequence

from fgjax import text
from fgjax.data import qa_feedback_files as files
from fgjax.data import qa_feedback_schema as schema
from fgjax.data import rm_builders
from fgjax.errors import UserError

Stats = dict[str, dict[str, float]]


def _preference_counts(preferences: Sequence[Sequence[int]]) -> dict[str, float]:
    counts = collections.Counter(v for pref in preferences for v in pref)
    return {"first better": counts[1], "second better": counts[2], "tie": counts[0]}


def _label_counts(examples: Sequence[rm_builders.SegmentExample], err_name: str):
    counts = collections.Counter(label for e in examples for label in e.labels)
    return {
        "O": counts[rm_builders.LABEL_O],
        err_name: counts[rm_builders.LABEL_ERR],
        "ignored": counts[rm_builders.IGNORE_LABEL],
    }


def compute_stats(
    records: Sequence[schema.FeedbackRecord],
    splitter: str = rm_builders.DEFAULT_SPLITTER,
    num_prompts: int | None = None,
) -> Stats:
    """All figures of the ``stats`` command, as ``{section: {name: value}}``."""
    error_types = collections.Counter(e.error_type for r in records for e in r.feedback.errors)
    missing = collections.Counter(m.error_type for r in records for m in r.feedback.missing_info)
    data = {"feedback records": len(records)}
    if num_prompts is not None:
        data["prompts"] = num_prompts
    data["error spans"] = sum(error_types.values())
    data.update({f"  {t}": error_types[t] for t in schema.ERROR_TYPES})
    data["missing-info entries"] = sum(missing.values())
    data.update({f"  {t}": missing[t] for t in schema.MISSING_INFO_TYPES})

    answers = [r.predictions[0] for r in records]
    segments = {
        name: sum(len(rm_builders.answer_segments(a, level, splitter)) for a in answers)
        for name, level in (("sentences", "sentence"), ("sub-sentences", "subsentence"))
    }

    short_nf = sum(
        1
        for r in records
        for e in r.feedback.errors
        if not e.is_factual
        and len(r.predictions[0][e.start : e.end].split()) < rm_builders.MIN_NF_SPAN_WORDS
    )
    relevance = rm_builders.build_relevance_examples(records, splitter)
    factuality = rm_builders.build_factuality_examples(records, splitter)
    r1 = {"examples kept": len(relevance), "NF-ERR spans dropped (< 5 words)": short_nf}
    r1.update(_label_counts(relevance, "NF-ERR"))
    r2 = {"examples kept": len(factuality), "examples dropped (all ignored)":
          len(records) - len(factuality)}
    r2.update(_label_counts(factuality, "F-ERR"))

    coverage = rm_builders.build_coverage_records(records, splitter)
    r3: dict[str, float] = {
        "examples kept": len(coverage),
        "skipped (no information sentence)": len(records) - len(coverage),
        "information sentences": sum(len(c.info_sentences) for c in coverage),
    }
    for k in range(schema.NUM_PREDICTIONS):
        mean = sum(c.coverage[k] for c in coverage) / max(len(coverage), 1)
        r3[f"mean coverage, prediction {k + 1}"] = round(mean, 4)
    r3.update(_preference_counts([c.preference for c in coverage]))
    r3["pairs (non-tie)"] = len(rm_builders.build_completeness_pairs(records, coverage))

    holistic = _preference_counts([r.preference for r in records])
    holistic["pairs (non-tie)"] = len(rm_builders.build_holistic_pairs(records))
    return {
        "data": data,
        "prediction 1 segments": segments,
        "R1 relevance (sub-sentence)": r1,
        "R2 factuality (sentence)": r2,
        "R3 completeness (coverage preferences)": r3,
        "holistic (human preferences)": holistic,
    }


def format_stats(stats: Stats) -> str:
    width = max(len(name) for section in stats.values() for name in section) + 2
    lines = []
    for section, values in stats.items():
        lines.append(f"[{section}]")
        lines += [f"  {name:<{width}}{value:>10}" for name, value in values.items()]
    return "\n".join(lines)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fgjax.data.qa_feedback")
    commands = parser.add_subparsers(dest="command", required=True)
    stats = commands.add_parser("stats", help="print the reward-model data statistics")
    stats.add_argument("--data_dir", required=True, help="folder with {split}_feedback.json")
    stats.add_argument("--split", default="dev", choices=files.FEEDBACK_SPLITS)
    stats.add_argument("--splitter", default=rm_builders.DEFAULT_SPLITTER,
                       choices=sorted(text.SENTENCE_SPLITTERS), help="fgjax.text splitter")
    download = commands.add_parser("download", help="fetch the public release files")
    download.add_argument("--data_dir", required=True, help="folder to write the files to")
    download.add_argument("--splits", nargs="+", default=["train", "dev", "test"],
                          choices=files.PROMPT_SPLITS)
    download.add_argument("--base_url", default=files.RELEASE_BASE_URL)
    download.add_argument("--overwrite", action="store_true")
    return parser.parse_args(argv)


def _stats(args: argparse.Namespace) -> None:
    records = files.load_feedback_split(args.data_dir, args.split)
    prompts_file = files.prompts_path(args.data_dir, args.split)
    num_prompts = len(schema.load_prompts(prompts_file)) if prompts_file.exists() else None
    print(f"QA-Feedback {args.split} split in {os.fspath(args.data_dir)} "
          f"(splitter: {args.splitter})")
    print(format_stats(compute_stats(records, args.splitter, num_prompts)))


def _download(args: argparse.Namespace) -> None:
    written = files.download(
        args.data_dir, args.splits, base_url=args.base_url, overwrite=args.overwrite
    )
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"all files already in {args.data_dir} (use --overwrite to fetch again)")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        if args.command == "stats":
            _stats(args)
        else:
            _download(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
