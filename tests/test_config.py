"""Config schema, validation and the shared command line: one-line errors naming the key."""

import runpy

import pytest
import runner_toy
from runner_toy import TOY_CONFIG, TOY_SCHEMA

from fgjax import runner
from fgjax.config import (
    RUNNER_SCHEMA,
    check_divisible,
    defaults,
    describe,
    parse_command_line,
    path,
    validate,
)
from fgjax.errors import ConfigError


def toy_config():
    return runpy.run_path(TOY_CONFIG)["get_config"]()


def parse(*overrides, workdir="/tmp/unused"):
    argv = ["prog", f"--config={TOY_CONFIG}", f"--workdir={workdir}", *overrides]
    return parse_command_line(argv)


def test_defaults_follow_the_schema_and_validate():
    config = defaults(RUNNER_SCHEMA)
    assert config.checkpoint.every == RUNNER_SCHEMA["checkpoint.every"].default
    assert config.mesh.fsdp == -1
    validate(config, RUNNER_SCHEMA)
    validate(toy_config(), TOY_SCHEMA)
    text = describe(RUNNER_SCHEMA)
    assert len(text.splitlines()) == len(RUNNER_SCHEMA)
    assert all(field.doc for field in TOY_SCHEMA.values())  # every field is documented


def test_overrides_parse_with_types():
    command_line = parse("--config.checkpoint.every=3", "--config.guards.kl_threshold=2",
                         "--resume_from=4")
    assert command_line.config.checkpoint.every == 3
    assert command_line.config.guards.kl_threshold == 2.0
    assert isinstance(command_line.config.guards.kl_threshold, float)
    assert command_line.resume_from == 4 and command_line.workdir == "/tmp/unused"


def test_unknown_key_on_the_command_line_is_named_with_a_suggestion():
    with pytest.raises(ConfigError) as info:
        parse("--config.checkpoint.evry=3")
    message = str(info.value)
    assert "\n" not in message
    assert "'checkpoint.evry'" in message and "did you mean 'checkpoint.every'" in message
    with pytest.raises(ConfigError, match=r"'chckpoint.every'.*did you mean 'checkpoint.every'"):
        parse("--config.chckpoint.every=3")


def test_unknown_key_in_a_config_file_is_named():
    config = toy_config()
    config.checkpoint.evry = 3
    with pytest.raises(ConfigError, match=r"config key 'checkpoint.evry' is unknown; did you mean "
                                          r"'checkpoint.every'\?"):
        validate(config, TOY_SCHEMA)


def test_wrong_type_is_named():
    with pytest.raises(ConfigError) as info:
        parse("--config.checkpoint.every=two")
    assert "--config.checkpoint.every=two" in str(info.value) and "\n" not in str(info.value)
    config = toy_config()
    config.unlock()
    del config.checkpoint["every"]
    config.checkpoint.every = "2"  # a file that replaces the field loses its type safety
    with pytest.raises(ConfigError, match=r"'checkpoint.every' = '2' has type str; allowed: an "
                                          r"integer >= 1"):
        validate(config, TOY_SCHEMA)


def test_out_of_range_and_missing_keys_are_named():
    config = toy_config()
    config.logging.log_every = 0
    config.unlock()
    del config.guards["kl_strikes"]
    with pytest.raises(ConfigError) as info:
        validate(config, TOY_SCHEMA)
    message = str(info.value)
    assert "'logging.log_every' = 0; allowed: an integer >= 1" in message
    assert "'guards.kl_strikes' is missing" in message


def test_indivisible_batch_is_named():
    config = toy_config()
    config.toy.batch_size = 12
    with pytest.raises(ConfigError, match=r"'toy.batch_size' = 12 is not divisible by the "
                                          r"mesh's data\*fsdp devices = 8"):
        check_divisible(config, "toy.batch_size", 8, "the mesh's data*fsdp devices")


def test_mesh_that_does_not_fit_the_devices_is_named():
    config = toy_config()
    config.mesh.data, config.mesh.fsdp = 3, 2
    with pytest.raises(ConfigError, match=r"config keys mesh\.\*: mesh .* needs 6 devices, have 8"):
        runner.validate_config(config, TOY_SCHEMA)
    config.mesh.data, config.mesh.fsdp = 0, -1
    with pytest.raises(ConfigError, match=r"'mesh.data' = 0; allowed: a positive integer or -1"):
        runner.validate_config(config, TOY_SCHEMA)


def test_keep_best_needs_evaluations():
    config = toy_config()
    config.eval_every = 0
    with pytest.raises(ConfigError, match="'checkpoint.keep_best' = 1 needs evaluations"):
        runner.validate_config(config, TOY_SCHEMA)


def test_paths_that_must_exist(tmp_path):
    schema = {"data.dir": path("", "folder of the prompts")}
    config = defaults(schema)
    validate(config, schema)  # "" = unset
    config.data.dir = str(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"'data.dir' = '.*missing'; allowed: an existing path"):
        validate(config, schema)
    config.data.dir = str(tmp_path)
    validate(config, schema)


def test_missing_config_file_and_workdir():
    with pytest.raises(ConfigError, match=r"--config=/nonexistent/c.py: .*No such file"):
        parse_command_line(["prog", "--config=/nonexistent/c.py", "--workdir=/tmp/x"])
    with pytest.raises(ConfigError, match="no workdir"):
        parse_command_line(["prog", f"--config={TOY_CONFIG}"])


def test_entry_point_prints_one_line_and_exits_2(capsys):
    argv = ["prog", f"--config={TOY_CONFIG}", "--workdir=/tmp/unused", "--config.toy.batch_size=12"]
    with pytest.raises(SystemExit) as info:
        runner.main(runner_toy.run, argv=argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "error: config key 'toy.batch_size' = 12 is not divisible by the mesh's data*fsdp "
        "devices = 8; allowed: a multiple of 8"
    )
    assert not any("Traceback" in line for line in err)


def test_help_lists_flags_and_documented_keys(capsys):
    with pytest.raises(SystemExit) as info:
        parse_command_line(["prog", "--help"], schema=TOY_SCHEMA)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--resume_from" in out and "--workdir" in out
    assert "  checkpoint.every = 50  # iterations between checkpoints (an integer >= 1)" in out
    assert "toy.batch_size = 16  # rows per batch" in out
