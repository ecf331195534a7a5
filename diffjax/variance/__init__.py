"""Optimal reverse variances, articles (七) and (八): Analytic-DPM tables, the MLE variant and NPR/SN heads.

The reverse kernel keeps the trained mean and widens the variance to `sigma~_t^2 + gamma_t^2 var0_t`, where
`var0_t` is the variance of x_0 given x_t:

* estimate a table once per checkpoint: `table = estimate_x0_variance(key, predictor, process, data, times)`;
* or train a head with `npr_loss` / `sn_loss` and wrap it as `VarianceHead(head_apply, head_params)`;
* then sample with `dj.sampler("ancestral" | "ddim", variance="analytic" | "npr" | "sn")` and the model
  `with_x0_variance(predictor, table_or_head)`.
"""

from ._estimate import ESTIMATORS as ESTIMATORS
from ._estimate import estimate_x0_variance as estimate_x0_variance
from ._heads import HEAD_TARGETS as HEAD_TARGETS
from ._heads import VarianceHeadLoss as VarianceHeadLoss
from ._heads import npr_loss as npr_loss
from ._heads import sn_loss as sn_loss
from ._kernel import ddim_coefficients as ddim_coefficients
from ._kernel import optimal_reverse_variance as optimal_reverse_variance
from ._kernel import x0_variance_bound as x0_variance_bound
from ._source import X0_VARIANCE_RULES as X0_VARIANCE_RULES
from ._source import VarianceHead as VarianceHead
from ._source import VariancePredictor as VariancePredictor
from ._source import VarianceTable as VarianceTable
from ._source import check_x0_variance_source as check_x0_variance_source
from ._source import with_x0_variance as with_x0_variance
