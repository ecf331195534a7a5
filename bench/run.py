"""diffjax benchmarks: train-step throughput, sampler overhead, error against NFE, likelihood cost, speed levers.

Writes `results.json` and `results.md` into `--out`. Every time is a median over interleaved passes, measured
after compilation (reported apart). With `--peers PYTHON` (`make bench-peers`) the same workloads also run on
the PyTorch peers (diffusers, k-diffusion) in a worker process, taking turns with diffjax within each pass, and
the tables gain the peers' times and the ratios. Absolute times drift on a shared CPU: read the ratios.

    python -m bench.run --out bench                                   # make bench (about 10 minutes on 2 cores)
    python -m bench.run --out bench --peers .venv-peers/bin/python    # make bench-peers
    python -m bench.run --quick --out /tmp/bench                      # tiny sizes: a smoke test of every path
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import time

import jax

import diffjax as dj
from diffjax.training.cpu_convolutions import CHOICES as CPU_CONVOLUTIONS
from diffjax.training.host_devices import configure_cpu_devices

from . import levers, report, workloads
from .peer_client import Peer
from .timing import interleave, median, mfu, rss_mib, spread, timed


def _seconds(workload, repeats: int):
    """One pass of a workload: the median of `repeats` timed runs."""
    return lambda: median([timed(workload.run) for _ in range(repeats)])


def _peer_seconds(peer, repeats: int, **request):
    return lambda: median(peer.measure(repeats=repeats, **request)["times_s"])


def train_section(args, peer) -> list[dict]:
    """Train-step images per second of the digits and CIFAR-10 U-Nets at several batch sizes."""
    rows = []
    for name, batches in (("digits", args.digits_batches), ("cifar10", args.cifar_batches)):
        for batch in batches:
            workload = workloads.train_step(
                name,
                batch,
                quick=args.quick,
                cpu_convolutions=args.cpu_convolutions,
                model_overrides={"dtype": args.dtype},
            )
            contenders = {"diffjax": _seconds(workload, args.repeats)}
            request = None
            if peer is not None:
                shape = workloads.image_shape(name, args.quick)
                request = dict(
                    kind="train_step",
                    preset=workloads.unet_preset(name, args.quick),
                    image_size=shape[0],
                    channels=shape[-1],
                    batch=batch,
                )
                contenders["diffusers"] = _peer_seconds(peer, args.repeats, **request)
            times = interleave(contenders, args.passes)
            seconds = median(times["diffjax"])
            row = {
                "unet": name,
                "batch": batch,
                "dtype": args.dtype,
                "compile_s": workload.compile_s,
                "s_per_step": seconds,
                "img_per_s": batch / seconds,
                "spread": spread(times["diffjax"]),
                "times_s": times,
                **workload.info,
                "mfu": mfu(workload.info["flops_per_step"], seconds, args.peak_tflops),
            }
            if peer is not None:
                peer_seconds = median(times["diffusers"])
                row["peer"] = {
                    "name": "diffusers UNet2DModel",
                    "img_per_s": batch / peer_seconds,
                    "params": peer.measure(
                        kind="unet_params", **{k: v for k, v in request.items() if k not in ("kind", "batch")}
                    )["params"],
                    "spread": spread(times["diffusers"]),
                }
                row["speedup"] = peer_seconds / seconds
            rows.append(row)
            print(report.train_line(row), flush=True)
    return rows


def sampler_workloads(args):
    """(label, diffjax Workload, peer request or None, forward Workload or None) for the overhead table."""
    quick = args.quick
    trivial_shape = (4, 8, 8, 3) if quick else (64, 32, 32, 3)
    torch_shape = [trivial_shape[0], trivial_shape[3], trivial_shape[1], trivial_shape[2]]
    ddpm, edm = dj.process("ddpm"), dj.process("edm")
    long_steps, short_steps = (50, 10) if quick else (1000, 50)
    trivial, denoiser = workloads.trivial_predictor(), dj.Predictor(workloads._trivial_denoiser, kind="x0")
    ancestral = dj.sampler("ancestral", steps=long_steps)
    ddim = dj.sampler("ddim", steps=short_steps)
    out = [
        (
            f"ancestral {long_steps}, trivial",
            workloads.sampler_loop(ancestral, ddpm, trivial, trivial_shape),
            dict(kind="ddpm", steps=long_steps, shape=torch_shape),
            "diffusers DDPMScheduler",
        ),
        (
            f"ddim {short_steps}, trivial",
            workloads.sampler_loop(ddim, ddpm, trivial, trivial_shape),
            dict(kind="ddim", steps=short_steps, shape=torch_shape),
            "diffusers DDIMScheduler",
        ),
    ]
    k_samplers = (("euler", "euler"), ("heun", "heun"), ("dpm_solver", "dpmpp_2m"))
    for ours, theirs in k_samplers[:1] if quick else k_samplers:
        knobs = {"spacing": "edm"} if ours == "dpm_solver" else {}
        loop = workloads.sampler_loop(dj.sampler(ours, steps=short_steps, **knobs), edm, denoiser, trivial_shape)
        out.append(
            (
                f"{ours} {short_steps} (edm), trivial denoiser",
                loop,
                dict(kind="k_diffusion", sampler=theirs, steps=short_steps, shape=torch_shape),
                f"k-diffusion sample_{theirs}",
            )
        )
    predictor, shape = workloads.unet_predictor("digits", args.unet_sample_batch, quick)
    unet_torch_shape = [shape[0], shape[3], shape[1], shape[2]]
    preset = workloads.unet_preset("digits", quick)
    forward = workloads.forward_pass(predictor, shape)
    unet_loops = (
        (f"ancestral {long_steps}", ancestral, "ddpm", long_steps),
        (f"ddim {short_steps}", ddim, "ddim", short_steps),
    )
    for label, sampler, kind, steps in unet_loops[1:] if quick else unet_loops:
        out.append(
            (
                f"{label}, digits U-Net",
                workloads.sampler_loop(sampler, ddpm, predictor, shape),
                dict(kind=kind, steps=steps, shape=unet_torch_shape, preset=preset),
                f"diffusers {kind.upper()}Scheduler + UNet2DModel",
            )
        )
    return out, forward, dict(kind="unet_forward", preset=preset, shape=unet_torch_shape)


def sampler_section(args, peer) -> dict:
    """Milliseconds per sampler step, diffjax against the peers, with a trivial model and the digits U-Net."""
    entries, forward, forward_request = sampler_workloads(args)
    rows = []
    for label, workload, request, peer_name in entries:
        contenders = {"diffjax": _seconds(workload, 1)}
        if peer is not None:
            contenders["peer"] = _peer_seconds(peer, 1, **request)
        times = interleave(contenders, args.passes)
        row = {
            "workload": label,
            "shape": workload.info["shape"],
            "steps": workload.units,
            "compile_s": workload.compile_s,
            "ms_per_step": 1e3 * median(times["diffjax"]) / workload.units,
            "spread": spread(times["diffjax"]),
            "times_s": times,
        }
        if peer is not None:
            row["peer"] = {
                "name": peer_name,
                "ms_per_step": 1e3 * median(times["peer"]) / workload.units,
                "spread": spread(times["peer"]),
            }
            row["speedup"] = row["peer"]["ms_per_step"] / row["ms_per_step"]
        rows.append(row)
        print(report.sampler_line(row), flush=True)
    contenders = {"diffjax": _seconds(forward, 3)}
    if peer is not None:
        contenders["peer"] = _peer_seconds(peer, 3, **forward_request)
    times = interleave(contenders, args.passes)
    forward_row = {
        "shape": forward_request["shape"],
        "diffjax_ms": 1e3 * median(times["diffjax"]),
        "peer_ms": 1e3 * median(times["peer"]) if peer is not None else None,
    }
    for row in rows:  # the sampler's own cost per step: the step minus one model evaluation
        if "U-Net" in row["workload"]:
            row["overhead_ms_per_step"] = row["ms_per_step"] - forward_row["diffjax_ms"]
            if peer is not None:
                row["peer"]["overhead_ms_per_step"] = row["peer"]["ms_per_step"] - forward_row["peer_ms"]
    return {"rows": rows, "unet_forward": forward_row}


def main(argv=None) -> dict:
    args = parse_args(argv)
    # Before JAX starts: the host's cores as CPU devices, dividing every timed batch, as the CLI does.
    batches = (*args.digits_batches, *args.cifar_batches) if "train" in args.sections else ()
    configure_cpu_devices(args.cpu_devices, math.gcd(*batches) if batches else None)
    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", str(args.compilation_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    peer = Peer(args.peers) if args.peers else None
    results = {
        "args": {k: str(v) if isinstance(v, pathlib.Path) else v for k, v in vars(args).items()},
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": str(jax.devices()),
        "device_kind": jax.devices()[0].device_kind,
        "cpu_devices": args.cpu_devices,
        "cpu_convolutions": args.cpu_convolutions,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average_start": os.getloadavg(),
        "peers": peer.versions if peer else None,
    }
    sections = args.sections
    try:
        if "train" in sections:
            results["train"] = train_section(args, peer)
        if "samplers" in sections:
            results["samplers"] = sampler_section(args, peer)
        if "nfe" in sections:
            results["error_vs_nfe"] = workloads.error_vs_nfe(args.quick)
        if "likelihood" in sections:
            results["likelihood"] = workloads.likelihood(args.quick)
        if "levers" in sections:
            results["levers"] = levers.run(args.quick, args.passes)
    finally:
        if peer is not None:
            peer.close()
    results["load_average_end"] = os.getloadavg()  # other users' work on the same cores skews every time
    results["memory"] = rss_mib()
    results["wall_s"] = time.perf_counter() - start
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (args.out / "results.md").write_text(report.markdown(results))
    print(report.markdown(results))
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'} in {results['wall_s']:.0f} s")
    return results


SECTIONS = ("train", "samplers", "nfe", "likelihood", "levers")
DTYPES = ("float32", "bfloat16")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few passes: a smoke test")
    parser.add_argument(
        "--peers",
        type=pathlib.Path,
        default=None,
        help="the peers' Python (e.g. .venv-peers/bin/python): also time diffusers / k-diffusion",
    )
    parser.add_argument("--passes", type=int, default=None, help="interleaved passes (default 3; quick 1)")
    parser.add_argument("--repeats", type=int, default=None, help="train steps timed per pass (default 3; quick 1)")
    parser.add_argument("--digits_batches", type=_ints, default=None, help="default 32,128 (quick 2)")
    parser.add_argument("--cifar_batches", type=_ints, default=None, help="default 8,16 (quick: none)")
    parser.add_argument("--unet_sample_batch", type=int, default=None, help="default 4 (quick 2)")
    parser.add_argument(
        "--sections",
        type=lambda s: tuple(s.split(",")),
        default=SECTIONS,
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--peak_tflops",
        type=float,
        default=None,
        help="the peak TFLOP/s of all the devices a step runs on, for the MFU column (e.g. 790 for one H200 in bf16)",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=DTYPES,
        help="the train steps' compute dtype (the U-Nets' `dtype`): bfloat16 is mixed precision, for accelerators",
    )
    parser.add_argument(
        "--compilation_cache",
        type=pathlib.Path,
        default=None,
        help="a persistent XLA compilation cache directory (a second run skips compiling)",
    )
    parser.add_argument(
        "--cpu_devices",
        default="auto",
        help="CPU devices the train steps split their batch over: 'auto' (one per core, as the CLI) or a count",
    )
    parser.add_argument(
        "--cpu_convolutions",
        default="eigen",
        choices=CPU_CONVOLUTIONS,
        help="the train steps' convolution library on a CPU host, as the runner's training.cpu_convolutions",
    )
    args = parser.parse_args(argv)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
    if args.dtype != "float32" and args.peers is not None:
        parser.error(f"--dtype {args.dtype} times diffjax alone (the peers run float32); drop --peers or the dtype")
    quick = args.quick
    defaults = dict(
        passes=1 if quick else 3,
        repeats=1 if quick else 3,
        digits_batches=(2,) if quick else (32, 128),
        cifar_batches=() if quick else (8, 16),
        unet_sample_batch=2 if quick else 4,
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


if __name__ == "__main__":
    main()
