"""Conditional generation, article (九): classifier guidance and classifier-free guidance.

Both return a `Predictor`, so they work with every sampler; labels reach the model through `cond`:

    guided = classifier_guidance(predictor, process, classifier_fn, classifier_params, scale=2.0)
    x = dj.sample(key, guided, process, dj.sampler("ddim", steps=50), shape, cond={"y": labels})
    x = dj.sample(key, cfg(conditional, w=1.0, null_label=10), process, sampler, shape, cond={"y": labels})
"""

from ._classifier import CLASSIFIER_INPUTS as CLASSIFIER_INPUTS
from ._classifier import ClassifierGuided as ClassifierGuided
from ._classifier import ClassifierLoss as ClassifierLoss
from ._classifier import classifier_guidance as classifier_guidance
from ._classifier import classifier_loss as classifier_loss
from ._classifier_free import cfg as cfg
from ._classifier_free import drop_labels as drop_labels
