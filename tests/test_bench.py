"""The bench (bench/run.py) end to end on tiny sizes: every section runs and writes its JSON and markdown.

A smoke test of the code path, not a timing test: it checks structure and internal consistency only (counts
of steps and evaluations, parameter counts, that the rates are positive and finite). The default test runs the
train, sampler and NFE sections of the quick bench in-process (XLA:CPU compiles take most of its time); the
likelihood, the levers and the PyTorch peers (when `.venv-peers` exists) are in the slow set.
"""

import json
import math
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT))
    try:
        import bench.run as run
    finally:
        sys.path.remove(str(ROOT))
    return run


def _count_params(preset, image_shape):
    """The parameter count of a U-Net from `jax.eval_shape` of its own initialisation (nothing computed)."""
    import jax
    import jax.numpy as jnp

    from diffjax.models import build_model, count_params

    model = build_model("unet", **preset)
    x, t = jnp.zeros((1, *image_shape)), jnp.zeros((1,), jnp.int32)
    return count_params(jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, x, t)))


def _finite_positive(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.mark.slow  # about 100 s; `make bench` itself is the full run
def test_quick_bench_writes_every_table(bench, tmp_path):
    results = bench.main(
        ["--quick", "--out", str(tmp_path), "--sections", "train,samplers,nfe", "--peak_tflops", "790"]
    )
    on_disk = json.loads((tmp_path / "results.json").read_text())
    markdown = (tmp_path / "results.md").read_text()
    assert on_disk["train"][0]["batch"] == results["train"][0]["batch"] == 2
    for heading in ("## Train step", "## Sampler cost per step", "## Error against NFE"):
        assert heading in markdown

    (train,) = results["train"]
    assert train["unet"] == "digits" and train["params"] == _count_params(bench.workloads.TINY_UNET, (8, 8, 1))
    assert _finite_positive(train["img_per_s"]) and _finite_positive(train["compile_s"])
    assert train["flops_per_step"] > 1e6 and 0 < train["mfu"] < 1e-3  # a CPU against an H200's peak
    assert train["memory"]["peak_mib"] > 0 and train["memory"]["alias_mib"] > 0  # the state is donated

    rows = {r["workload"]: r for r in results["samplers"]["rows"]}
    assert set(rows) == {
        "ancestral 50, trivial",
        "ddim 10, trivial",
        "euler 10 (edm), trivial denoiser",
        "ddim 10, digits U-Net",
    }
    assert all(_finite_positive(r["ms_per_step"]) for r in rows.values())
    assert rows["ancestral 50, trivial"]["steps"] == 50
    assert "overhead_ms_per_step" in rows["ddim 10, digits U-Net"]

    nfe = results["error_vs_nfe"]
    assert [r["nfe"] for r in nfe["rows"]][0] == 10  # DDIM: one evaluation per step
    assert all(0 < r["sliced_w1"] < 1.0 for r in nfe["rows"])  # exact eps: every sampler lands near the data
    assert nfe["noise_floor"]["mean"] > 0


@pytest.mark.slow
def test_quick_likelihood_and_levers(bench, tmp_path):
    results = bench.main(["--quick", "--out", str(tmp_path), "--sections", "likelihood,levers"])
    (likelihood,) = results["likelihood"]
    assert likelihood["nfe"] > 0 and _finite_positive(likelihood["s_per_example"])
    levers = {r["lever"] for r in results["levers"]}
    assert {"sampler noise", "whole-loop jit", "GroupNorm", "convolution layout"} <= levers
    assert {"several train steps per jitted call (lax.scan)", "buffer donation of the train state"} <= levers
    (peak,) = [r for r in results["levers"] if r["lever"] == "buffer donation of the train state: XLA peak"]
    assert peak["after"] < peak["before"]  # a donated state is not held twice
    assert all(_finite_positive(r["before"]) and _finite_positive(r["after"]) for r in results["levers"])
    assert "## Speed levers" in (tmp_path / "results.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(not PEERS_PYTHON.exists(), reason="no .venv-peers (make bench-peers builds it)")
def test_quick_bench_with_peers(bench, tmp_path):
    """The same tiny workloads on diffusers / k-diffusion: the U-Nets match parameter for parameter."""
    results = bench.main(
        ["--quick", "--out", str(tmp_path), "--sections", "train,samplers", "--peers", str(PEERS_PYTHON)]
    )
    assert results["peers"]["torch"].startswith("2.13.0")
    (train,) = results["train"]
    assert train["peer"]["params"] == train["params"]
    assert all(_finite_positive(r["peer"]["ms_per_step"]) for r in results["samplers"]["rows"])
    assert "diffusers img/s" in (tmp_path / "results.md").read_text()


def test_bfloat16_with_peers_is_refused_in_one_line(bench, capsys):
    """The peers run float32, so a bfloat16 ratio would mislead: refused before anything compiles."""
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(["--dtype", "bfloat16", "--peers", str(PEERS_PYTHON)])
    assert exit_info.value.code == 2
    assert "--dtype bfloat16 times diffjax alone (the peers run float32)" in capsys.readouterr().err
    assert bench.parse_args(["--dtype", "bfloat16"]).dtype == "bfloat16"


@pytest.mark.slow
def test_quick_bfloat16_train_step(bench, tmp_path):
    """`--dtype bfloat16` (for the MFU on accelerators) builds the U-Net in mixed precision: same parameters."""
    results = bench.main(["--quick", "--out", str(tmp_path), "--sections", "train", "--dtype", "bfloat16"])
    (train,) = results["train"]
    assert train["dtype"] == "bfloat16" and _finite_positive(train["img_per_s"])
    assert train["params"] == _count_params(bench.workloads.TINY_UNET, (8, 8, 1))  # float32 weights, as before
    assert "| digits |" in (tmp_path / "results.md").read_text() and "bfloat16" in (tmp_path / "results.md").read_text()
