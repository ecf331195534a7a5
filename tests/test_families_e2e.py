"""End to end for the non-Gaussian families (articles (十)–(十四)): each config trains, checkpoints, samples and
evaluates from the command line at smoke size; mismatched choices fail at load time with one line."""

import json
import pathlib

import numpy as np
import pytest

from diffjax import cli
from diffjax.config import ConfigError, apply_overrides, load_config
from diffjax.experiment import validate

ROOT = pathlib.Path(__file__).resolve().parents[1]

# (config, scale, sample shape); the slow ones share their code paths with a fast one.
FAMILIES = [
    ("udm_gaussian", "toy2d,smoke", (16, 2)),
    ("udm_cold_blur", "toy2d,smoke", (16, 2)),
    ("udm_mask", "digits,smoke", (16, 64)),
    ("pfgm", "toy2d,smoke", (16, 2)),
    ("ode_green", "toy2d,smoke", (16, 2)),
    pytest.param("udm_cold_blur", "digits,smoke", (16, 8, 8, 1), marks=pytest.mark.slow),
    pytest.param("udm_discrete_edit", "digits,smoke", (16, 64), marks=pytest.mark.slow),
    pytest.param("udm_encoder", "toy2d,smoke", (16, 2), marks=pytest.mark.slow),
    pytest.param("pfgm", "digits,smoke", (16, 8, 8, 1), marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "scale", "shape"), FAMILIES)
def test_family_config_trains_samples_and_evaluates(name, scale, shape, tmp_path):
    workdir = tmp_path / name
    assert cli.main(["train", "--config", f"{ROOT / 'configs' / name}.py:{scale}", "--workdir", str(workdir)]) == 0
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]
    samples = np.load(workdir / "samples" / "samples.npz")["samples"]
    assert samples.shape == shape and np.all(np.isfinite(samples))
    if len(shape) == 2 and shape[1] == 64:  # binarised digits: tokens 0/1, scored by the digits classifier
        assert set(np.unique(samples)) <= {0, 1}
    metrics = json.loads((workdir / "samples" / "metrics.json").read_text())
    assert "sliced_w1" in metrics or "confidence" in metrics
    assert (workdir / "samples" / "samples.png").exists()
    # Sampling again from the run directory with another knob of the same family.
    knob = {"udm_gaussian": "--config.sampler.reverse=deterministic", "udm_cold_blur": "--config.sampler.method=naive",
            "udm_mask": "--config.sampler.unmask_per_step=4", "pfgm": "--config.sampler.steps=4",
            "ode_green": "--config.sampler.steps=4", "udm_discrete_edit": "--config.sampler.reverse=baseline",
            "udm_encoder": "--config.sampler.reverse=deterministic"}[name]
    assert cli.main(["sample", "--workdir", str(workdir), knob, "--num_samples", "8"]) == 0


def config(name: str, arg: str, *overrides):
    return apply_overrides(load_config(f"{ROOT / 'configs' / name}.py:{arg}"), overrides)


@pytest.mark.parametrize(("overrides", "match"), [
    (("sampler.name=ddim",), "choose a sampler of the udm family: udm, cold"),
    (("objective.name=eps_mse",), "does not go with"),
    (("process.kernel_size=4",), "kernel_size"),
    (("guidance.cfg_scale=1.0",), "guidance"),
])
def test_mismatched_choices_fail_at_load_time_with_one_line(overrides, match):
    with pytest.raises(ConfigError, match=match) as error:
        validate(config("udm_cold_blur", "digits,smoke", *overrides))
    assert "\n" not in str(error.value)


def test_a_gaussian_sampler_on_a_token_process_and_a_token_sampler_on_a_gaussian_process_fail():
    with pytest.raises(ConfigError, match="does not go with"):
        validate(config("udm_mask", "digits,smoke", "sampler.name=ancestral"))
    with pytest.raises(ConfigError, match="samples a discrete process"):
        validate(config("ddpm", "toy2d,smoke", "sampler.name=unmask"))
    with pytest.raises(ConfigError, match="token configs run on binarised digits"):
        load_config(f"{ROOT / 'configs' / 'udm_mask'}.py:toy2d")
