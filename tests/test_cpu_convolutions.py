"""training.cpu_convolutions: the option names a library, changes no numbers, and bad input is one line."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from diffjax import cli
from diffjax.training import cpu_convolutions

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _conv_and_gradients(x, w, dy):
    """A stride-1 and a stride-2 3x3 'SAME' convolution with both gradients (no reductions, no dots)."""
    out = []
    for stride in (1, 2):
        def conv(x, w, stride=stride):
            return lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

        y, vjp = jax.vjp(conv, x, w)
        out += [y, *vjp(dy[stride])]
    return out


def _operands():
    k = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(k[0], (4, 16, 16, 24))
    w = jax.random.normal(k[1], (3, 3, 24, 40)) / np.sqrt(9 * 24)
    dy = {1: jax.random.normal(k[2], (4, 16, 16, 40)), 2: jax.random.normal(k[3], (4, 8, 8, 40))}
    return x, w, dy


def test_options_per_choice_and_platform():
    assert cpu_convolutions.compiler_options("default", "cpu") == {}
    assert cpu_convolutions.compiler_options("eigen", "gpu") == {}
    assert cpu_convolutions.compiler_options("eigen", "tpu") == {}
    assert set(cpu_convolutions.compiler_options("eigen", "cpu")) == {"xla_cpu_experimental_ynn_fusion_type"}


def test_unknown_choice_is_one_line_naming_the_valid_ones():
    with pytest.raises(ValueError) as e:
        cpu_convolutions.compiler_options("onednn", "cpu")
    assert str(e.value) == "config.training.cpu_convolutions: unknown 'onednn'; valid: eigen, default"


def test_supported_answers_an_option_this_jaxlib_refuses():
    assert cpu_convolutions.supported({})
    assert not cpu_convolutions.supported({"xla_cpu_experimental_ynn_fusion_type": "NOT_A_FUSION_TYPE"})


def test_train_step_options_fall_back_to_the_default_when_refused(monkeypatch, caplog):
    refused = {"xla_cpu_experimental_ynn_fusion_type": "NOT_A_FUSION_TYPE"}
    monkeypatch.setattr(cpu_convolutions, "compiler_options", lambda choice: refused)
    with caplog.at_level("WARNING", logger="diffjax"):
        assert cpu_convolutions.train_step_options("eigen") == {}
    assert "keeps XLA's default convolutions" in caplog.text


def test_train_step_options_are_the_compiler_options_when_taken():
    options = cpu_convolutions.compiler_options("eigen")
    assert cpu_convolutions.supported(options)  # this jaxlib (0.10) takes them
    assert cpu_convolutions.train_step_options("eigen") == options


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the option acts on XLA:CPU alone")
def test_eigen_convolutions_leave_ynnpack_and_agree_with_the_default():
    options = cpu_convolutions.compiler_options("eigen", "cpu")
    if not cpu_convolutions.supported(options):
        pytest.skip("this jaxlib does not take the option (the runner then keeps the default)")
    x, w, dy = _operands()
    default = jax.jit(_conv_and_gradients).lower(x, w, dy).compile()
    eigen = jax.jit(_conv_and_gradients, compiler_options=options).lower(x, w, dy).compile()
    if "__ynn_fusion" not in default.as_text():
        pytest.skip("this jaxlib's default does not run convolutions through YNNPACK")
    assert "__ynn_fusion" not in eigen.as_text()
    for a, b in zip(default(x, w, dy), eigen(x, w, dy), strict=True):
        scale = float(jnp.max(jnp.abs(a)))
        # float32 sums of up to 4 * 16 * 16 = 1024 terms in another order
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=2e-5 * scale)


def test_runner_refuses_an_unknown_choice_before_compiling(tmp_path, capsys):
    config = f"{ROOT / 'configs' / 'ddpm.py'}:toy2d,smoke"
    code = cli.main(["train", "--config", config, "--workdir", str(tmp_path / "w"),
                     "--config.training.cpu_convolutions=onednn"])
    err = capsys.readouterr().err
    assert code == 2
    assert "config.training.cpu_convolutions: unknown 'onednn'; valid: eigen, default" in err
    assert not (tmp_path / "w").exists()
