"""Configs as validated data: the default loads; every bad config is one line naming file, key, problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from gpt4allj_kit import paths
from gpt4allj_kit.config import (
    TrainConfig,
    load_profile,
    load_train_config,
    train_config_changes,
    train_config_yaml,
)
from gpt4allj_kit.errors import ConfigError

UPSTREAM = Path(__file__).parent / "data" / "upstream_finetune_gptj.yaml"
# The reference commit's values (upstream-recipe.md); the kit's default config must keep every one.
UPSTREAM_VALUES = {
    "model_name": "EleutherAI/gpt-j-6B", "tokenizer_name": "EleutherAI/gpt-j-6B",
    "gradient_checkpointing": True, "streaming": False, "num_proc": 64, "max_length": 1024,
    "batch_size": 32, "lr": 2.0e-5, "min_lr": 0, "weight_decay": 0.0, "eval_every": 500, "eval_steps": 105,
    "save_every": 500, "log_grads_every": 100, "checkpoint": None, "lora": False, "warmup_steps": 500,
    "num_epochs": 2, "seed": 42,
}  # fmt: skip
PLACEHOLDERS = ("save_name", "dataset_path", "output_dir", "wandb_entity", "wandb_project_name")


def _default_with(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load(paths.default_train_config().read_text())
    data.update(changes)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_config_keeps_every_upstream_value() -> None:
    config = load_train_config()
    for key, value in UPSTREAM_VALUES.items():
        assert getattr(config, key) == value, key
    assert config.dataset_path == "nomic-ai/gpt4all-j-prompt-generations"
    assert config.output_dir.startswith("outputs/")
    assert config.wandb is False and config.tensorboard is False and config.trust_remote_code is False
    assert config.revision


def test_upstream_fixture_is_the_published_file() -> None:
    text = UPSTREAM.read_text()
    assert text.count(": # CHANGE") == len(PLACEHOLDERS)
    data = yaml.safe_load(text)
    assert {k: data[k] for k in UPSTREAM_VALUES} == UPSTREAM_VALUES
    assert all(data[k] is None for k in PLACEHOLDERS) and data["wandb"] is True
    # Every upstream key exists in the kit's default config and model.
    default = yaml.safe_load(paths.default_train_config().read_text())
    assert set(data) <= set(default) <= set(TrainConfig.model_fields)


def test_profiles_load_and_apply() -> None:
    smoke = load_profile("smoke")
    config = load_train_config(smoke.train_config, base_overrides=smoke.train)
    assert (config.max_length, config.batch_size) == (128, 8)
    full = load_profile("full")
    assert full.requirements.gpus == 8 and full.requirements.min_gpu_memory_gb == 80
    assert full.requirements.bf16 and full.launch.num_processes == 8


def test_set_overrides_are_validated_and_typed() -> None:
    config = load_train_config(None, ["lr=1e-4", "padding=dynamic", "max_steps=3"])
    assert (config.lr, config.padding, config.max_steps) == (1e-4, "dynamic", 3)
    with pytest.raises(ConfigError, match="key 'lr'"):
        load_train_config(None, ["lr=-1"])


BAD_FILES = {
    "mistyped key": ({"num_epoch": 2}, "num_epoch", "did you mean 'num_epochs'"),
    "wrong type": ({"batch_size": "thirty-two"}, "batch_size", "integer"),
    "negative lr": ({"lr": -2.0e-5}, "lr", "greater than 0"),
    "unknown padding mode": (
        {"padding": "ragged"},
        "padding",
        "'faithful', 'dynamic', 'bucketed' or 'packed'",
    ),
    "literal CHANGE": ({"output_dir": "CHANGE"}, "output_dir", "required value is missing"),
    "placeholder in optional key": ({"wandb_entity": "<your entity>"}, "wandb_entity", "placeholder"),
    "hub push asked for": ({"save_name": "me/gptj"}, "save_name", "hf upload"),
    "eval_steps other than upstream's": ({"eval_steps": 4}, "eval_steps", "use eval_every"),
}


def _assert_one_line_error(result, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_config_is_one_line_with_file_key_problem(case: str, tmp_path: Path, kit_cli) -> None:
    changes, key, problem = BAD_FILES[case]
    path = _default_with(tmp_path, **changes)
    _assert_one_line_error(kit_cli("config", "--config", str(path)), str(path), f"'{key}'", problem)


def test_upstream_file_as_published_names_a_placeholder(kit_cli) -> None:
    result = kit_cli("config", "--config", str(UPSTREAM))
    _assert_one_line_error(result, str(UPSTREAM), "'dataset_path'", "# CHANGE", "1 more problem: output_dir")


def test_invalid_yaml_names_the_line(tmp_path: Path, kit_cli) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("model_name: gpt\nlr: [1, 2\nseed: 3\n")
    _assert_one_line_error(kit_cli("config", "--config", str(path)), str(path), "line ")


def test_non_mapping_yaml(tmp_path: Path, kit_cli) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- lr\n- seed\n")
    _assert_one_line_error(kit_cli("config", "--config", str(path)), str(path), "expected a mapping")


def test_missing_file(tmp_path: Path, kit_cli) -> None:
    path = tmp_path / "absent.yaml"
    _assert_one_line_error(kit_cli("config", "--config", str(path)), str(path), "no such config file")


def test_binary_file_and_a_folder_are_one_line_errors(tmp_path: Path, kit_cli) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"lr: \xff\xfe\x00")
    _assert_one_line_error(kit_cli("config", "--config", str(binary)), str(binary), "not UTF-8 text (byte 4)")
    _assert_one_line_error(kit_cli("config", "--config", str(tmp_path)), str(tmp_path), "is a directory")
    profile = tmp_path / "profile.yaml"
    profile.write_bytes(b"\x80")
    _assert_one_line_error(kit_cli("config", "--profile", str(profile)), str(profile), "not UTF-8 text")


@pytest.mark.parametrize(
    ("item", "needles"),
    [
        ("lr=fast", ("--set overrides", "'lr'", "valid number")),
        ("num_epoch=3", ("--set num_epoch", "did you mean 'num_epochs'")),
        ("seed", ("--set 'seed'", "expected key=value")),
    ],
)
def test_bad_set_override(item: str, needles: tuple[str, ...], kit_cli) -> None:
    _assert_one_line_error(kit_cli("config", "--set", item), *needles)


def test_unknown_profile(kit_cli) -> None:
    _assert_one_line_error(kit_cli("config", "--profile", "nope"), "unknown profile 'nope'", "smoke")


def test_profile_with_unknown_train_key(tmp_path: Path, kit_cli) -> None:
    data = yaml.safe_load(paths.profile_path("smoke").read_text())
    data["train"]["warmup_step"] = 4
    path = tmp_path / "myprofile.yaml"
    path.write_text(yaml.safe_dump(data))
    result = kit_cli("config", "--profile", str(path))
    _assert_one_line_error(result, str(path), "'train.warmup_step'", "did you mean 'warmup_steps'")


def test_good_config_through_the_cli(kit_cli) -> None:
    result = kit_cli("config", "--profile", "smoke", "--set", "lr=3e-4", "--json")
    assert result.returncode == 0, result.stderr
    resolved = TrainConfig.model_validate_json(result.stdout)
    assert (resolved.lr, resolved.max_length) == (3e-4, 128)


def test_save_name_placeholders_mean_no_push_and_a_name_is_refused() -> None:
    for value in (None, "# CHANGE", "CHANGE", "<your repo>"):
        assert load_train_config(None, {"save_name": value}).save_name is None, value
    with pytest.raises(ConfigError, match=r"key 'save_name': the kit never pushes to the hub.*hf upload"):
        load_train_config(None, ["save_name=me/gptj-epochs"])


def test_eval_steps_accepts_only_what_upstream_ignored() -> None:
    assert load_train_config(None, ["eval_steps=105"]).eval_steps == 105
    assert load_train_config(None, ["eval_steps=null"]).eval_steps is None
    with pytest.raises(ConfigError, match=r"never read it.*eval_every"):
        load_train_config(None, ["eval_steps=10"])


def test_log_grads_every_is_a_positive_step_count_or_null() -> None:
    assert load_train_config(None, ["log_grads_every=null"]).log_grads_every is None
    with pytest.raises(ConfigError, match="key 'log_grads_every'"):
        load_train_config(None, ["log_grads_every=0"])


def test_resolved_config_is_written_as_yaml_that_reads_back_equal(tmp_path: Path) -> None:
    smoke = load_profile("smoke")
    config = load_train_config(
        None, {"lr": 3e-4, "padding": "dynamic", "revision": "no", "checkpoint": "latest"},
        base_overrides=smoke.train,
    )  # fmt: skip
    written = tmp_path / "train_config.yaml"
    written.write_text(train_config_yaml(config, header="resolved\nfor a test"))
    assert written.read_text().startswith("# resolved\n# for a test\n")
    assert load_train_config(written) == config
    changes = train_config_changes(paths.default_train_config(), config)
    assert changes["lr"] == 3e-4 and changes["revision"] == "no" and changes["max_length"] == 128
    assert "seed" not in changes and "model_name" not in changes


def test_set_values_are_yaml_scalars_but_text_is_kept_as_typed() -> None:
    from gpt4allj_kit.config import parse_overrides

    parsed = parse_overrides(
        ["lr=0.5", "wandb=true", "checkpoint=null", "output_dir=/runs/a #1", "x=a\nb", "y='quoted'"]
    )
    assert parsed["lr"] == 0.5 and parsed["wandb"] is True and parsed["checkpoint"] is None
    # YAML would drop the ` #1` tail and fold the line break into a space.
    assert parsed["output_dir"] == "/runs/a #1" and parsed["x"] == "a\nb"
    assert parsed["y"] == "quoted"
