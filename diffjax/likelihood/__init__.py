"""Likelihoods: the exact PF-ODE log-density (article (六)), bits per dimension with dequantisation, and DDPM's
discrete ELBO (article (二))."""

from ._bits import bits_per_dim as bits_per_dim
from ._elbo import discretized_gaussian_nll as discretized_gaussian_nll
from ._elbo import elbo_bits_per_dim as elbo_bits_per_dim
from ._ode import log_likelihood as log_likelihood
from ._ode import pf_ode_drift as pf_ode_drift
from ._solvers import ADAPTIVE_SOLVERS as ADAPTIVE_SOLVERS
