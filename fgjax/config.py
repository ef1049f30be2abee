"""Config schemas, defaults, start-up validation and the shared command line.

A schema maps dotted keys (``"checkpoint.every"``) to ``Field``s holding the default, a one-line
doc and the allowed values. ``defaults(schema)`` builds the ``ConfigDict`` that config files start
from; ``validate(config, schema)`` runs at start-up and raises ``ConfigError`` with one line per
problem naming the key, the value and what is allowed. ``RUNNER_SCHEMA`` holds the sections every
entry point shares (mesh, checkpoint, logging, guards, preemption); trainers add their own.

Deliberately light (no JAX import): config files import this module.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

from fgjax.errors import ConfigError

Schema = Mapping[str, "Field"]


@dataclasses.dataclass(frozen=True)
class Field:
    default: Any
    doc: str  # one line: what the key means (shown by --help and in config files)
    kind: str  # "int" | "float" | "bool" | "str" | "str_list" | "int_list"
    allowed: str = ""  # the allowed values in words, e.g. "an integer >= 1"
    check: Callable[[Any], bool] | None = None
    nullable: bool = False  # None is allowed


def integer(default: int | None, doc: str, minimum: int | None = None, **kw) -> Field:
    allowed = "an integer" + (f" >= {minimum}" if minimum is not None else "")
    check = None if minimum is None else (lambda v: v >= minimum)
    return Field(default, doc, "int", allowed, check, **kw)


def number(default: float | None, doc: str, minimum: float | None = None, **kw) -> Field:
    allowed = "a number" + (f" >= {minimum}" if minimum is not None else "")
    check = None if minimum is None else (lambda v: v >= minimum)
    return Field(default, doc, "float", allowed, check, **kw)


def boolean(default: bool, doc: str) -> Field:
    return Field(default, doc, "bool", "True or False")


def choice(default: str, doc: str, choices: Sequence[str]) -> Field:
    choices = tuple(choices)
    return Field(default, doc, "str", f"one of {choices}", lambda v: v in choices)


def string(default: str | None, doc: str, **kw) -> Field:
    return Field(default, doc, "str", "a string", **kw)


def path(default: str, doc: str, must_exist: bool = True, optional: bool = True) -> Field:
    """A filesystem path; checked to exist at start-up (``""`` = unset when ``optional``)."""
    allowed = "an existing path" + (" or '' (unset)" if optional else "")

    def check(value: str) -> bool:
        if value == "":
            return optional
        return os.path.exists(os.path.expanduser(value)) or not must_exist

    return Field(default, doc, "str", allowed, check)


def string_list(default: Sequence[str], doc: str, choices: Sequence[str] | None = None) -> Field:
    if choices is None:
        return Field(tuple(default), doc, "str_list", "a list of strings")
    choices = tuple(choices)
    return Field(
        tuple(default), doc, "str_list", f"a list of {choices}", lambda v: set(v) <= set(choices)
    )


_KIND_CHECKS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "str_list": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
    "int_list": lambda v: isinstance(v, (list, tuple))
    and all(isinstance(x, int) and not isinstance(x, bool) for x in v),
}


def defaults(schema: Schema) -> ml_collections.ConfigDict:
    """The nested ``ConfigDict`` of every field's default."""
    config = ml_collections.ConfigDict()
    for key, field in schema.items():
        *sections, name = key.split(".")
        node = config
        for section in sections:
            if section not in node:
                node[section] = ml_collections.ConfigDict()
            node = node[section]
        if field.default is None:
            python_type = {"int": int, "float": float, "bool": bool}.get(field.kind, str)
            node[name] = ml_collections.config_dict.placeholder(python_type)
        else:
            node[name] = field.default
    return config


def flatten(config: ml_collections.ConfigDict | Mapping, prefix: str = "") -> dict[str, Any]:
    """``{"section.key": value}`` for every leaf."""
    out = {}
    for name, value in config.items():
        key = f"{prefix}{name}"
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            out.update(flatten(value, key + "."))
        else:
            out[key] = value
    return out


def _unknown_key_message(key: str, schema: Schema) -> str:
    close = difflib.get_close_matches(key, list(schema), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    section = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = sorted(k for k in schema if section and k.startswith(section + "."))
    known = f" (keys in '{section}': {', '.join(siblings)})" if siblings else ""
    return f"config key '{key}' is unknown{hint}{known}"


def validate(config: ml_collections.ConfigDict, schema: Schema) -> None:
    """Raise ``ConfigError`` listing every unknown, missing, mistyped or disallowed key."""
    values = flatten(config)
    problems = [_unknown_key_message(k, schema) for k in values if k not in schema]
    for key, field in schema.items():
        if key not in values:
            problems.append(f"config key '{key}' is missing ({field.doc})")
            continue
        value = values[key]
        if value is None:
            if not field.nullable:
                problems.append(f"config key '{key}' is None; allowed: {field.allowed}")
        elif not _KIND_CHECKS[field.kind](value):
            problems.append(
                f"config key '{key}' = {value!r} has type {type(value).__name__}; "
                f"allowed: {field.allowed}"
            )
        elif field.check is not None and not field.check(value):
            problems.append(f"config key '{key}' = {value!r}; allowed: {field.allowed}")
    if problems:
        raise ConfigError("; ".join(problems))


def check_divisible(config: ml_collections.ConfigDict, key: str, divisor: int, by: str) -> None:
    """``config[key]`` must be a multiple of ``divisor`` (``by`` says where it comes from)."""
    value = flatten(config)[key]
    if divisor < 1 or value % divisor:
        raise ConfigError(
            f"config key '{key}' = {value} is not divisible by {by} = {divisor}; "
            f"allowed: a multiple of {divisor}"
        )


def describe(schema: Schema) -> str:
    """One line per key: ``key = default  # doc (allowed)`` (for ``--help``)."""
    return "\n".join(
        f"  {key} = {field.default!r}  # {field.doc} ({field.allowed})"
        for key, field in schema.items()
    )


def _mesh_axis(default: int, doc: str) -> Field:
    allowed = "a positive integer or -1 (fill)"
    return Field(default, doc, "int", allowed, lambda v: v >= 1 or v == -1)


# Every entry point's schema includes these (``fgjax.runner.main`` applies them).
COMPILATION_CACHE_SCHEMA: dict[str, Field] = {
    "compilation_cache.dir": string(
        os.path.join(os.environ.get("FGJAX_CACHE_DIR") or "~/.cache/fgjax", "xla"),
        "persistent XLA compilation cache: a program any run compiled before is loaded from "
        "here, not recompiled (resumed, repeated and multi-seed runs); '' = off",
    ),
    # 0 stores even the tiny eager programs: the test miniature runs warm in 29.7 s with 0,
    # 31.3 s with 0.1 and 38.1 s with JAX's own default of 1.0.
    "compilation_cache.min_compile_seconds": number(
        0.0, "programs that compiled faster than this are not stored", minimum=0.0
    ),
}

RUNNER_SCHEMA: dict[str, Field] = {
    "workdir": string("", "output folder; the --workdir flag overrides it"),
    "seed": integer(0, "seed of every random key of the run", minimum=0),
    "num_iterations": integer(10, "training iterations (PPO rollouts / SGD steps)", minimum=1),
    "eval_every": integer(0, "iterations between evaluations; 0 = no evaluation", minimum=0),
    "mesh.data": _mesh_axis(1, "devices on the data axis (batch rows); -1 = the rest"),
    "mesh.fsdp": _mesh_axis(-1, "devices on the fsdp axis (batch rows + params); -1 = the rest"),
    "mesh.tensor": _mesh_axis(1, "devices on the tensor axis (model width); -1 = the rest"),
    "checkpoint.every": integer(50, "iterations between checkpoints", minimum=1),
    "checkpoint.keep": integer(2, "most recent checkpoints kept", minimum=1),
    "checkpoint.keep_best": integer(1, "best checkpoints (by best_metric) kept too", minimum=0),
    "checkpoint.best_metric": string("eval/reward", "metric (higher is better) ranking best"),
    "checkpoint.async_save": boolean(True, "save in a background thread while training goes on"),
    "logging.log_every": integer(1, "iterations between metric writes", minimum=1),
    "logging.tensorboard": boolean(True, "write TensorBoard event files to workdir/tensorboard"),
    "logging.progress": boolean(True, "show a progress bar with ETA on the terminal"),
    "logging.progress_keys": string_list(("reward/raw", "kl/mean"), "metrics on the bar"),
    "logging.plot": boolean(True, "write workdir/curves.png at the end of the run"),
    "guards.max_nonfinite_in_row": integer(
        3, "stop after this many iterations in a row with a skipped non-finite update", minimum=1
    ),
    "guards.kl_threshold": number(
        10.0, "a rollout whose mean per-sequence KL exceeds this is a strike", minimum=0.0
    ),
    "guards.kl_strikes": integer(5, "stop after this many strikes; 0 = never stop", minimum=0),
    "preemption.grace_seconds": number(
        60.0, "after SIGTERM, exit within this many seconds (abandoning a slow save)", minimum=0.0
    ),
    **COMPILATION_CACHE_SCHEMA,
}


def runner_config() -> ml_collections.ConfigDict:
    """The shared sections with their defaults; config files start from this."""
    return defaults(RUNNER_SCHEMA)


def check_runner_config(config: ml_collections.ConfigDict) -> None:
    """Cross-key checks of the shared sections (single-key checks are in the schema; the mesh
    is checked against the devices by ``fgjax.runner``)."""
    if config.checkpoint.keep_best and not config.eval_every:
        raise ConfigError(
            f"config key 'checkpoint.keep_best' = {config.checkpoint.keep_best} needs "
            "evaluations (eval_every > 0); allowed: 0 when eval_every = 0"
        )


def _one_line_flag_error(text: str) -> str:
    """absl embeds a config file's traceback in the flag error; keep its place and last line."""
    if "Traceback" not in text:
        return " ".join(text.split("\n"))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    places = [
        m.groups()
        for m in re.finditer(r'File "([^"]+)", line (\d+)', text)
        if "site-packages" not in m.group(1)
    ]
    where = f"{places[-1][0]} line {places[-1][1]}: " if places else ""
    return f"error in config file {where}{lines[-1]}"


def _unknown_override(err: Exception, argv: Sequence[str]) -> Exception:
    """A ``ConfigError`` naming the ``--config.`` override behind ml_collections' missing-key
    error (``KeyError("'evry'\\nDid you mean \\"every\\" ...")``), or ``err`` itself."""
    inner = err.args[0] if err.args else ""
    text = inner.args[0] if isinstance(inner, Exception) and inner.args else str(inner)
    missing = re.match(r"'([^']+)'", str(text))
    if missing is None:
        return err
    suggestion = re.search(r'Did you mean "([^"]+)"', str(text))
    for arg in argv[1:]:
        name = arg.split("=", 1)[0]
        if name.startswith("--config.") and missing.group(1) in name.split("."):
            key = name[len("--config."):]
            hint = ""
            if suggestion:
                parts = key.split(".")
                parts[parts.index(missing.group(1))] = suggestion.group(1)
                hint = f"; did you mean '{'.'.join(parts)}'?"
            return ConfigError(f"config key '{key}' (from {arg}) is unknown{hint}")
    return err


@dataclasses.dataclass(frozen=True)
class CommandLine:
    config: ml_collections.ConfigDict
    workdir: str
    resume_from: int | None  # a checkpoint step to restart from; None = the latest


def parse_command_line(
    argv: Sequence[str], default_config: str | None = None, schema: Schema | None = None
) -> CommandLine:
    """``--config=FILE [--config.a.b=V ...] --workdir=DIR [--resume_from=STEP]``.

    Uses a fresh ``FlagValues`` (safe to call several times in one process); every flag or
    override problem becomes a one-line ``ConfigError`` naming the flag or key. ``--help``
    prints the flags and, given a ``schema``, every config key with its doc.
    """
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", default_config, "config file (a .py with get_config())",
        flag_values=flag_values, lock_config=True, sys_argv=list(argv),
    )
    flags.DEFINE_string("workdir", None, "output folder (overrides config.workdir)",
                        flag_values=flag_values)
    flags.DEFINE_integer("resume_from", None, "restart from this checkpoint step",
                         flag_values=flag_values)
    if any(arg in ("--help", "-h", "--helpfull") for arg in argv[1:]):
        print(flag_values.get_help())
        if schema is not None:
            print("\nconfig keys (schema defaults; the config file may change them):")
            print(describe(schema))
        raise SystemExit(0)
    try:
        rest = flag_values(list(argv))
        config = flag_values["config"].value
    except flags.Error as err:
        raise ConfigError(_one_line_flag_error(str(err))) from None
    except (AttributeError, KeyError) as err:
        # ml_collections reports an override of a key the config lacks this way; name the flag.
        raise _unknown_override(err, argv) from None
    if len(rest) > 1:
        raise ConfigError(f"unexpected command-line arguments {rest[1:]}")
    if config is None:
        raise ConfigError("--config is required (a config file such as configs/tiny.py)")
    if not isinstance(config, ml_collections.ConfigDict):  # ml_collections' deferred load error
        cause = " ".join(str(config.__dict__.get("_error", "")).split())
        raise ConfigError(f"--config={flag_values['config'].config_filename}: {cause}")
    workdir = flag_values["workdir"].value or config.get("workdir", "")
    if not workdir:
        raise ConfigError("no workdir: pass --workdir=DIR or set config key 'workdir'")
    return CommandLine(config, workdir, flag_values["resume_from"].value)
