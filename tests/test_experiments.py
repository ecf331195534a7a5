"""The article experiments (experiments/*.py) run end to end, write their reports, and their numbers hold the claims.

Every script runs once with `--quick` (smoke-test sizes, fixed keys) in its own subprocess; all nine start together
and each test waits for its own. The checks read the raw numbers from the script's JSON, not the script's own
verdicts, and ask only for the robust form of each claim: the quick runs are small, so every asserted gap was
measured to be several times the run-to-run spread of the numbers involved (quick-run values below).

Runtime: about 6 minutes of CPU in all (each script 15-30 s alone, the three trained-model scripts 40-120 s, the
masked-digits Transformer the longest; 3.1 minutes of wall time on 2 shared cores), so the module is marked slow.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = (
    "ddim_eta_steps",
    "pf_ode_likelihood",
    "analytic_variance",
    "ode_solvers_nfe",
    "guidance_scale",
    "reflow_straightness",
    "udm_blur_vs_noise",
    "masked_digits",
    "pfgm_nfe",
)
TIMEOUT_S = 900


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Starts every script with `--quick` into one temporary directory; returns it and the running processes."""
    out = tmp_path_factory.mktemp("experiments")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a user runs them
    env["JAX_PLATFORMS"] = "cpu"
    procs = {}
    for name in SCRIPTS:
        with open(out / f"{name}.log", "w") as log:
            procs[name] = subprocess.Popen(
                [sys.executable, str(ROOT / "experiments" / f"{name}.py"), "--out", str(out), "--quick"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    yield out, procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()


def _finished(runs, name) -> dict:
    """Waits for `name`, checks its three files and returns its JSON record."""
    out, procs = runs
    try:
        code = procs[name].wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        procs[name].kill()
        pytest.fail(f"{name} --quick ran past {TIMEOUT_S} s")
    log = (out / f"{name}.log").read_text()
    assert code == 0, f"{name} --quick exited {code}:\n{log[-4000:]}"
    png = (out / f"{name}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, f"{name}.png is not a figure"
    table = (out / f"{name}.md").read_text()
    assert f"experiments/{name}.py" in table and "--quick" in table, "the table must open with the exact command"
    assert "|---|" in table, f"{name}.md has no table"
    record = json.loads((out / f"{name}.json").read_text())
    assert record["experiment"] == name and record["quick"] is True
    assert record["claims"] and all(record["claims"].values()), record["claims"]
    return record


def test_ddim_eta_steps(runs):
    """(四) Quick run: 10 steps eta 0 / 0.5 / 1 at 0.121 / 0.142 / 0.152, 5 steps 0.230 / 0.235 / 0.293; eta = 1 goes
    from 0.293 at 5 steps to 0.047 at 200; noise threshold 0.079."""
    r = _finished(runs, "ddim_eta_steps")
    at = {s: i for i, s in enumerate(r["steps"])}
    mean = {eta: np.asarray(v) for eta, v in r["sliced_w1_mean"].items()}
    for steps in (5, 10):
        assert mean["0"][at[steps]] < mean["1"][at[steps]]
    assert mean["1"][at[5]] > 3 * mean["1"][at[200]]
    assert all(mean[eta][at[200]] < 2 * r["noise_floor"]["threshold"] for eta in mean)


def test_pf_ode_likelihood(runs):
    """(六) Quick run: exact divergence within 1e-3 nats once the prior mismatch is removed; Hutchinson's error spread
    0.82 nats with 1 probe, 0.31 with 4 (ratio 0.38), both unbiased."""
    r = _finished(runs, "pf_ode_likelihood")
    for process, res in r["results"].items():
        truth = np.asarray(res["exact_log_prob"])
        exact, one, four = (
            np.asarray(res[k]["log_prob"]) for k in ("exact divergence", "Hutchinson, 1 probe", "Hutchinson, 4 probes")
        )
        solver_error = exact - truth - np.asarray(res["exact divergence"]["prior_mismatch"])
        assert np.abs(solver_error).max() < 0.01, process
        assert (four - truth).std() < 0.75 * (one - truth).std(), process
        for hutchinson in (one, four):
            gap = hutchinson - exact
            assert abs(gap.mean()) < 4 * gap.std() / np.sqrt(gap.size), process


def test_analytic_variance(runs):
    """(七)(八) Quick run at 10 steps: beta 0.112, posterior 0.152, analytic 0.079; DDIM 0.121, analytic DDIM 0.074;
    the analytic gain over the better DDPM variance is 0.033 at 10 steps, 0.001 at 100."""
    r = _finished(runs, "analytic_variance")
    at = {s: i for i, s in enumerate(r["steps"])}
    mean = {label: np.asarray(v) for label, v in r["sliced_w1_mean"].items()}
    i = at[10]
    assert mean["ancestral analytic"][i] < min(mean["ancestral σ = β"][i], mean["ancestral σ = posterior"][i])
    assert mean["DDIM η = 0, analytic"][i] < mean["DDIM η = 0"][i]
    assert r["gain_over_best_ddpm_variance"]["10"] > r["gain_over_best_ddpm_variance"]["100"]
    # The eps-norm table matches the oracle where its Monte-Carlo error is small (t <= 100: measured within 1%).
    table = r["table"]
    for t, estimate, oracle in zip(table["times"], table["estimate"], table["oracle"], strict=True):
        if t <= 100:
            assert abs(estimate - oracle) < 0.05 * oracle, t


def test_ode_solvers_nfe(runs):
    """(五)(六)(二十一) Quick run: end-point errors Euler 0.35 (10 NFE) and 0.013 (200), Heun 3.1 (9) and 0.0012 (199),
    DPM-Solver++ 0.17 (10); tsit5 1.2e-3 at tol 1e-3, 9e-7 at 1e-6."""
    r = _finished(runs, "ode_solvers_nfe")
    res = r["results"]
    euler, heun, dpm, tsit5 = (
        res[k] for k in ("Euler (EDM, = DDIM)", "Heun (EDM)", "DPM-Solver++ 2M", "tsit5 (adaptive)")
    )
    assert heun[-1]["mean_error"] < euler[-1]["mean_error"]
    euler_10 = next(e["mean_error"] for e in euler if e["nfe"] == 10)
    assert next(e["mean_error"] for e in dpm if e["nfe"] == 10) < euler_10
    assert tsit5[-1]["mean_error"] < 0.01 * tsit5[0]["mean_error"]
    assert all(e["nfe"] == 2 * e["knob"] - 1 for e in heun)


def test_guidance_scale(runs):
    """(九) Quick run: accuracy 0.77 at w = 0 to 1.0 at w = 4, spread ratio 0.98 to 0.64; gamma = 0.5 to 4: accuracy
    0.55 to 1.0, spread 1.14 to 0.67."""
    r = _finished(runs, "guidance_scale")
    cf, cl = r["classifier_free"], r["classifier"]
    assert cf["4"]["accuracy"] > cf["0"]["accuracy"] + 0.1
    assert cf["4"]["spread_ratio"] < cf["0"]["spread_ratio"] - 0.1
    assert cl["4"]["accuracy"] > cl["0.5"]["accuracy"] + 0.1
    assert cl["4"]["spread_ratio"] < cl["0.5"]["spread_ratio"] - 0.1
    assert abs(cf["0"]["accuracy"] - r["data_accuracy"]) < 0.05  # w = 0 is the class law


def test_reflow_straightness(runs):
    """(十七) Quick run: straightness 0.89 (1-RF) against 0.004 (2-RF); one Euler step at sliced-W1 1.27 against
    0.09."""
    r = _finished(runs, "reflow_straightness")
    straight = r["straightness"]
    assert straight["2-RF (trained MLP)"] < straight["1-RF (exact)"] / 3
    one = r["euler_steps"].index(1)
    assert r["sliced_w1"]["2-RF (trained MLP)"][one] < r["sliced_w1"]["1-RF (exact)"][one]
    assert r["transport_cost"]["1-RF (reflow) pairs"] < r["transport_cost"]["independent pairs"]


def test_udm_blur_vs_noise(runs):
    """(十一) Quick runs (seeds 0, 1, 2 of the runner): class entropy of noise 2.22-2.27 against blur (sigma = 0.01,
    improved) 0.30-0.40, classes 10 against 2-3, Fréchet distance 59-74 against 318-326; from the noise-free prior
    entropy 0.27-0.35 and pixel spread 0.16-0.18 (noise 0.80-0.82); sigma = 0.3 blur entropy 2.03-2.04, its naive
    sampler 0.0; the naive sampler at sigma = 0.01 has Fréchet distance 480-656."""
    r = _finished(runs, "udm_blur_vs_noise")["results"]
    noise, blur = r["noise: UDM Gaussian, 100 steps"], r["blur σ=0.01: improved sampler"]
    naive, noise_free = r["blur σ=0.01: naive sampler"], r["blur σ=0.01: improved, noise-free x_T"]
    large, large_naive = r["blur σ=0.3: improved sampler"], r["blur σ=0.3: naive sampler"]
    assert noise["class_entropy"] > blur["class_entropy"] + 1.0
    assert noise["class_coverage"] >= blur["class_coverage"] + 4
    assert noise["frechet_distance"] < 0.5 * blur["frechet_distance"]
    assert noise_free["class_entropy"] < noise["class_entropy"] - 1.0
    assert noise_free["pixel_spread"] < 0.5 * noise["pixel_spread"]
    assert large["class_entropy"] > blur["class_entropy"] + 1.0
    assert large_naive["class_entropy"] < large["class_entropy"] - 1.0
    assert naive["frechet_distance"] > blur["frechet_distance"]


def test_masked_digits(runs):
    """(十一) Quick runs (seeds 0 and 1): Fréchet distance at k = 1, 4, 16, 64 of 94 / 92 / 110 / 134 and
    54 / 61 / 72 / 134 (binarised train digits: 42); class entropy 2.04 and 2.23 at k = 1, 1.68 and 1.74 at k = 64;
    NFE = 64 / k exactly."""
    r = _finished(runs, "masked_digits")
    by_k = {k: r["results"][f"unmask k = {k}"] for k in r["unmask_per_step"]}
    assert all(by_k[k]["nfe"] == 64 // k for k in by_k)
    assert by_k[64]["frechet_distance"] > 1.2 * by_k[1]["frechet_distance"]
    assert by_k[16]["frechet_distance"] > by_k[1]["frechet_distance"]
    assert by_k[64]["class_entropy"] < by_k[1]["class_entropy"] - 0.2
    assert by_k[1]["class_coverage"] >= 9


def test_pfgm_nfe(runs):
    """(十三) Quick runs (two seeds of the runner and of the prior draws): exact field NFE 79-97, median distance to
    the nearest point 0.0015-0.0017, weight error (TV) 0.018-0.030, sliced-W1 0.049-0.100 against a noise threshold
    0.101; ring NFE 1111-1141 at rtol 1e-2 and 1411 or ran out (> 512 steps) at 1e-4, 2.4-3.6% of the samples lost
    (prior radius about 800-1250 against 65 for the kept), kept median radius 2.04-2.06, kept sliced-W1 0.11-0.12;
    digits 6-7 classes."""
    r = _finished(runs, "pfgm_nfe")
    exact, ring, digits = r["exact_points"], r["ring"], r["digits"]
    assert exact[-1]["median_distance_to_nearest_point"] < 0.01
    assert exact[-1]["weight_error"] < 0.06
    assert exact[-1]["sliced_w1"] < 1.5 * r["noise_floor"]["points"]["threshold"]
    assert ring[0]["nfe"] is not None and (ring[-1]["nfe"] is None or ring[-1]["nfe"] > ring[0]["nfe"])
    best = [row for row in ring if row["nfe"] is not None][-1]
    assert best["lost"] < 0.2 and abs(best["median_radius_kept"] - 2.0) < 0.2
    assert best["median_prior_radius_lost"] > 3 * best["median_prior_radius_kept"]
    assert best["sliced_w1_kept"] < 0.5
    done = [row for row in digits if row["nfe"] is not None]
    assert done and done[-1]["class_coverage"] >= 4
