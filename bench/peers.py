"""The PyTorch peers of the bench workloads: diffusers' `UNet2DModel` and schedulers, k-diffusion's samplers.

This file runs in its own environment, `.venv-peers` (torch 2.13.0 CPU, diffusers, k-diffusion; `make
bench-peers` builds it), never in diffjax's: `bench/run.py` starts it as a worker and sends one JSON request
per line on stdin, so JAX and torch never share a process and their passes interleave within one run.

    .venv-peers/bin/python bench/peers.py --serve        # the worker bench/run.py drives
    .venv-peers/bin/python bench/peers.py --check        # imports everything and prints the versions

k-diffusion is installed without its dependencies, and its package `__init__` imports modules that need
scikit-image, torchvision and more. `import_k_diffusion_sampling` loads only `k_diffusion.sampling` (and the
`k_diffusion.utils` it imports) under a package stub that skips that `__init__`; `k_diffusion.utils` imports
`torchvision.transforms.functional` for two image helpers the samplers never call, so when torchvision is
absent an empty stand-in module answers that import. Nothing of k-diffusion is copied here.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types

import torch
import torch.nn.functional as F


def import_k_diffusion_sampling():
    """`k_diffusion.sampling` without running `k_diffusion/__init__.py` (see the module docstring)."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("k-diffusion is not installed; run `make bench-peers` (it installs k-diffusion --no-deps)")
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = package
    if importlib.util.find_spec("torchvision") is None:
        stand_in = types.ModuleType("torchvision")
        stand_in.__path__ = []
        transforms = types.ModuleType("torchvision.transforms")
        transforms.__path__ = []
        functional = types.ModuleType("torchvision.transforms.functional")
        transforms.functional = functional
        stand_in.transforms = transforms
        sys.modules.update(
            {
                "torchvision": stand_in,
                "torchvision.transforms": transforms,
                "torchvision.transforms.functional": functional,
            }
        )
    import k_diffusion.sampling as sampling

    return sampling


# ---- the U-Net: diffusers' UNet2DModel built to match diffjax's U-Net presets ------------------------------------
def unet2d_config(preset: dict, image_size: int, channels: int) -> dict:
    """`UNet2DModel` keyword arguments for a diffjax U-Net preset (DDPM's layout: the same widths, blocks,
    attention resolutions and groups; one attention head; GroupNorm eps 1e-6; dropout as the preset)."""
    mult = preset["ch_mult"]
    down, size = [], image_size
    for level in range(len(mult)):
        down.append("AttnDownBlock2D" if size in preset["attn_resolutions"] else "DownBlock2D")
        if level != len(mult) - 1:
            size //= 2
    up = ["AttnUpBlock2D" if name == "AttnDownBlock2D" else "UpBlock2D" for name in reversed(down)]
    return dict(
        sample_size=image_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(preset["ch"] * m for m in mult),
        layers_per_block=preset["num_res_blocks"],
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=preset.get("num_groups", 32),
        norm_eps=1e-6,
        attention_head_dim=None,
        dropout=preset.get("dropout", 0.0),
        flip_sin_to_cos=False,
        freq_shift=1,
    )


def build_unet(preset: dict, image_size: int, channels: int):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(**unet2d_config(preset, image_size, channels))


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


class TrainStep:
    """One DDPM eps-MSE step as diffjax's runner takes it: random t and noise, MSE, backward, clip the global
    gradient norm to 1, Adam, then an EMA of the weights."""

    def __init__(self, preset, image_size, channels, batch, lr=2e-4, ema_decay=0.9999, seed=0):
        from diffusers import DDPMScheduler

        self.model = build_unet(preset, image_size, channels).train()
        self.params = [p for p in self.model.parameters()]
        self.ema = [p.detach().clone() for p in self.params]
        self.optimizer = torch.optim.Adam(self.params, lr=lr, foreach=True)
        self.schedule = DDPMScheduler(num_train_timesteps=1000)
        self.decay = ema_decay
        generator = torch.Generator().manual_seed(seed)
        self.x0 = torch.rand((batch, channels, image_size, image_size), generator=generator) * 2 - 1

    def __call__(self):
        batch = self.x0.shape[0]
        t = torch.randint(0, 1000, (batch,))
        noise = torch.randn_like(self.x0)
        x_t = self.schedule.add_noise(self.x0, noise, t)
        loss = F.mse_loss(self.model(x_t, t).sample, noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0, foreach=True)
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, self.params, 1.0 - self.decay)
        return loss.detach()


# ---- sampler loops -------------------------------------------------------------------------------------------
def trivial_eps(x, t):
    """The trivial model of the overhead workloads, the same on both sides: `eps = 0.1 x`."""
    return 0.1 * x


def scheduler_loop(kind: str, steps: int, shape, model=None):
    """A diffusers DDPM (1000 steps) or DDIM (`steps`, eta = 0) loop; returns a callable running it once."""
    from diffusers import DDIMScheduler, DDPMScheduler

    cls = DDPMScheduler if kind == "ddpm" else DDIMScheduler
    scheduler = cls(num_train_timesteps=1000, clip_sample=False)
    scheduler.set_timesteps(steps)
    eps_fn = trivial_eps if model is None else (lambda x, t: model(x, t).sample)

    @torch.inference_mode()
    def run():
        x = torch.randn(shape)
        for t in scheduler.timesteps:
            x = scheduler.step(eps_fn(x, t), t, x).prev_sample
        return x

    return run


def k_diffusion_loop(name: str, steps: int, shape, sigma_min=0.002, sigma_max=80.0):
    """k-diffusion's `sample_euler`, `sample_heun` or `sample_dpmpp_2m` on Karras' sigma grid with a trivial
    denoiser `D(x, sigma) = x / (1 + sigma^2)` (the exact denoiser of N(0, I) data)."""
    sampling = import_k_diffusion_sampling()
    fn = {"euler": sampling.sample_euler, "heun": sampling.sample_heun, "dpmpp_2m": sampling.sample_dpmpp_2m}[name]
    sigmas = sampling.get_sigmas_karras(steps, sigma_min, sigma_max)

    def denoiser(x, sigma):
        return x / (1.0 + sigma[:, None, None, None] ** 2)

    @torch.inference_mode()
    def run():
        return fn(denoiser, torch.randn(shape) * sigma_max, sigmas, disable=True)

    return run


# ---- the worker ----------------------------------------------------------------------------------------------
_CACHE: dict = {}


def _workload(request: dict):
    """The callable named by `request` (built once per distinct request and kept, as a compiled JAX program
    is), and what it reports besides time."""
    key = json.dumps(request, sort_keys=True)
    if key in _CACHE:
        return _CACHE[key]
    kind = request["kind"]
    info = {}
    if kind == "train_step":
        step = TrainStep(request["preset"], request["image_size"], request["channels"], request["batch"])
        fn, info = step, {"params": count_params(step.model)}
    elif kind == "unet_params":
        fn, info = (
            (lambda: None),
            {"params": count_params(build_unet(request["preset"], request["image_size"], request["channels"]))},
        )
    elif kind in ("ddpm", "ddim"):
        model = None
        if request.get("preset"):
            model = build_unet(request["preset"], request["shape"][-1], request["shape"][1]).eval()
        fn = scheduler_loop(kind, request["steps"], tuple(request["shape"]), model)
    elif kind == "unet_forward":
        model = build_unet(request["preset"], request["shape"][-1], request["shape"][1]).eval()
        x, t = torch.zeros(request["shape"]), torch.full((request["shape"][0],), 500)

        @torch.inference_mode()
        def fn():
            return model(x, t).sample

    elif kind == "k_diffusion":
        fn = k_diffusion_loop(request["sampler"], request["steps"], tuple(request["shape"]))
    elif kind == "randn":
        shape = tuple(request["shape"])
        fn = lambda: torch.randn(shape)  # noqa: E731
    else:
        raise ValueError(f"unknown peer workload {kind!r}")
    _CACHE[key] = (fn, info)
    return fn, info


def measure(request: dict) -> dict:
    """Times `request["repeats"]` runs after one warm-up run (whose time is `first_s`); seconds per run."""
    start = time.perf_counter()
    fn, info = _workload(request)
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(int(request.get("repeats", 3))):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"times_s": times, "first_s": first, **info}


def versions() -> dict:
    import diffusers

    sampling = import_k_diffusion_sampling()
    from importlib.metadata import version

    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "k_diffusion": version("k-diffusion"),
        "threads": torch.get_num_threads(),
        "k_diffusion_sampling": sampling.__name__,
    }


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
    """Answers one JSON line per request line until stdin closes; errors come back as {"error": ...}."""
    for line in stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            reply = versions() if request.get("kind") == "versions" else measure(request)
        except Exception as e:  # reported to the driver, which decides; the worker keeps serving
            reply = {"error": f"{type(e).__name__}: {e}"}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="answer JSON requests on stdin (used by run.py)")
    parser.add_argument("--check", action="store_true", help="import everything and print the versions")
    args = parser.parse_args()
    if args.check:
        print(json.dumps(versions()))
    elif args.serve:
        serve()
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
