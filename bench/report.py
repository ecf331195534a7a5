"""Markdown tables of a bench run (`results.md`), from the dictionary that is also written as `results.json`."""

from __future__ import annotations


def _f(value, digits: int = 2, suffix: str = "") -> str:
    if value is None or value != value:
        return "–"
    return f"{value:.{digits}f}{suffix}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def train_line(row: dict) -> str:
    text = (
        f"train {row['unet']} b{row['batch']} {row['dtype']}: {row['img_per_s']:.1f} img/s "
        f"(compile {row['compile_s']:.1f} s, "
        f"spread ±{100 * row['spread']:.0f}%)"
    )
    if "peer" in row:
        text += f"; diffusers {row['peer']['img_per_s']:.1f} img/s; diffjax/diffusers {row['speedup']:.2f}x"
    return text


def sampler_line(row: dict) -> str:
    text = f"{row['workload']}: {row['ms_per_step']:.3f} ms/step (compile {row['compile_s']:.1f} s)"
    if "peer" in row:
        text += f"; {row['peer']['name']} {row['peer']['ms_per_step']:.3f} ms/step; peer/diffjax {row['speedup']:.2f}x"
    return text


def train_table(rows: list[dict], with_peer: bool) -> list[str]:
    header = [
        "U-Net", "params", "batch", "dtype", "compile s", "diffjax img/s", "GFLOP/step (XLA)", "MFU", "XLA peak MiB"
    ]
    if with_peer:
        header[1] = "params (diffjax / diffusers)"
        header += ["diffusers img/s", "diffjax / diffusers"]
    out = []
    for r in rows:
        params = f"{r['params']:,}" + (f" / {r['peer']['params']:,}" if with_peer else "")
        gflop = r["flops_per_step"] / 1e9 if r.get("flops_per_step") else None
        line = [
            r["unet"],
            params,
            r["batch"],
            r["dtype"],
            _f(r["compile_s"], 1),
            _f(r["img_per_s"], 1),
            _f(gflop, 1),
            _f(100 * r["mfu"], 3, "%") if r.get("mfu") is not None else "–",
            _f(r["memory"].get("peak_mib"), 0),
        ]
        if with_peer:
            line += [_f(r["peer"]["img_per_s"], 1), _f(r["speedup"], 2, "x")]
        out.append(line)
    return _table(header, out)


def sampler_table(section: dict, with_peer: bool) -> list[str]:
    header = ["workload", "shape", "steps", "compile s", "diffjax ms/step", "sampler overhead ms/step"]
    if with_peer:
        header += ["peer", "peer ms/step", "peer overhead ms/step", "peer / diffjax"]
    out = []
    for r in section["rows"]:
        trivial = "trivial" in r["workload"]
        overhead = r["ms_per_step"] if trivial else r.get("overhead_ms_per_step")
        line = [
            r["workload"],
            "×".join(str(s) for s in r["shape"]),
            int(r["steps"]),
            _f(r["compile_s"], 1),
            _f(r["ms_per_step"], 3),
            _f(overhead, 3),
        ]
        if with_peer:
            peer = r["peer"]
            peer_overhead = peer["ms_per_step"] if trivial else peer.get("overhead_ms_per_step")
            line += [peer["name"], _f(peer["ms_per_step"], 3), _f(peer_overhead, 3), _f(r["speedup"], 2, "x")]
        out.append(line)
    lines = _table(header, out)
    fwd = section["unet_forward"]
    note = f"One digits U-Net forward pass at {'×'.join(str(s) for s in fwd['shape'])}: {fwd['diffjax_ms']:.2f} ms"
    if fwd.get("peer_ms") is not None:
        note += f" (diffusers {fwd['peer_ms']:.2f} ms)"
    note += (
        "; with the U-Net, the sampler overhead is the step time minus this forward pass (a trivial "
        "model's step is all overhead)."
    )
    return lines + ["", note]


def nfe_table(section: dict) -> list[str]:
    floor = section["noise_floor"]
    rows = [[r["sampler"], r["nfe"], _f(r["sliced_w1"], 4), _f(r["seconds"], 2)] for r in section["rows"]]
    return [
        f"{section['num_samples']} samples driven by the exact eps of the 2-D three-component mixture; "
        f"sliced-W1 to a data draw. Noise floor (two data draws): {floor['mean']:.4f} ± {floor['std']:.4f}. "
        "Seconds include compilation.",
        "",
    ] + _table(["sampler (process)", "NFE", "sliced-W1", "s"], rows)


def likelihood_table(rows: list[dict]) -> list[str]:
    body = [[r["workload"], r["batch"], r["nfe"], _f(r["compile_s"], 1), _f(1e3 * r["s_per_example"], 2)] for r in rows]
    return _table(["dj.log_likelihood", "batch", "NFE", "compile s", "ms / example"], body)


def levers_table(rows: list[dict]) -> list[str]:
    body = [
        [
            r["lever"],
            r["workload"],
            f"{r['before_label']}: {_f(r['before'], 3)}",
            f"{r['after_label']}: {_f(r['after'], 3)}",
            r["unit"],
            _f(r["ratio"], 2, "x"),
        ]
        for r in rows
    ]
    return _table(["lever", "workload", "before", "after", "unit", "before / after"], body)


def markdown(results: dict) -> str:
    with_peer = bool(results.get("peers"))
    lines = [
        "# diffjax bench",
        "",
        f"jax {results['jax']} on {results['backend']} ("
        + (f"{results['device_kind']}; " if results["backend"] != "cpu" else "")
        + f"{results['cpu_count']} CPUs)"
        + (
            f"; peers: torch {results['peers']['torch']}, diffusers {results['peers']['diffusers']}, "
            f"k-diffusion {results['peers']['k_diffusion']}"
            if with_peer
            else ""
        )
        + f". Medians over {results['args']['passes']} interleaved passes; compile times apart. "
        "Ratios above 1 favour diffjax.",
        "",
    ]
    if "train" in results:
        lines += ["## Train step (eps-MSE, Adam, EMA; the runner's step)", ""]
        lines += train_table(results["train"], with_peer) + [""]
    if "samplers" in results:
        lines += ["## Sampler cost per step", ""] + sampler_table(results["samplers"], with_peer) + [""]
    if "error_vs_nfe" in results:
        lines += ["## Error against NFE", ""] + nfe_table(results["error_vs_nfe"]) + [""]
    if "likelihood" in results:
        lines += ["## Likelihood", ""] + likelihood_table(results["likelihood"]) + [""]
    if "levers" in results:
        lines += ["## Speed levers (interleaved A/B, medians)", ""] + levers_table(results["levers"]) + [""]
    if "load_average_start" in results:
        lines += [
            f"Machine load average (1 min) at start / end: {results['load_average_start'][0]:.1f} / "
            f"{results['load_average_end'][0]:.1f} on {results['cpu_count']} CPUs.",
            "",
        ]
    memory = results.get("memory", {})
    lines += [
        f"Process memory: RSS {_f(memory.get('rss_mib'), 0)} MiB now, peak {_f(memory.get('peak_rss_mib'), 0)}"
        f" MiB. Wall time {results.get('wall_s', 0):.0f} s.",
        "",
    ]
    return "\n".join(lines)
