"""Reward-model training on 50 dev examples: the tiny models fit them (proof that the losses and
the label positions are right), the held-out report is printed, the exports load as fused
reward models and R3 stores its score statistics."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO_ROOT

from fgjax import runner, train_rm
from fgjax.config import parse_command_line
from fgjax.data import rm_builders
from fgjax.rewards import RewardModelSpec
from fgjax.rewards.fused import load_reward_models
from fgjax.tokenizers import load_tokenizer, train_tokenizer

RM_CONFIG = str(REPO_ROOT / "configs" / "rm_tiny.py")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, qa_feedback_dir):
    from fgjax.data import load_feedback_split

    records = load_feedback_split(qa_feedback_dir, "dev")
    path = tmp_path_factory.mktemp("tok") / "bpe"
    train_tokenizer([t for r in records for t in (r.question, *r.predictions)], "bpe", 1024,
                    str(path))
    return path


def rm_argv(workdir, tokenizer_dir, qa_feedback_dir, *overrides):
    return [
        "prog", f"--config={RM_CONFIG}", f"--workdir={workdir}",
        f"--config.tokenizer.path={tokenizer_dir}", f"--config.data.dir={qa_feedback_dir}",
        "--config.logging.progress=False", "--config.logging.tensorboard=False", *overrides,
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["r1", "r2"])
def test_segment_reward_models_fit_50_examples(name, tmp_path, tokenizer_dir, qa_feedback_dir,
                                                capsys):
    argv = rm_argv(tmp_path, tokenizer_dir, qa_feedback_dir, f"--config.rm.name={name}")
    report = train_rm.run(parse_command_line(argv))
    assert report["train_accuracy"] >= 0.95, report
    assert report["train_examples"] > 50  # segments of the 50 rows
    assert report["heldout_examples"] > 50 and 0.0 <= report["heldout_error_f1"] <= 1.0
    out = capsys.readouterr().out
    assert f"train_rm {name}: 150 iterations" in out and "heldout  accuracy" in out
    evals = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e["eval/train_accuracy"] for e in evals if "eval/train_accuracy" in e][-1] == (
        pytest.approx(report["train_accuracy"])
    )
    # The export is a fused token-classification reward model; on the training rows it calls
    # the same segments errors as during training (read at the same positions).
    level = "subsentence" if name == "r1" else "sentence"
    spec = RewardModelSpec(name=name, kind="token_cls", level=level,
                           checkpoint=str(tmp_path / "hf"), error_label=1)
    models, params = load_reward_models([spec])
    config = parse_command_line(argv).config
    train, held_out, _ = train_rm.build_examples(config, load_tokenizer(str(tokenizer_dir)))
    # The baseline to beat: always predicting the more frequent label of the held-out segments.
    labels = held_out["labels"][held_out["labels"] != rm_builders.IGNORE_LABEL]
    assert len(labels) == report["heldout_examples"]
    errors = float(np.mean(labels == 1))
    assert report["heldout_majority_accuracy"] == pytest.approx(max(errors, 1.0 - errors))
    loss_fn = train_rm.make_token_cls_loss(models[name], 0, np.ones(2, np.float32))
    _, sums = loss_fn(params[name], jax_tree(train))
    assert float(sums["sum/correct"]) / float(sums["sum/count"]) == pytest.approx(
        report["train_accuracy"], abs=1e-6
    )


def jax_tree(arrays):
    return {k: jnp.asarray(v) for k, v in arrays.items()}


def test_completeness_model_fits_pairs_and_stores_score_stats(tmp_path, tokenizer_dir,
                                                              qa_feedback_dir):
    argv = rm_argv(tmp_path, tokenizer_dir, qa_feedback_dir, "--config.rm.name=r3")
    runner.main(train_rm.run, argv=argv)
    report = json.loads((tmp_path / "rm_report.json").read_text())
    assert report["train_accuracy"] >= 0.95 and report["train_examples"] == 50, report
    assert report["heldout_examples"] == 64
    stats = json.loads((tmp_path / "hf" / train_rm.STATS_FILE).read_text())
    assert stats == report["score_stats"] and stats["std"] > 0 and 50 < stats["count"] <= 100
    spec = RewardModelSpec(name="completeness", kind="seq_reg", level="sequence",
                           checkpoint=str(tmp_path / "hf"), mean=stats["mean"], std=stats["std"])
    models, _ = load_reward_models([spec])
    assert models["completeness"].head == "seq_reg"


def test_held_out_records_are_disjoint_and_weights_balance(tokenizer_dir, qa_feedback_dir):
    argv = rm_argv("/tmp/unused", tokenizer_dir, qa_feedback_dir, "--config.rm.name=holistic")
    config = parse_command_line(argv).config
    train, held_out, train_records = train_rm.build_examples(
        config, load_tokenizer(str(tokenizer_dir))
    )
    assert len(train["weight"]) == 50 and len(held_out["weight"]) == 64
    labels = np.array([0, 0, 0, 1, rm_builders.IGNORE_LABEL])
    np.testing.assert_allclose(train_rm.class_weights(labels, "balanced"), [4 / 6, 4 / 2])
    np.testing.assert_array_equal(train_rm.class_weights(labels, "none"), [1, 1])
    with pytest.raises(ValueError, match="needs both labels"):
        train_rm.class_weights(np.array([0, 0]), "balanced")
    assert len(set(train_records)) < 50  # several pairs per record


def test_a_reward_model_from_an_lm_checkpoint_keeps_its_backbone_and_inits_only_the_head(
        tmp_path):
    import jax
    import ml_collections

    from fgjax.models import build_model, load_pretrained, save_pretrained
    from fgjax.trainer import supervised

    class Vocabulary:
        pad_token_id, eos_token_id = 0, 1

        def __len__(self):
            return 50

    sizes = ml_collections.ConfigDict(dict(family="gpt2", hidden_size=16, intermediate_size=32,
                                           num_layers=1, num_heads=2, max_positions=64))
    lm = build_model(supervised.fresh_hf_config(sizes, Vocabulary(), 2), "lm")
    save_pretrained(lm, lm.init(jax.random.key(1)), str(tmp_path))
    _, lm_params = load_pretrained(str(tmp_path), "lm")
    model, params = supervised._load_with_fresh_head(str(tmp_path), "token_cls", 2,
                                                     jax.random.key(3))
    flat = lambda tree: {jax.tree_util.keystr(k): np.asarray(v)
                         for k, v in jax.tree_util.tree_leaves_with_path(tree)}
    got, backbone = flat(params), flat(lm_params)
    assert set(got) - set(backbone) == {"['score']['bias']", "['score']['kernel']"}
    for name, value in backbone.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    # The head is the model's own initialiser's draw for this key, not zeros.
    expected = flat(model.init(jax.random.key(3)))["['score']['kernel']"]
    np.testing.assert_array_equal(got["['score']['kernel']"], expected)
    assert np.abs(expected).sum() > 0
