"""QA evaluation end to end on tiny random models: JSONL + summary, ROUGE as rouge-score,
segment-weighted ratios, R3 normalised by its stored statistics."""

import json
import types

import jax
import pytest
from conftest import REPO_ROOT
from rouge_score import rouge_scorer

from fgjax import evaluate, runner
from fgjax.data import load_feedback_split
from fgjax.models import init_model, save_pretrained
from fgjax.rouge import sentences_per_line
from fgjax.text import split_sentences
from fgjax.tokenizers import train_tokenizer
from fgjax.trainer.supervised import fresh_hf_config

EVAL_CONFIG = str(REPO_ROOT / "configs" / "eval_tiny.py")
SIZES = types.SimpleNamespace(family="gpt2", hidden_size=16, intermediate_size=32, num_layers=1,
                              num_heads=2, max_positions=256)


@pytest.fixture(scope="module")
def exports(tmp_path_factory, qa_feedback_dir):
    root = tmp_path_factory.mktemp("eval_models")
    records = load_feedback_split(qa_feedback_dir, "dev")
    tokenizer = train_tokenizer([t for r in records for t in (r.question, *r.predictions)],
                                "bpe", 512, str(root / "tokenizer"))
    dirs = {}
    for i, (name, head, labels) in enumerate([("policy", "lm", 2), ("r1", "token_cls", 2),
                                              ("r2", "token_cls", 2), ("r3", "seq_reg", 1)]):
        model, params = init_model(fresh_hf_config(SIZES, tokenizer, labels),
                                   jax.random.key(i), head)
        dirs[name] = root / name
        save_pretrained(model, params, str(dirs[name]))
        tokenizer.save_pretrained(str(dirs[name]))
    (dirs["r3"] / evaluate.STATS_FILE).write_text(json.dumps({"mean": 0.5, "std": 2.0}))
    return dirs


def eval_argv(workdir, exports, qa_feedback_dir, *overrides):
    return [
        "prog", f"--config={EVAL_CONFIG}", f"--workdir={workdir}",
        f"--config.data.dir={qa_feedback_dir}", f"--config.policy.path={exports['policy']}",
        "--config.data.num_prompts=20", "--config.eval.batch_size=8",
        "--config.eval.max_new_tokens=24", *overrides,
    ]  # fmt: skip


def test_evaluation_writes_samples_and_summary(tmp_path, exports, qa_feedback_dir, capsys):
    argv = eval_argv(tmp_path, exports, qa_feedback_dir, f"--config.rm.relevance={exports['r1']}",
                     f"--config.rm.factuality={exports['r2']}",
                     f"--config.rm.completeness={exports['r3']}")
    runner.main(evaluate.run, argv=argv)
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(samples) == summary["samples"] == 20  # 20 prompts over 3 batches (last padded)
    assert (tmp_path / "summary.txt").read_text().strip() in capsys.readouterr().out
    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=False)
    split = lambda text: split_sentences(text, "syntok")
    for s in samples:
        want = max(
            scorer.score(sentences_per_line(ref, split), sentences_per_line(s["answer"], split))[
                "rougeLsum"
            ].fmeasure
            for ref in s["references"]
        )
        assert s["rouge_lsum"] == pytest.approx(100 * want)
        assert 1 <= s["length_tokens"] <= 24
        # The last response token always closes a segment; errors are a subset.
        assert 0 <= s["relevance_errors"] <= s["relevance_segments"]
        assert s["relevance_segments"] >= 1
        assert s["factuality_segments"] <= s["relevance_segments"]
    total = sum(s["relevance_segments"] for s in samples)
    errors = sum(s["relevance_errors"] for s in samples)
    assert summary["relevance_ratio"] == pytest.approx((total - errors) / total)
    assert summary["completeness"] == pytest.approx(
        sum(s["completeness_score"] for s in samples) / 20
    )
    assert summary["rouge_lsum"] == pytest.approx(sum(s["rouge_lsum"] for s in samples) / 20)
    # Greedy decoding is deterministic: a second run gives the same answers.
    runner.main(evaluate.run, argv=[*argv[:2], f"--workdir={tmp_path / 'again'}", *argv[3:]])
    again = (tmp_path / "again" / "samples.jsonl").read_text()
    assert again == (tmp_path / "samples.jsonl").read_text()


def test_completeness_without_statistics_is_a_one_line_error(tmp_path, exports, qa_feedback_dir,
                                                              capsys):
    argv = eval_argv(tmp_path, exports, qa_feedback_dir,
                     f"--config.rm.completeness={exports['r1']}")
    with pytest.raises(SystemExit) as info:
        runner.main(evaluate.run, argv=argv)
    assert info.value.code == 2
    assert "reward_stats.json is missing" in capsys.readouterr().err
