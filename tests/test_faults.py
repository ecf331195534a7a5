"""The fault matrix (docs/reliability.md): preemption, kill -9, corrupt checkpoints, disk full, device-count
changes and bad input. Each fault costs at most the work since the last checkpoint, and a resumed run ends
bit-identical to an uninterrupted one."""

import json
import logging
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from diffjax import cli
from diffjax.config import load_config, to_json
from diffjax.generate import load_run_config
from diffjax.training import restore_state, train

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = f"{ROOT / 'configs' / 'ddpm.py'}:toy2d,smoke"
STEPS = 600  # long enough to interrupt a subprocess mid-run (about 2-3 ms a step here, 20+ ms a checkpoint)


def _config(**training):
    config = load_config(CONFIG)
    config.training.update(progress_bar=False, **training)
    return config


CONSTANT_LR = "--config.optimizer.decay=constant"  # runs resumed with a larger num_steps: same lr schedule


def _constant_lr(config):
    config.optimizer.decay = "constant"
    return config


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Parameters of uninterrupted toy2d smoke runs: STEPS steps as configured, and 5 steps with a constant
    learning rate. Run on 1 device in subprocesses (fast); toy configs reduce gradients in fixed shards, so the
    8-device runs of this process and the 1-, 2- and 8-device subprocesses all reach the same bits."""
    runs = {STEPS: [f"--config.training.num_steps={STEPS}", f"--config.training.checkpoint_every={STEPS}"],
            5: ["--config.training.num_steps=5", CONSTANT_LR]}
    procs = {steps: (_launch(tmp_path_factory.mktemp(f"reference{steps}") / "w", *args), args)
             for steps, args in runs.items()}
    out = {}
    for steps, (proc, _) in procs.items():
        log = proc.communicate(timeout=600)[0]
        assert proc.returncode == 0, log[-3000:]
        workdir = pathlib.Path(proc.args[proc.args.index("--workdir") + 1])
        out[steps] = restore_state(load_run_config(workdir), workdir)[1].params
    return out


def _assert_same_params(params, workdir):
    restored = restore_state(load_run_config(workdir), workdir)[1].params
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _launch(workdir, *extra, devices=1, file_size_errors=False):
    """`diffjax train` in a subprocess; with `file_size_errors`, a file-size limit makes writes fail (EFBIG)
    instead of killing the process (SIGXFSZ ignored, which survives exec)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    cmd = [sys.executable, "-m", "diffjax.cli", "train", "--config", CONFIG, "--workdir", str(workdir), *extra]
    if file_size_errors:
        cmd[1:3] = ["-c", "import os, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                          "os.execv(sys.executable, [sys.executable, '-m', 'diffjax.cli', *sys.argv[1:]])"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _metric_lines(workdir) -> int:
    path = workdir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait_for_progress(proc, workdir, seen: int, timeout: float = 240.0) -> None:
    deadline = time.time() + timeout
    while _metric_lines(workdir) <= seen:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "training made no progress"
        time.sleep(0.05)


def _committed_steps(workdir) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


# --- 1. Preemption ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
                         ids=["SIGTERM", "SIGINT"])
def test_preempted_run_saves_exits_0_and_resumes_bit_identical(tmp_path, uninterrupted, sig):
    workdir = tmp_path / "w"
    args = [f"--config.training.num_steps={STEPS}", "--config.training.checkpoint_every=100000",
            "--config.training.log_every=10"]
    proc = _launch(workdir, *args)
    _wait_for_progress(proc, workdir, 0)
    proc.send_signal(sig)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out[-3000:]
    assert f"stopped by {sig.name}" in out and "Run the same command to resume" in out
    (stopped,) = _committed_steps(workdir)  # saved where it stopped, though no checkpoint step was due
    assert 10 <= stopped < STEPS
    meta = json.loads((workdir / "checkpoints" / str(stopped) / "meta" / "metadata").read_text())
    assert meta["data"] == {"seed": load_config(CONFIG).seed, "next_step": stopped}  # the data iterator's state
    resumed = _launch(workdir, *args)
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0 and f"resuming from step {stopped}" in out, out[-3000:]
    _assert_same_params(uninterrupted[STEPS], workdir)


# --- 2. Hard kill ----------------------------------------------------------------------------------------------

def test_kill_9_at_any_moment_keeps_a_restorable_checkpoint(tmp_path, uninterrupted):
    """Saves every 5 steps (asynchronous, so most kills land during one); three kill -9 at staggered times,
    then a restart finishes the run."""
    workdir = tmp_path / "w"
    args = [f"--config.training.num_steps={STEPS}", "--config.training.checkpoint_every=5",
            "--config.training.log_every=10", "--config.training.keep_checkpoints=2"]
    resumed_from = [0]
    for delay in (0.0, 0.35, 0.8):
        proc = _launch(workdir, *args)
        _wait_for_progress(proc, workdir, _metric_lines(workdir))
        time.sleep(delay)
        proc.kill()
        out = proc.communicate(timeout=60)[0]
        if resumed_from[-1]:
            assert f"resuming from step {resumed_from[-1]}" in out, out[-3000:]
        assert "unreadable" not in out
        latest = max(_committed_steps(workdir), default=0)
        assert latest >= resumed_from[-1]  # a kill never loses a committed step
        resumed_from.append(latest)
    last = _launch(workdir, *args)
    out = last.communicate(timeout=300)[0]
    assert last.returncode == 0, out[-3000:]
    # (On a slow machine all three kills may land before the first committed save: then it starts afresh.)
    assert not resumed_from[-1] or f"resuming from step {resumed_from[-1]}" in out, out[-3000:]
    assert not any(".orbax-checkpoint-tmp" in p.name for p in (workdir / "checkpoints").iterdir())
    _assert_same_params(uninterrupted[STEPS], workdir)


# --- 3. Corrupt or partial checkpoints -------------------------------------------------------------------------

def _largest_file(directory: pathlib.Path) -> pathlib.Path:
    return max((p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


CORRUPTIONS = {
    "truncated array data": lambda d: os.truncate(_largest_file(d / "state"), 100),
    "missing array metadata": lambda d: (d / "state" / "_METADATA").unlink(),
    "missing state directory": lambda d: shutil.rmtree(d / "state"),
    "garbled meta": lambda d: (d / "meta" / "metadata").write_text("{not json"),
}


@pytest.fixture(scope="module")
def three_step_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("three") / "w"
    train(_constant_lr(_config(num_steps=3, checkpoint_every=1, log_every=1)), workdir)
    return workdir


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_newest_checkpoint_falls_back_with_a_warning(tmp_path, three_step_run, uninterrupted, corruption,
                                                              caplog):
    workdir = tmp_path / "w"
    shutil.copytree(three_step_run, workdir)
    CORRUPTIONS[corruption](workdir / "checkpoints" / "3")
    with caplog.at_level(logging.WARNING, logger="diffjax"):
        result = train(_constant_lr(_config(num_steps=5, checkpoint_every=1, log_every=1)), workdir)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("checkpoint at step 3" in w and "unreadable" in w for w in warnings), warnings
    assert any("moved the unreadable checkpoint of step 3" in w for w in warnings), warnings
    (aside,) = (workdir / "unreadable_checkpoints").iterdir()  # kept for inspection, never deleted
    assert aside.name.startswith("3-")
    assert result.step == 5 and _committed_steps(workdir)[-1] == 5
    _assert_same_params(uninterrupted[5], workdir)


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(tmp_path, three_step_run, capsys):
    workdir = tmp_path / "w"
    shutil.copytree(three_step_run, workdir)
    for step in _committed_steps(workdir):
        (workdir / "checkpoints" / str(step) / "state" / "_METADATA").unlink()
    code = cli.main(["train", "--config", CONFIG, "--workdir", str(workdir), "--config.training.num_steps=5",
                     CONSTANT_LR])
    err = capsys.readouterr().err
    assert code == 1 and "no checkpoint in" in err and "is readable (steps 1, 2, 3)" in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.strip().splitlines()[-1]]
    assert _committed_steps(workdir) == [1, 2, 3]  # nothing moved or deleted


# --- 4. NaN / Inf ----------------------------------------------------------------------------------------------

def test_skip_nonfinite_steps_keeps_the_state_and_counts_them(tmp_path):
    """With training.skip_nonfinite a step whose loss or gradient is not finite leaves the parameters as they
    were; the run goes on and reports the skipped steps."""
    config = _config(num_steps=3, checkpoint_every=3, log_every=1, skip_nonfinite=True)
    config.optimizer.update(learning_rate=1e30, grad_clip=0.0)
    first = train(_config(num_steps=1, checkpoint_every=1, log_every=1, skip_nonfinite=True), tmp_path / "one")
    result = train(config, tmp_path / "w")
    assert result.step == 3 and int(result.last_metrics["skipped"]) == 1
    lines = [json.loads(line) for line in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert [int(line["skipped"]) for line in lines] == [0, 1, 1]  # step 1 is finite (Adam's first step is lr-sized)
    assert not np.isfinite(float(lines[1]["loss"])) or not np.isfinite(float(lines[1]["grad_norm"]))
    del first


# --- 5. Disk full / I/O errors ---------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux prlimit")
def test_disk_full_while_saving_is_one_clear_error_and_keeps_the_previous_checkpoint(tmp_path, uninterrupted):
    """A file-size limit imposed on the running process (writes then fail with EFBIG, as on a full disk) makes
    the next checkpoint fail: exit 1 with one line naming the intact step; a rerun resumes from it."""
    workdir = tmp_path / "w"
    args = [f"--config.training.num_steps={STEPS}", "--config.training.checkpoint_every=50",
            "--config.training.log_every=50"]
    proc = _launch(workdir, *args, file_size_errors=True)
    deadline = time.time() + 240
    while not ((workdir / "checkpoints").exists() and _committed_steps(workdir)):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (20_000, 20_000))  # checkpoint files are larger
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 1, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "checkpointing in" in errors[0] and "File too large" in errors[0], errors
    intact = _committed_steps(workdir)[-1]
    assert f"the newest committed checkpoint, step {intact}, is intact" in errors[0]
    rerun = _launch(workdir, *args)
    out = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0 and f"resuming from step {intact}" in out, out[-3000:]
    _assert_same_params(uninterrupted[STEPS], workdir)


# --- 6. Device count changes -----------------------------------------------------------------------------------

def test_restore_onto_another_device_count(tmp_path, uninterrupted):
    """Train 2 steps on 8 fake devices, resume on 2 devices to step 5: the parameters equal an uninterrupted
    run's exactly (toy configs reduce gradients in fixed shards)."""
    workdir = tmp_path / "w"
    for devices, steps in ((8, 2), (2, 5)):
        proc = _launch(workdir, f"--config.training.num_steps={steps}", CONSTANT_LR, devices=devices)
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, out[-3000:]
    assert "resuming from step 2" in out
    assert json.loads((workdir / "run_info.json").read_text())["devices"] == 2
    _assert_same_params(uninterrupted[5], workdir)


# --- 7. Bad input: one line, exit code 2, before compiling -----------------------------------------------------

def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_batch_not_divisible_by_the_device_count(tmp_path):
    proc = _launch(tmp_path / "w", devices=3)
    out = proc.communicate(timeout=120)[0]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and errors == ["error: training.batch_size=8 is not divisible by the 3 devices; "
                                               "use a multiple of 3"], out[-2000:]


def test_missing_dataset_directory(tmp_path, capsys):
    code = cli.main(["train", "--config", CONFIG, "--workdir", str(tmp_path / "w"), "--config.data.name=npz",
                     "--config.data.toy=None", f"--config.data.path={tmp_path / 'nowhere.npz'}"])
    line = _one_error_line(capsys)
    assert code == 2 and "nowhere.npz" in line


def test_unwritable_workdir(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a directory cannot be made under a file, even by root
    code = cli.main(["train", "--config", CONFIG, "--workdir", str(blocker / "w")])
    line = _one_error_line(capsys)
    assert code == 2 and "is not writable" in line and "pass a --workdir you can write to" in line


def test_sample_on_a_workdir_without_a_checkpoint(tmp_path, capsys):
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "config.json").write_text(to_json(load_config(CONFIG)))
    code = cli.main(["sample", "--workdir", str(workdir)])
    line = _one_error_line(capsys)
    assert code == 2 and "has no checkpoint; train first" in line


VP = ["--config.process.name=vp", "--config.process.num_steps=None", "--config.process.schedule=None"]


@pytest.mark.parametrize("overrides, message", [
    (["--config.prediction=velocity"], "prediction 'velocity' needs a continuous process"),
    ([*VP, "--config.objective.name=elbo"], "needs the discrete 'ddpm' process"),
    (["--config.sampler.name=euler_maruyama", "--config.sampler.variance=None"],
     "sampler 'euler_maruyama' needs a continuous-time process"),
    (["--config.sampler.name=heun"], "unset the others' knobs (e.g. --config.sampler.variance=None)"),
])
def test_incompatible_choices(tmp_path, capsys, overrides, message):
    code = cli.main(["train", "--config", CONFIG, "--workdir", str(tmp_path / "w"), *overrides])
    line = _one_error_line(capsys)
    assert code == 2 and message in line
    assert not (tmp_path / "w").exists()  # refused before anything was written or compiled
