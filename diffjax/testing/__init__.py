"""Exact oracles for tests and experiments: Gaussian-mixture data with closed-form quantities, small discrete
joints with exact conditionals, and sample-based distances between point clouds."""

from ._discrete import DiscreteJoint as DiscreteJoint
from ._discrete import discrete_joint as discrete_joint
from ._discrete import product_joint as product_joint
from ._discrete import random_joint as random_joint
from ._distances import mmd as mmd
from ._distances import sliced_wasserstein as sliced_wasserstein
from ._distances import sliced_wasserstein_null as sliced_wasserstein_null
from ._mixture import GaussianMixture as GaussianMixture
from ._mixture import dirac as dirac
from ._mixture import gaussian_mixture as gaussian_mixture
from ._mixture import standard_normal as standard_normal
