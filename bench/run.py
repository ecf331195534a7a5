"""Sampler benchmarks: per-step overhead of the fused samplers and their error against NFE.

Writes `results.json` and `results.md` into `--out`. Times are medians over repeats, measured after
compilation (reported separately); compare ratios within one run, as absolute times drift on shared CPUs.

    python bench/run.py --out bench
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import time

import jax

import diffjax as dj
from diffjax.testing import gaussian_mixture, sliced_wasserstein


def _timed(fn, repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(0))
    compile_s = time.perf_counter() - start
    runs = []
    for i in range(1, repeats + 1):
        start = time.perf_counter()
        jax.block_until_ready(fn(i))
        runs.append(time.perf_counter() - start)
    return compile_s, statistics.median(runs)


def sampler_overhead(repeats):
    """Per-step cost of ancestral-1000 and DDIM-50 with a trivial model on (64, 32, 32, 3)."""
    process = dj.process("ddpm", num_steps=1000)
    trivial = dj.Predictor(lambda x, t: 0.1 * x, kind="eps")
    shape = (64, 32, 32, 3)
    rows = []
    for name, sampler in [("ancestral, 1000 steps", dj.sampler("ancestral")),
                          ("ddim eta=0, 50 steps", dj.sampler("ddim", steps=50)),
                          ("ddim eta=1, 50 steps", dj.sampler("ddim", steps=50, eta=1.0))]:
        steps = sampler.steps or process.num_steps
        run = lambda i, s=sampler: dj.sample(jax.random.key(i), trivial, process, s, shape)  # noqa: E731
        compile_s, run_s = _timed(run, repeats)
        rows.append({"workload": name, "shape": list(shape), "compile_s": compile_s,
                     "ms_per_step": 1e3 * run_s / steps})
    return rows


def error_vs_nfe():
    """Sliced-W1 to the data law for each sampler driven by the exact eps of a 2-D mixture."""
    data = gaussian_mixture([0.2, 0.3, 0.5], [[-2.0, -1.0], [0.0, 2.0], [2.0, -0.5]],
                            [[0.3, 0.6], [0.5, 0.25], [0.4, 0.4]])
    process = dj.process("ddpm")
    predictor = data.predictor(process)
    reference = data.sample(jax.random.key(1), 4000)
    floor = float(sliced_wasserstein(jax.random.key(2), data.sample(jax.random.key(3), 4000), reference))
    rows = [{"sampler": "data vs data (noise floor)", "nfe": 0, "sliced_w1": floor}]
    for steps in (5, 10, 20, 50, 100):
        for name, sampler in [("ddim eta=0", dj.sampler("ddim", steps=steps, spacing="trailing")),
                              ("ddim eta=1", dj.sampler("ddim", steps=steps, eta=1.0, spacing="trailing"))]:
            x = dj.sample(jax.random.key(4), predictor, process, sampler, (4000, 2))
            rows.append({"sampler": name, "nfe": steps,
                         "sliced_w1": float(sliced_wasserstein(jax.random.key(2), x, reference))})
    x = dj.sample(jax.random.key(4), predictor, process, dj.sampler("ancestral"), (4000, 2))
    rows.append({"sampler": "ancestral", "nfe": 1000,
                 "sliced_w1": float(sliced_wasserstein(jax.random.key(2), x, reference))})
    return rows


def main(out: pathlib.Path, repeats: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results = {"jax": jax.__version__, "backend": jax.default_backend(), "machine": platform.processor() or
               platform.machine(), "sampler_overhead": sampler_overhead(repeats), "error_vs_nfe": error_vs_nfe()}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    lines = ["| sampler workload | shape | compile s | ms / step |", "|---|---|---|---|"]
    lines += [f"| {r['workload']} | {tuple(r['shape'])} | {r['compile_s']:.2f} | {r['ms_per_step']:.3f} |"
              for r in results["sampler_overhead"]]
    lines += ["", "| sampler (exact eps, 2-D mixture) | NFE | sliced-W1 |", "|---|---|---|"]
    lines += [f"| {r['sampler']} | {r['nfe']} | {r['sliced_w1']:.4f} |" for r in results["error_vs_nfe"]]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    main(args.out, args.repeats)
