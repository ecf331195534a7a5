"""Which library runs the train step's convolutions on a CPU host: XLA's own (Eigen) or its default (YNNPACK).

XLA:CPU in jaxlib 0.10 hands every convolution to YNNPACK. On the 2-core AVX-512 machine of bench/README.md,
Eigen's convolutions, which XLA:CPU uses when YNNPACK is told to leave convolutions alone, ran the digits
U-Net's train step 1.4x faster on one CPU device (233 against 165 img/s at batch 128) and the CIFAR-10 U-Net's
1.1-1.2x faster; split over two CPU devices (`host_devices`) the two libraries were level. Alone, a 3x3
convolution of 256 channels at 32x32 (batch 8) ran its weight gradient at 186 GFLOP/s with Eigen against 148
with YNNPACK, and its forward pass and input gradient at 190 against 175-180.

The choice is a compile option of the train step (`jax.jit(..., compiler_options=...)`), not an `XLA_FLAGS`
entry, so it acts on that program alone and a jaxlib that no longer knows the option is answered by
`supported` instead of a crash at start-up (`train_step_options` then keeps the default). Accelerator backends
ignore it.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
from jax import lax

log = logging.getLogger("diffjax")

CHOICES = ("eigen", "default")
# jaxlib 0.10's default YNNPACK fusion types (individual dots, individual convolutions, reductions) less the
# convolutions: XLA:CPU then emits those itself, through Eigen.
_YNN_TYPES_WITHOUT_CONVOLUTIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"


def check_choice(choice: str) -> None:
    """Raises ValueError, in one line naming the valid choices, for an unknown `choice`."""
    if choice not in CHOICES:
        raise ValueError(f"config.training.cpu_convolutions: unknown {choice!r}; valid: {', '.join(CHOICES)}")


def compiler_options(choice: str, platform: str | None = None) -> dict[str, str]:
    """The `compiler_options` of `jax.jit` that put a CPU program's convolutions on `choice`'s library.

    Args:
        choice: `"eigen"` (XLA's own convolutions) or `"default"` (XLA:CPU's default library: YNNPACK).
        platform: the backend the program compiles for (None: `jax.default_backend()`); anything but `"cpu"`
            gets no options.
    """
    check_choice(choice)
    platform = jax.default_backend() if platform is None else platform
    if platform != "cpu" or choice == "default":
        return {}
    return {"xla_cpu_experimental_ynn_fusion_type": _YNN_TYPES_WITHOUT_CONVOLUTIONS}


def supported(options: dict[str, str]) -> bool:
    """Whether this jaxlib compiles a small convolution with `options` (an unknown option or value is an error
    of the compiler, raised only when a program compiles)."""
    if not options:
        return True
    x = jax.ShapeDtypeStruct((1, 4, 4, 1), jnp.float32)
    w = jax.ShapeDtypeStruct((3, 3, 1, 1), jnp.float32)

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    try:
        jax.jit(conv, compiler_options=options).lower(x, w).compile()
    except jax.errors.JaxRuntimeError:
        return False
    return True


def train_step_options(choice: str) -> dict[str, str]:
    """`compiler_options(choice)` for the train step, or `{}` (XLA's default, with a logged warning) when this
    jaxlib refuses them; the runner and the bench compile their train steps with it."""
    options = compiler_options(choice)
    if supported(options):
        return options
    log.warning("this jaxlib does not take %s; the train step keeps XLA's default convolutions", options)
    return {}
