"""End to end: each config trains, checkpoints, resumes and samples; resumes are bit-identical; a sharded run
equals a single-device one."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from diffjax import cli
from diffjax.config import apply_overrides, load_config
from diffjax.generate import load_run_config
from diffjax.training import restore_state, train

ROOT = pathlib.Path(__file__).resolve().parents[1]


def config_path(name: str, arg: str) -> str:
    return f"{ROOT / 'configs' / name}.py:{arg}"


def run_cli(*args) -> int:
    return cli.main(list(args))


@pytest.mark.parametrize("article", ["ddpm", "ddpm_vae", "ddpm_bayes", "ddim"])
def test_config_trains_checkpoints_resumes_and_samples(article, tmp_path, capsys):
    workdir = tmp_path / article
    assert run_cli("train", "--config", config_path(article, "toy2d,smoke"), "--workdir", str(workdir)) == 0
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]
    for name in ("config.json", "run_info.json", "metrics.jsonl", "samples/samples.npz", "samples/samples.png",
                 "samples/metrics.json"):
        assert (workdir / name).exists(), name
    info = json.loads((workdir / "run_info.json").read_text())
    assert info["diffjax_version"] and info["git_hash"]
    # Resume: the same command with more steps continues from step 2.
    assert run_cli("train", "--config", config_path(article, "toy2d,smoke"), "--workdir", str(workdir),
                   "--config.training.num_steps=3") == 0
    assert "resuming from step 2" not in capsys.readouterr().out  # logged, not printed to stdout
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    # Sample with another sampler from the run directory.
    assert run_cli("sample", "--workdir", str(workdir), "--config.sampler.name=ddim", "--config.sampler.steps=4",
                   "--config.sampler.eta=0.0", "--config.sampler.variance=None", "--num_samples", "10") == 0
    samples = np.load(workdir / "samples" / "samples.npz")["samples"]
    assert samples.shape == (10, 2) and np.all(np.isfinite(samples))
    assert run_cli("evaluate", "--workdir", str(workdir)) == 0
    assert "sliced_w1" in json.loads((workdir / "samples" / "metrics.json").read_text())


@pytest.mark.slow
def test_digits_smoke_writes_an_image_grid(tmp_path):
    workdir = tmp_path / "digits"
    assert run_cli("train", "--config", config_path("ddpm", "digits,smoke"), "--workdir", str(workdir)) == 0
    samples = np.load(workdir / "samples" / "samples.npz")["samples"]
    assert samples.shape == (16, 8, 8, 1) and samples.min() >= -1 and samples.max() <= 1
    metrics = json.loads((workdir / "samples" / "metrics.json").read_text())
    assert {"confidence", "class_coverage", "frechet_distance"} <= set(metrics)


def test_resumed_run_is_bit_identical(tmp_path):
    """RNG and data order are functions of the step, so 2 + 2 steps equal 4 steps exactly.

    The learning rate is held constant: a decaying schedule spans `num_steps`, which the first leg shortens.
    """
    base = ["training.num_steps=4", "training.checkpoint_every=2", "training.log_every=2", "optimizer.decay=constant"]
    config = apply_overrides(load_config(config_path("ddpm", "toy2d,smoke")), base)
    straight = train(config, tmp_path / "straight").state
    first = apply_overrides(load_config(config_path("ddpm", "toy2d,smoke")), base + ["training.num_steps=2"])
    train(first, tmp_path / "resumed")
    second = apply_overrides(load_config(config_path("ddpm", "toy2d,smoke")), base)
    resumed = train(second, tmp_path / "resumed").state
    assert int(resumed.step) == int(straight.step) == 4
    for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_workdir_with_another_config_is_refused(tmp_path, capsys):
    workdir = tmp_path / "w"
    assert run_cli("train", "--config", config_path("ddpm", "toy2d,smoke"), "--workdir", str(workdir)) == 0
    code = run_cli("train", "--config", config_path("ddpm", "toy2d,smoke"), "--workdir", str(workdir),
                   "--config.optimizer.learning_rate=0.5")
    err = capsys.readouterr().err
    assert code == 2 and "holds a run with a different config (optimizer.learning_rate)" in err


def _train_subprocess(workdir: pathlib.Path, devices: int, extra=()):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "diffjax.cli", "train", "--config", config_path("ddpm", "toy2d,smoke"),
           "--workdir", str(workdir), "--config.training.num_steps=3", *extra]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def _restored_params(*workdirs):
    return [restore_state(load_run_config(w), w)[1].params for w in workdirs]


def test_eight_devices_match_one_device_bit_for_bit(tmp_path):
    """The acceptance command `diffjax train --config configs/ddpm.py:toy2d,smoke` on 8 fake devices reaches
    exactly the checkpoint of 1 device (and of 2): toy configs cut the batch into `grad_shards=8` fixed
    shards whose gradients are added in a fixed order, so the device count cannot change the rounding."""
    for devices in (1, 2, 8):
        _train_subprocess(tmp_path / f"d{devices}", devices)
    assert load_run_config(tmp_path / "d1").training.grad_shards == 8
    one, two, eight = _restored_params(tmp_path / "d1", tmp_path / "d2", tmp_path / "d8")
    for a, b, c in zip(jax.tree.leaves(one), jax.tree.leaves(two), jax.tree.leaves(eight), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    info = json.loads((tmp_path / "d8" / "run_info.json").read_text())
    assert info["devices"] == 8


@pytest.mark.slow
def test_unsharded_reduction_matches_to_rounding_on_eight_devices(tmp_path):
    """With `grad_shards=0` the compiler splits the batch mean over the devices, so the 8-device run rounds
    differently: rtol 1e-5 plus an absolute floor of 1e-3 learning rates.

    Where a gradient element cancels across the batch its rounding is relatively large, and Adam's
    normalisation passes it on (measured: at most 9.4e-8 absolute on a few of 1024 elements, with lr 1e-3).
    A sharding bug (another data slice or RNG per device) moves parameters by whole updates, about one
    learning rate, far above this floor.
    """
    for devices in (1, 8):
        _train_subprocess(tmp_path / f"d{devices}", devices, ["--config.training.grad_shards=0"])
    floor = 1e-3 * load_run_config(tmp_path / "d1").optimizer.learning_rate
    one, eight = _restored_params(tmp_path / "d1", tmp_path / "d8")
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(eight), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=floor)


def test_grad_shards_must_divide_the_batch_and_be_divisible_by_the_devices(tmp_path, capsys):
    code = run_cli("train", "--config", config_path("ddpm", "toy2d,smoke"), "--workdir", str(tmp_path / "a"),
                   "--config.training.grad_shards=3")
    assert code == 2 and "grad_shards=3 must be 0 or a positive divisor of training.batch_size=8" in \
        capsys.readouterr().err


def test_non_finite_loss_stops_with_exit_1_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    workdir = tmp_path / "nan"
    code = run_cli("train", "--config", config_path("ddpm", "toy2d,smoke"), "--workdir", str(workdir),
                   "--config.optimizer.learning_rate=1e30", "--config.optimizer.grad_clip=0.0",
                   "--config.training.num_steps=4")
    err = capsys.readouterr().err
    assert code == 1, err
    assert "non-finite" in err and "at step" in err and "Traceback" not in err
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    bad_step = int(err.split("at step ")[1].split(";")[0])
    assert steps and max(steps) < bad_step  # nothing saved at or after the non-finite step


def test_sigterm_saves_a_checkpoint_exits_0_and_resumes(tmp_path):
    import signal
    import time

    workdir = tmp_path / "preempt"
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    cmd = [sys.executable, "-m", "diffjax.cli", "train", "--config", config_path("ddpm", "toy2d,smoke"),
           "--workdir", str(workdir), "--config.training.num_steps=100000", "--config.training.checkpoint_every=100000",
           "--config.training.log_every=50"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().strip()) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out[-2000:]
    assert "stopped by SIGTERM" in out
    steps = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
    assert len(steps) == 1 and steps[0] >= 50  # saved where it stopped, though no checkpoint step was reached
    config = load_run_config(workdir)
    assert int(restore_state(config, workdir)[0]) == steps[0]


# The slow ones share their code paths with a fast one (EM with pc, ODE with pf_ode, flow with rectified_flow).
CONTINUOUS_AND_GUIDED = ["sde_ve", "pf_ode", "analytic_dpm", "guidance_cfg", "edm", "rectified_flow",
                         *(pytest.param(a, marks=pytest.mark.slow)
                           for a in ("sde_vp", "sde_subvp", "ode_heat", "flow_matching"))]


@pytest.mark.parametrize("article", CONTINUOUS_AND_GUIDED)
def test_article_configs_of_the_continuous_family_train_and_sample(article, tmp_path):
    """Each config of articles (五)-(九), (十二), (十五), (十七) and EDM trains, checkpoints and samples with its
    own sampler at toy2d scale; the run's extras (variance table, labels, likelihood) land in the workdir."""
    workdir = tmp_path / article
    assert run_cli("train", "--config", config_path(article, "toy2d,smoke"), "--workdir", str(workdir)) == 0
    arrays = np.load(workdir / "samples" / "samples.npz")
    assert arrays["samples"].shape == (16, 2) and np.all(np.isfinite(arrays["samples"]))
    metrics = json.loads((workdir / "samples" / "metrics.json").read_text())
    assert np.isfinite(metrics["sliced_w1"])
    config = load_run_config(workdir)
    if article == "analytic_dpm":
        (table,) = (workdir / "variance").iterdir()  # estimated once for the checkpoint of step 2, then cached
        assert table.name.startswith("step2_eps_norm_")
        values = np.load(table)["values"]
        assert values.shape == (config.sampler.steps,) and np.all(values >= 0)
    if article == "guidance_cfg":
        assert sorted(set(arrays["labels"].tolist())) == list(range(8))  # the mixture's components as classes
    if article == "pf_ode":
        assert run_cli("likelihood", "--workdir", str(workdir), "--num_examples", "16") == 0
        result = json.loads((workdir / "likelihood.json").read_text())
        assert np.isfinite(result["log_likelihood_nats"]) and "exact_log_likelihood_nats" in result
        # The exact log-density bounds the model's from above only on average; a 2-step model is far below.
        assert result["log_likelihood_nats"] < result["exact_log_likelihood_nats"]


def test_label_dropout_reaches_the_null_class_in_training(tmp_path):
    """guidance.p_uncond trains the null label (the model's last class row) along with the real ones."""
    from diffjax.experiment import validate
    from diffjax.guidance import drop_labels

    config = load_config(config_path("guidance_cfg", "toy2d,smoke"))
    _, dataset, model = validate(config)
    labels = dataset.batch(0, 4096)["label"]
    dropped = np.asarray(drop_labels(jax.random.key(0), labels, config.guidance.p_uncond, model.num_classes))
    share = float(np.mean(dropped == model.num_classes))
    assert abs(share - config.guidance.p_uncond) < 5 * np.sqrt(0.1 * 0.9 / 4096)
    assert model.num_classes == 8
