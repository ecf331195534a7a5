"""Config loading, overrides and validation: every mistake is one line on stderr and exit code 2."""

import pathlib

import pytest

from diffjax import cli
from diffjax.config import ConfigError, apply_overrides, from_json, load_config, to_json

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARTICLES = ("ddpm", "ddpm_vae", "ddpm_bayes", "ddim")


def config_path(name: str, arg: str = "") -> str:
    return str(ROOT / "configs" / f"{name}.py") + (f":{arg}" if arg else "")


@pytest.mark.parametrize("article", ARTICLES)
@pytest.mark.parametrize("scale", ["toy2d", "digits", "cifar10", "celeba64", "digits,smoke", "toy2d,smoke",
                                   "digits,cpu"])
def test_every_article_config_loads_at_every_scale(article, scale):
    config = load_config(config_path(article, scale))
    assert config.formulation == article
    assert config.data.name in ("toy2d", "digits", "cifar10", "celeb_a")
    if "smoke" in scale:
        assert config.training.num_steps <= 2


def test_config_docstrings_give_the_launch_command():
    for article in ARTICLES:
        text = (ROOT / "configs" / f"{article}.py").read_text()
        assert f"diffjax train --config configs/{article}.py:" in text


def test_overrides_are_typed():
    config = load_config(config_path("ddim", "digits"))
    apply_overrides(config, ["sampler.steps=20", "sampler.eta=0.5", "model.ch_mult=(1,2)",
                             "training.progress_bar=false", "data.path=/tmp/x"])
    assert config.sampler.steps == 20 and config.sampler.eta == 0.5
    assert config.model.ch_mult == (1, 2) and config.training.progress_bar is False
    assert config.data.path == "/tmp/x"


@pytest.mark.parametrize("override, message", [
    ("training.nonexistent=1", "unknown config key 'training.nonexistent'"),
    ("trainin.batch_size=1", "the config has no 'trainin'"),
    ("training.batch_size=abc", "expects int, got 'abc'"),
    ("sampler.clip_final=maybe", "expects bool"),
    ("model=unet", "is a section"),
])
def test_bad_overrides(override, message):
    config = load_config(config_path("ddpm", "digits"))
    with pytest.raises(ConfigError, match=message):
        apply_overrides(config, [override])


def test_json_round_trip():
    config = load_config(config_path("ddpm_vae", "toy2d"))
    again = from_json(to_json(config))
    assert to_json(again) == to_json(config)


@pytest.mark.parametrize("extra, message", [
    (["--config.training.nonexistent=1"], "unknown config key 'training.nonexistent'"),
    (["--config.process.name=vpp"], "unknown process 'vpp'; valid processes: ddpm, edm, flow, subvp, ve, vp"),
    (["--config.sampler.name=heunn"], "unknown sampler 'heunn'"),
    (["--config.process.name=vp"], "unset the others' knobs (e.g. --config.process.num_steps=None)"),
    (["--config.objective.name=elbo", "--config.process.name=vp", "--config.process.num_steps=None",
      "--config.process.schedule=None"], "needs the discrete 'ddpm' process"),
    (["--config.sampler.steps=5000"], "steps must be between 1 and T=1000"),
    (["--config.prediction=noise"], "unknown kind 'noise'"),
    (["--config.sampler.variance=large"], "valid choices: 'beta', 'posterior'"),
    (["--config.process.sigma_max=10"], "unknown knob(s) sigma_max for process 'ddpm'"),
    (["--config.data.name=imagenet"], "unknown dataset"),
    (["--config.training.batch_size=abc"], "expects int"),
])
def test_cli_rejects_bad_configs_with_one_line_and_exit_2(extra, message, capsys, tmp_path):
    code = cli.main(["train", "--config", config_path("ddpm", "digits"), "--workdir", str(tmp_path / "w"),
                     "--dry_run", *extra])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err


def test_cli_unknown_config_argument(capsys, tmp_path):
    code = cli.main(["train", "--config", config_path("ddpm", "digitz"), "--workdir", str(tmp_path), "--dry_run"])
    assert code == 2 and "valid: toy2d, digits, cifar10, celeba64, smoke" in capsys.readouterr().err


def test_cli_missing_config_file(capsys, tmp_path):
    code = cli.main(["train", "--config", "configs/nope.py:digits", "--workdir", str(tmp_path), "--dry_run"])
    assert code == 2 and "config file 'configs/nope.py' not found" in capsys.readouterr().err


def test_cli_dry_run_prints_the_resolved_config(capsys, tmp_path):
    code = cli.main(["train", "--config", config_path("ddim", "toy2d"), "--workdir", str(tmp_path / "w"),
                     "--dry_run", "--config.sampler.steps=20"])
    out = capsys.readouterr().out
    assert code == 0 and '"steps": 20' in out
    assert not (tmp_path / "w").exists()  # a dry run writes nothing


def test_cli_sample_without_a_run(capsys, tmp_path):
    code = cli.main(["sample", "--workdir", str(tmp_path)])
    assert code == 2 and "holds no run" in capsys.readouterr().err
