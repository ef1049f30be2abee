"""SFT on the QA-Feedback dev split: perplexity halves, checkpoints and the HF export load."""

import json

import jax
import numpy as np
import pytest
from conftest import REPO_ROOT

from fgjax import runner, sft
from fgjax.checkpoint import step_dirs
from fgjax.config import parse_command_line
from fgjax.models import load_pretrained
from fgjax.tokenizers import load_tokenizer

SFT_CONFIG = str(REPO_ROOT / "configs" / "sft_tiny.py")


def sft_argv(workdir, tokenizer_dir, qa_feedback_dir, *overrides):
    return [
        "prog", f"--config={SFT_CONFIG}", f"--workdir={workdir}",
        f"--config.tokenizer.path={tokenizer_dir}", f"--config.data.dir={qa_feedback_dir}",
        "--config.logging.progress=False", "--config.logging.tensorboard=False", *overrides,
    ]  # fmt: skip


def test_sft_halves_dev_answer_perplexity(tmp_path, qa_feedback_dir):
    workdir, tokenizer_dir = tmp_path / "run", tmp_path / "tokenizer"
    argv = sft_argv(workdir, tokenizer_dir, qa_feedback_dir, "--config.num_iterations=40")
    report = sft.run(parse_command_line(argv))  # trains the tokenizer on the dev text first
    assert report["train_rows"] == report["eval_rows"] == 50
    assert report["final_perplexity"] < report["initial_perplexity"] / 2, report
    assert json.loads((workdir / "sft_report.json").read_text()) == report
    assert step_dirs(workdir / "checkpoints") == [20, 40]
    metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    evals = [m["eval/perplexity"] for m in metrics if "eval/perplexity" in m]
    assert len(evals) == 2 and evals[-1] == pytest.approx(report["final_perplexity"], rel=1e-4)

    # The HF export reproduces the final perplexity.
    tokenizer = load_tokenizer(str(workdir / "hf"))
    model, params = load_pretrained(str(workdir / "hf"), "lm")
    config = parse_command_line(argv).config
    prompts, answers = sft.load_examples(config)
    arrays = sft.tokenize(tokenizer, prompts[:16], answers[:16], 32, 64)
    loss_fn = sft.make_loss_fn(model, tokenizer.pad_token_id)
    nll = jax.jit(loss_fn)(params, arrays)[1]
    exported_ppl = np.exp(float(nll["sum/nll"]) / float(nll["sum/tokens"]))
    assert exported_ppl < report["initial_perplexity"] / 2


def test_sft_t5_entry_point_and_config_errors(tmp_path, qa_feedback_dir, capsys):
    workdir, tokenizer_dir = tmp_path / "run", tmp_path / "tokenizer"
    overrides = ("--config.model.family=t5", "--config.tokenizer.kind=sentencepiece",
                 "--config.num_iterations=20", "--config.eval_every=10",
                 "--config.checkpoint.every=10")
    runner.main(sft.run, argv=sft_argv(workdir, tokenizer_dir, qa_feedback_dir, *overrides))
    report = json.loads((workdir / "sft_report.json").read_text())
    assert report["final_perplexity"] < report["initial_perplexity"] / 2, report
    assert load_pretrained(str(workdir / "hf"), "lm")[0].is_encoder_decoder

    with pytest.raises(SystemExit) as info:
        runner.main(sft.run, argv=sft_argv(tmp_path / "bad", tokenizer_dir, qa_feedback_dir,
                                           "--config.sft.batch_size=6"))
    assert info.value.code == 2
    assert "'sft.batch_size' = 6 is not divisible" in capsys.readouterr().err
