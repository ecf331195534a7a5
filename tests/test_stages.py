"""Second training stages of the runner: the noisy classifier of classifier guidance (九), the NPR/SN variance
heads (八) and reflow rounds (十七). Each trains a short toy2d run and checks what the stage is for."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffjax import cli
from diffjax.config import ConfigError, apply_overrides, load_config
from diffjax.experiment import validate
from diffjax.generate import load_run_config
from diffjax.training import restore_state, stages, train_and_evaluate

ROOT = pathlib.Path(__file__).resolve().parents[1]


def config(name: str, arg: str, *overrides):
    c = load_config(f"{ROOT / 'configs' / name}.py:{arg}")
    return apply_overrides(c, overrides)


# A smaller network and batch than the toy2d default, and the plain gradient reduction: a few seconds per run.
SMALL = ("model.hidden=128", "model.depth=3", "training.batch_size=256", "training.grad_shards=0",
         "training.ema_decay=0.99")


def run_cli(*args) -> int:
    return cli.main(list(args))


def test_configs_of_the_stages_train_and_sample_from_the_cli(tmp_path):
    """guidance_classifier and reflow run from the command line at smoke size: each stage gets its own
    resumable run directory, and sampling reads what the stages trained."""
    for name in ("guidance_classifier", "reflow"):
        workdir = tmp_path / name
        assert run_cli("train", "--config", f"{ROOT / 'configs' / name}.py:toy2d,smoke", "--workdir",
                       str(workdir)) == 0
        stage = "classifier" if name == "guidance_classifier" else "reflow_1"
        assert (workdir / stage / "config.json").exists()
        assert sorted(p.name for p in (workdir / stage / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]
        arrays = np.load(workdir / "samples" / "samples.npz")
        assert arrays["samples"].shape == (16, 2) and np.all(np.isfinite(arrays["samples"]))
        if name == "guidance_classifier":
            assert sorted(set(arrays["labels"].tolist())) == list(range(8))
            assert "class_accuracy" in json.loads((workdir / "samples" / "metrics.json").read_text())
        else:
            straightness = json.loads((workdir / "reflow.json").read_text())["straightness"]
            assert sorted(straightness) == ["0", "1"]
        # Sampling again from the run directory reads the stage's checkpoint (classifier / last reflow round).
        assert run_cli("sample", "--workdir", str(workdir), "--num_samples", "8") == 0


@pytest.mark.slow
def test_classifier_guidance_steers_an_unconditional_model_to_the_requested_classes(tmp_path):
    """An unconditional toy2d model plus a noisy classifier trained by the runner: guided samples land in the
    requested mixture component (the exact Bayes classifier's verdict) far more often than chance (1/8)."""
    c = config("guidance_classifier", "toy2d", "training.num_steps=1000", "training.log_every=500",
               "training.checkpoint_every=1000", *SMALL, "training.progress_bar=False", "optimizer.warmup_steps=100",
               "classifier.num_steps=1000", "sampler.name=ddim", "sampler.steps=50", "sampler.guidance=None",
               "sampling.num_samples=800", "sampling.batch_size=800")
    summary = train_and_evaluate(c, tmp_path)
    guided = summary["metrics"]["class_accuracy"]
    # The cross-entropy averages over all noise levels, so it stays between 0 and log 8 = 2.08.
    assert summary["stages"]["classifier"]["train"]["loss"] < 1.8
    # The classifier's own run holds its config; the main checkpoint is still the unconditional model.
    assert load_run_config(tmp_path / "classifier").model.out_dim == 8
    assert guided > 0.8, guided
    # With gamma = 0 the same run hits the requested class only at chance.
    from diffjax.generate import sample_and_evaluate

    control = apply_overrides(load_run_config(tmp_path), ["guidance.classifier_scale=0.0"])
    chance = sample_and_evaluate(control, tmp_path, num_samples=800)["metrics"]["class_accuracy"]
    assert abs(chance - 1 / 8) < 0.06, chance


@pytest.mark.slow
def test_reflow_round_straightens_the_paths(tmp_path):
    """A 1-rectified flow on the 8-component ring has curved paths; one reflow round on its own ODE pairs
    straightens them (article (十七)): the normalised straightness drops at least two-fold."""
    c = config("reflow", "toy2d", "training.num_steps=1000", "training.log_every=500",
               "training.checkpoint_every=1000", *SMALL, "training.progress_bar=False", "optimizer.warmup_steps=100",
               "reflow.num_pairs=4000", "reflow.num_steps=1000", "sampling.num_samples=500",
               "sampling.batch_size=500")
    summary = train_and_evaluate(c, tmp_path)
    straightness = summary["stages"]["reflow"]["straightness"]
    assert straightness["1"] < straightness["0"] / 2, straightness
    pairs = np.load(tmp_path / "reflow_1" / "pairs.npz")
    assert pairs["x0"].shape == pairs["x1"].shape == (4000, 2)
    # The pairs are the round-0 ODE's: its images of x1 lie near the ring of radius 2.
    radius = np.linalg.norm(pairs["x0"], axis=-1)
    assert abs(np.median(radius) - 2.0) < 0.3


@pytest.mark.slow
@pytest.mark.parametrize("variance", ["npr", "sn"])
def test_variance_head_learns_its_target_with_the_mean_model_frozen(variance, tmp_path):
    """The head stage (article (八)) trains on the frozen mean model: the main checkpoint is unchanged and the
    head's regression loss falls well below its starting value E[target^2] (the head starts at 0)."""
    c = config("analytic_dpm", "toy2d", "training.num_steps=300", "training.log_every=100",
               "training.checkpoint_every=300", *SMALL, "training.progress_bar=False", "optimizer.warmup_steps=50",
               f"sampler.variance={variance}", "variance.head_steps=600", "sampling.num_samples=200",
               "sampling.batch_size=200")
    summary = train_and_evaluate(c, tmp_path)
    _, state = restore_state(c, tmp_path)
    assert int(state.step) == 300
    head = stages.variance_head(c, tmp_path)
    # The head's regression loss on 8192 fresh points: trained head against the zero head it started as.
    objective = stages.variance_head_stage(c, tmp_path, state.ema_params).objective
    x0 = jnp.asarray(validate(c)[1].sample_reference(0, 8192))
    trained = float(objective(jax.random.key(1), lambda p, x, t: head(x, t), None, x0))
    zero = float(objective(jax.random.key(1), lambda p, x, t: jnp.zeros_like(x), None, x0))
    # For a Gaussian residual r of variance v the zero head scores E r^4 = 3 v^2 and the best head Var r^2 = 2 v^2:
    # a learned head approaches 2/3 of the zero head's loss (measured: 0.64 NPR, below it for SN).
    assert trained < 0.75 * zero, (trained, zero)
    formulation, _, _ = validate(c)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32))
    t = jnp.full((64,), 500, jnp.int32)
    moment = np.asarray(head(x, t))
    assert moment.shape == (64, 2) and np.all(np.isfinite(moment))
    # E[(eps - eps_theta)^2 | x_t] and E[eps^2 | x_t] are second moments: the trained head is positive on average.
    assert moment.mean() > 0.0
    assert np.isfinite(summary["metrics"]["sliced_w1"])


def test_stage_settings_are_checked_before_training(tmp_path):
    with pytest.raises(ConfigError, match="labelled dataset"):
        validate(config("guidance_classifier", "toy2d,smoke", "data.toy=checkerboard"))
    with pytest.raises(ConfigError, match="not both"):
        validate(config("guidance_classifier", "toy2d,smoke", "guidance.cfg_scale=1.0",
                        "model.class_conditional=True"))
    with pytest.raises(ConfigError, match="velocity model"):
        validate(config("ddpm", "toy2d,smoke", "reflow.rounds=1"))
    with pytest.raises(ConfigError, match="classifier input .logits.; valid choices: .x_t., .x0_hat."):
        validate(config("guidance_classifier", "toy2d,smoke", "guidance.classifier_input=logits"))
    assert stages.has_stages(config("reflow", "toy2d,smoke"))
    assert not stages.has_stages(config("rectified_flow", "toy2d,smoke"))
