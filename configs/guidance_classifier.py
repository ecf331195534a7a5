"""Classifier guidance, article (九): an unconditional DDPM (eps, linear schedule, 1000 steps) and a noise-conditional
classifier log p(y | x_t, t) trained after it (in W/classifier, with the model untouched). Sampling follows Su's first
form, the mean shift x_{t-1} = mu(x_t) + gamma sigma_t^2 grad log p(y | x_t) + sigma_t z (ancestral); every other
sampler takes the eps-form eps - gamma sigma_t grad log p(y | x_t) (e.g. --config.sampler.name=ddim
--config.sampler.steps=50 --config.sampler.guidance=None). gamma = guidance.classifier_scale; 1 is Bayes' rule.
Samples are drawn for round-robin labels and scored by class_accuracy.

    diffjax train --config configs/guidance_classifier.py:digits --workdir runs/guidance_classifier_digits
    diffjax train --config configs/guidance_classifier.py:toy2d,smoke --workdir /tmp/guidance_classifier_smoke
"""

from configs.base import get_config as base_config
from configs.base import with_scale


def get_config(arg: str = "digits"):
    c = base_config()
    c.formulation = "guidance_classifier"
    c.process.update(name="ddpm", num_steps=1000, schedule="linear")
    c.prediction = "eps"
    c.objective.update(name="eps_mse")
    c.guidance.update(classifier_scale=1.0, classifier_input="x_t")
    c.sampler.update(name="ancestral", guidance="mean")
    c = with_scale(c, arg)
    # The classifier trains for a quarter of the model's steps (it is a small MLP and a simpler task).
    c.classifier.num_steps = max(c.training.num_steps // 4, 1) if c.training.num_steps > 2 else c.training.num_steps
    return c
