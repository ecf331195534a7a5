"""What the article experiments share: the command line, the sample-law noise floor and the report files.

Every script writes three files into `--out`: `<name>.png` (the figure), `<name>.md` (the article's claim, the
exact command, what was measured and a table) and `<name>.json` (the raw numbers). `--quick` shrinks a run to a
smoke test of a few seconds whose numbers still show the claim, if noisily.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import sys
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffjax.testing import gaussian_mixture, sliced_wasserstein, sliced_wasserstein_null  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
PROJECTIONS = 128  # sliced-W1 directions; the noise floor is measured with the same number
METRIC_KEY = 7  # the projection directions, shared by every distance and its null


def three_component_mixture():
    """The 2-D mixture of the sampler tests and `demo_mixture.py`: three anisotropic, well separated components."""
    return gaussian_mixture(
        weights=[0.2, 0.3, 0.5],
        means=[[-2.0, -1.0], [0.0, 2.0], [2.0, -0.5]],
        stds=[[0.3, 0.6], [0.5, 0.25], [0.4, 0.4]],
    )


def parse_args(doc: str) -> argparse.Namespace:
    """`--out DIR` (default experiments/results) and `--quick` (a smoke-test-sized run)."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help="where the figure, table and JSON go")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test of a few seconds")
    return parser.parse_args()


def command_line() -> str:
    """The command that ran this script, as typed from the repository root."""
    script = pathlib.Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(RESULTS.parent.parent)
    except ValueError:
        pass
    return " ".join([".venv/bin/python", str(script), *sys.argv[1:]])


def sliced_w1(x, reference) -> float:
    """Sliced Wasserstein-1 between a sample and a reference draw of the target law (fixed directions)."""
    return float(sliced_wasserstein(jax.random.key(METRIC_KEY), x, reference, PROJECTIONS))


def noise_floor(law, reference, num_draws: int = 8) -> dict:
    """The sliced-W1 of fresh draws of `law` (as many points as `reference`) to `reference`: mean, std, threshold.

    A sampler that is exact in law lands near `mean` and below `threshold = mean + 4 std` with high probability;
    anything above the threshold is a measurable error of the sampler, not sampling noise.
    """
    n = reference.shape[0]
    draw = jax.jit(lambda key: law.sample(key, n))
    threshold, null = sliced_wasserstein_null(
        jax.random.key(METRIC_KEY), draw, reference, num_draws=num_draws, num_projections=PROJECTIONS
    )
    return {"mean": float(null.mean()), "std": float(null.std()), "threshold": threshold, "draws": null.tolist()}


def digit_grid(x: np.ndarray, side: int = 10) -> np.ndarray:
    """The first `side**2` 8x8 images in [-1, 1] tiled with one-pixel gaps, values in [0, 1]."""
    x = (np.clip(x[: side * side, ..., 0], -1, 1) + 1) / 2
    grid = np.ones((side * 9 - 1, side * 9 - 1))
    for i, image in enumerate(x):
        r, c = divmod(i, side)
        grid[r * 9 : r * 9 + 8, c * 9 : c * 9 + 8] = image
    return grid


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; floats are written with 4 significant digits."""

    def cell(value):
        if isinstance(value, float):
            if value == 0 or not math.isfinite(value):
                return f"{value:g}"
            return f"{value:.3e}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class Report:
    """Collects an experiment's results and writes `<name>.md`, `<name>.json` and `<name>.png` into `out`."""

    def __init__(self, name: str, title: str, claim: str, out: pathlib.Path, quick: bool):
        self.name, self.title, self.claim, self.out, self.quick = name, title, claim, out, quick
        self.sections: list[str] = []
        self.start = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)

    def add(self, text: str) -> None:
        """Appends a markdown paragraph or table."""
        self.sections.append(text.strip())

    def save_figure(self, fig) -> pathlib.Path:
        path = self.out / f"{self.name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return path

    def write(self, data: dict, verdicts: dict[str, bool]) -> None:
        """Writes the table and the JSON; `verdicts` are the claim's checks, each stated and marked held or not."""
        seconds = time.perf_counter() - self.start
        size = "quick smoke-test sizes (noisy)" if self.quick else "full size"
        lines = [
            f"# {self.title}",
            "",
            "```",
            command_line(),
            "```",
            "",
            f"**Claim.** {self.claim}",
            "",
            f"Run: {size}, {seconds:.0f} s on {platform.machine()} ({jax.default_backend()}, jax {jax.__version__}).",
            "",
            *[section + "\n" for section in self.sections],
            "**Checks of the claim** in this run (`tests/test_experiments.py` asserts those of the quick run):",
            "",
            *[f"- {'held' if held else 'FAILED'}: {check}" for check, held in verdicts.items()],
            "",
        ]
        (self.out / f"{self.name}.md").write_text("\n".join(lines))
        record = {
            "experiment": self.name,
            "command": command_line(),
            "quick": self.quick,
            "seconds": seconds,
            "claims": {check: bool(held) for check, held in verdicts.items()},
            **data,
        }
        (self.out / f"{self.name}.json").write_text(_dumps(_plain(record)) + "\n")
        print(f"wrote {self.out / self.name}.{{md,json,png}} in {seconds:.1f} s")
        for check, held in verdicts.items():
            print(f"  {'held' if held else 'FAILED'}: {check}")


def _plain(value):
    """JSON-ready copies of NumPy and JAX scalars and arrays, floats to 7 significant digits (float32's)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray | jax.Array):
        return _plain(np.asarray(value).tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.7g}")
    return value


def _dumps(value, indent: int = 0) -> str:
    """JSON with dicts indented and lists of numbers kept on one line (the per-point arrays stay compact)."""
    pad = "  " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{pad}{json.dumps(k)}: {_dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        items = [f"{pad}{_dumps(v, indent + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(value)
