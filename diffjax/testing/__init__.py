"""Exact oracles for tests and experiments: Gaussian-mixture data with closed-form quantities, and
sample-based distances between point clouds."""

from ._distances import mmd as mmd
from ._distances import sliced_wasserstein as sliced_wasserstein
from ._distances import sliced_wasserstein_null as sliced_wasserstein_null
from ._mixture import GaussianMixture as GaussianMixture
from ._mixture import dirac as dirac
from ._mixture import gaussian_mixture as gaussian_mixture
from ._mixture import standard_normal as standard_normal
