"""What the supervised entry points (``fgjax.sft``, ``fgjax.train_rm``) share.

- ``MODEL_SCHEMA``: the model / tokenizer config keys and ``model_from_config`` (a fresh tiny
  model from a family and sizes, or an HF directory);
- ``pad_prompts`` / ``pad_answers``: host arrays in the ``[left-padded prompt ; answer]``
  layout of ``fgjax.sequences`` (prompt ``[N, P]`` flush right, answer ``[N, A]`` flush left);
- ``Trainer``: a jitted, donated ``step(state, batch) -> (state, metrics)`` over any
  ``loss_fn(params, batch) -> (loss, metrics)``, sharded on the config's mesh, with the
  non-finite guard, and the state's sharded init / abstract shape for ``runner.run_loop``;
- ``batch_iterator``: deterministic shuffled batches addressed by their position.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import transformers

from fgjax import runner, sharding
from fgjax.config import check_divisible, choice, integer, path
from fgjax.errors import ConfigError
from fgjax.models import Model, build_model, load_pretrained, save_pretrained
from fgjax.models.hf_io import CheckpointFormatError, read_config
from fgjax.tokenizers import load_tokenizer, train_tokenizer

FAMILIES = ("gpt2", "llama", "qwen2", "t5")

MODEL_SCHEMA = {
    "model.path": path("", "HF directory to start from; '' = a fresh model of model.family"),
    "model.family": choice("gpt2", "family of a fresh model", FAMILIES),
    "model.hidden_size": integer(32, "fresh model: width", minimum=1),
    "model.intermediate_size": integer(64, "fresh model: MLP width", minimum=1),
    "model.num_layers": integer(2, "fresh model: layers (each of encoder and decoder)", minimum=1),
    "model.num_heads": integer(2, "fresh model: attention heads", minimum=1),
    "model.max_positions": integer(512, "fresh model: positions (GPT-2, Llama)", minimum=1),
    "tokenizer.path": path("", "HF tokenizer directory (fgjax.tokenizers)", must_exist=False,
                           optional=False),
    "tokenizer.train_vocab_size": integer(
        0, "when tokenizer.path does not exist, train a tokenizer of this size there on the "
        "job's texts; 0 = it must exist", minimum=0),
    "tokenizer.kind": choice("bpe", "kind of a trained tokenizer", ("bpe", "sentencepiece")),
}


def validate_job_config(config, schema, batch_size_keys: Sequence[str]) -> None:
    """The schema and runner checks, and every ``batch_size_keys`` divisible by the batch
    devices (``data * fsdp``)."""
    runner.validate_config(config, schema)
    data, fsdp, _ = runner.mesh_shape_from_config(config)
    for key in batch_size_keys:
        check_divisible(config, key, data * fsdp, "the mesh's data*fsdp devices")


def export_hf(model: Model, params, tokenizer, workdir: str) -> str:
    """Write ``<workdir>/hf`` (model + tokenizer), loadable by ``load_pretrained``; its path."""
    export = os.path.join(workdir, "hf")
    if jax.process_index() == 0:
        save_pretrained(model, params, export)
        tokenizer.save_pretrained(export)
    return export


def tokenizer_from_config(config, texts: Callable[[], Sequence[str]]):
    """The tokenizer at ``tokenizer.path``; trained there on ``texts()`` first when it does
    not exist and ``tokenizer.train_vocab_size > 0``."""
    cfg = config.tokenizer
    if not os.path.isdir(cfg.path):
        if not cfg.train_vocab_size:
            raise ConfigError(f"config key 'tokenizer.path' = {cfg.path!r} does not exist "
                              "(set tokenizer.train_vocab_size to train one there)")
        logging.info("training a %s tokenizer of %d tokens at %s", cfg.kind,
                     cfg.train_vocab_size, cfg.path)
        return train_tokenizer(texts(), cfg.kind, cfg.train_vocab_size, cfg.path)
    return load_tokenizer(cfg.path)


def fresh_hf_config(cfg, tokenizer, num_labels: int) -> dict:
    """The HF config dict of a fresh ``cfg.family`` model with the config's sizes."""
    common = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_labels=num_labels,
    )
    if cfg.family == "gpt2":
        config = transformers.GPT2Config(
            n_embd=cfg.hidden_size, n_inner=cfg.intermediate_size, n_layer=cfg.num_layers,
            n_head=cfg.num_heads, n_positions=cfg.max_positions,
            bos_token_id=tokenizer.eos_token_id, **common,
        )  # fmt: skip
    elif cfg.family in ("llama", "qwen2"):
        config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[
            cfg.family
        ]
        config = config_class(
            hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_heads, max_position_embeddings=cfg.max_positions,
            **common,
        )  # fmt: skip
    else:
        config = transformers.T5Config(
            d_model=cfg.hidden_size, d_ff=cfg.intermediate_size,
            d_kv=cfg.hidden_size // cfg.num_heads, num_layers=cfg.num_layers,
            num_heads=cfg.num_heads, decoder_start_token_id=tokenizer.pad_token_id, **common,
        )  # fmt: skip
    return config.to_dict()


def _load_with_fresh_head(directory: str, head: str, num_labels: int, key: jax.Array):
    """An HF directory's backbone under a new, randomly initialised ``head`` (e.g. a reward
    model started from an SFT policy's ``lm`` checkpoint)."""
    model = build_model({**read_config(directory), "num_labels": num_labels}, head)
    fresh = model.init(key)
    _, loaded = load_pretrained(directory, "lm")
    leaves = jax.tree_util.tree_leaves_with_path(loaded)
    loaded_flat = {jax.tree_util.keystr(k): v for k, v in leaves}
    reused = []

    def pick(key_path, value):
        name = jax.tree_util.keystr(key_path)
        if name in loaded_flat and loaded_flat[name].shape == value.shape:
            reused.append(name)
            return loaded_flat[name]
        return value

    params = jax.tree_util.tree_map_with_path(pick, fresh)
    fresh_names = len(jax.tree.leaves(fresh)) - len(reused)
    logging.warning("%s: no %r head in the checkpoint; %d tensors loaded, %d initialised fresh",
                    directory, head, len(reused), fresh_names)
    return model, params


def model_from_config(
    config, tokenizer, head: str, num_labels: int, key: jax.Array
) -> tuple[Model, Callable[[], dict] | None, dict | None]:
    """``(model, init_fn, loaded_params)``: a fresh model (``init_fn(key)``, no params) or an HF
    directory's parameters (``init_fn`` None)."""
    cfg = config.model
    if not cfg.path:
        hf_config = fresh_hf_config(cfg, tokenizer, num_labels)
        model = build_model(hf_config, head)
        return model, model.init, None
    if head in ("token_cls", "seq_reg") and read_config(cfg.path).get("num_labels") not in (
        None, num_labels,
    ):
        raise CheckpointFormatError(
            f"model.path={cfg.path}: num_labels differs from the {num_labels} this job needs"
        )
    try:
        model, params = load_pretrained(cfg.path, head)
    except CheckpointFormatError:
        if head == "lm":
            raise
        model, params = _load_with_fresh_head(cfg.path, head, num_labels, key)
    return model, None, params


def pad_prompts(prompts: Sequence[Sequence[int]], width: int, pad_id: int) -> dict:
    """``{"prompt_ids", "prompt_mask"}`` ``[N, width]``: each prompt's first ``width`` tokens,
    flush right (left-padded)."""
    ids = np.full((len(prompts), width), pad_id, np.int32)
    mask = np.zeros((len(prompts), width), np.int32)
    for row, prompt in enumerate(prompts):
        prompt = list(prompt)[:width]
        if prompt:
            ids[row, width - len(prompt) :], mask[row, width - len(prompt) :] = prompt, 1
    return {"prompt_ids": ids, "prompt_mask": mask}


def pad_answers(answers: Sequence[Sequence[int]], width: int, pad_id: int) -> dict:
    """``{"answer_ids", "answer_mask"}`` ``[N, width]``: each answer cut to ``width``, flush
    left (right-padded)."""
    ids = np.full((len(answers), width), pad_id, np.int32)
    mask = np.zeros((len(answers), width), np.int32)
    for row, answer in enumerate(answers):
        answer = list(answer)[:width]
        ids[row, : len(answer)], mask[row, : len(answer)] = answer, 1
    return {"answer_ids": ids, "answer_mask": mask}


def split_prompt_answer(ids: np.ndarray, mask: np.ndarray, prompt_len: int) -> dict:
    """``[N, P + A]`` rows of ``fgjax.data.rm_tokenize`` -> prompt / answer arrays."""
    return {
        "prompt_ids": ids[:, :prompt_len], "prompt_mask": mask[:, :prompt_len],
        "answer_ids": ids[:, prompt_len:], "answer_mask": mask[:, prompt_len:],
    }  # fmt: skip


def pad_rows(arrays: Mapping[str, np.ndarray], multiple: int, fill: Mapping[str, int]) -> dict:
    """Append rows so the count is a multiple of ``multiple``; ``fill[name]`` is the value of
    the added rows (0 by default: masks and weights of 0 make them count for nothing)."""
    count = len(next(iter(arrays.values())))
    extra = -count % multiple
    return {
        name: np.concatenate([a, np.full((extra,) + a.shape[1:], fill.get(name, 0), a.dtype)])
        for name, a in arrays.items()
    }


def batch_iterator(
    arrays: Mapping[str, np.ndarray], batch_size: int, seed: int, position: int
) -> Iterator[dict]:
    """Batches number ``position, position + 1, ...`` of an endless stream of epochs, each a
    fresh permutation (``seed``, epoch) of the rows: batch ``k`` holds stream rows
    ``[k * batch_size, (k + 1) * batch_size)``, so any position resumes exactly."""
    count = len(next(iter(arrays.values())))
    while True:
        stream = np.arange(position * batch_size, (position + 1) * batch_size)
        epochs, offsets = np.divmod(stream, count)
        rows = np.array([
            np.random.default_rng([seed, int(e)]).permutation(count)[o]
            for e, o in zip(epochs, offsets)
        ])  # fmt: skip
        yield {name: a[rows] for name, a in arrays.items()}
        position += 1


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: dict
    opt_state: optax.OptState
    nonfinite_skips: jax.Array


LossFn = Callable[[dict, Mapping[str, jax.Array]], tuple[jax.Array, Mapping[str, jax.Array]]]


@dataclasses.dataclass
class Trainer:
    """Sharded, jitted supervised training of ``model`` on ``loss_fn``; see ``build_trainer``."""

    init_state: Callable[[], TrainState]
    abstract_state: TrainState
    step: Callable  # (state, host batch) -> (state, metrics)
    apply_metrics: Callable  # (params, host batch) -> metrics of loss_fn, jitted
    mesh: jax.sharding.Mesh
    batch_rows: int  # batches must be a multiple of this (the data * fsdp devices)


def build_trainer(
    config, model: Model, init_fn, loaded_params, loss_fn: LossFn, learning_rate: float
) -> Trainer:
    """Adam on ``loss_fn``; a step whose loss or gradient norm is not finite is skipped
    (``runner.NONFINITE_METRIC``). Parameters shard by their logical names on the config's mesh,
    batch rows over ``("data", "fsdp")``."""
    mesh = runner.mesh_from_config(config)
    data, fsdp, _ = runner.mesh_shape_from_config(config)
    tx = optax.adam(learning_rate)
    param_shardings = sharding.param_shardings(model, mesh)
    abstract_params = model.abstract_params()
    replicated = sharding.replicated(mesh)
    shardings = TrainState(
        step=replicated,
        params=param_shardings,
        opt_state=sharding.optimizer_state_shardings(tx, param_shardings, abstract_params, mesh),
        nonfinite_skips=replicated,
    )

    def fresh_state(params):
        zero = jnp.zeros((), jnp.int32)
        return TrainState(step=zero, params=params, opt_state=tx.init(params), nonfinite_skips=zero)

    def init_state():
        if loaded_params is None:
            init = jax.jit(lambda: fresh_state(init_fn(jax.random.key(config.seed))),
                           out_shardings=shardings)
            return init()
        params = sharding.shard_params(loaded_params, param_shardings)
        return jax.jit(fresh_state, out_shardings=shardings)(params)

    abstract = jax.eval_shape(lambda: fresh_state(abstract_params))
    abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )

    def step(state: TrainState, batch):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        skipped = (~finite).astype(jnp.int32)
        new_state = TrainState(
            step=state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            nonfinite_skips=state.nonfinite_skips + skipped,
        )
        out = {**metrics, "loss/total": loss, "opt/grad_norm": grad_norm,
               runner.NONFINITE_METRIC: skipped}
        return new_state, out

    jitted = jax.jit(step, out_shardings=(shardings, None), donate_argnums=0)
    metrics_fn = jax.jit(lambda params, batch: loss_fn(params, batch)[1])

    def place(batch):
        return sharding.global_batch_from_local(batch, mesh)

    return Trainer(
        init_state=init_state,
        abstract_state=abstract_state,
        step=lambda state, batch: jitted(state, place(batch)),
        apply_metrics=lambda params, batch: metrics_fn(params, place(batch)),
        mesh=mesh,
        batch_rows=data * fsdp,
    )


def summed_metrics(trainer: Trainer, params, arrays: Mapping[str, np.ndarray], batch_size: int):
    """``loss_fn``'s metrics summed over ``arrays`` in order, in batches of ``batch_size``
    (the rows must already be a multiple of it; ``loss_fn`` returns sums, not means)."""
    count = len(next(iter(arrays.values())))
    totals: dict[str, float] = {}
    for start in range(0, count, batch_size):
        batch = {name: a[start : start + batch_size] for name, a in arrays.items()}
        for name, value in jax.device_get(trainer.apply_metrics(params, batch)).items():
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals
