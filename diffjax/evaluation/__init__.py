"""Sample metrics: distances and exact NLL for toy sets, classifier metrics for digits, FD/FID for images.

    from diffjax.evaluation import toy_metrics, load_digits_classifier, digits_metrics, fid
    toy_metrics(key, samples, ds)                       # sliced_w1, mmd (+ nll, in_support where exact)
    digits_metrics(samples, load_digits_classifier())   # confidence, class_coverage, class_entropy, frechet_distance
    fid(samples, reference, feature_fn=extract)         # any `images -> (n, k)` extractor plugs in
    fid(samples, reference, inception_path="inception_fid.npz")  # FID InceptionV3 (see _inception.py for the file)
"""

from ._digits import DIGITS_CLASSIFIER_VERSION as DIGITS_CLASSIFIER_VERSION
from ._digits import DigitsClassifier as DigitsClassifier
from ._digits import DigitsNet as DigitsNet
from ._digits import default_cache_dir as default_cache_dir
from ._digits import digits_metrics as digits_metrics
from ._digits import load_digits_classifier as load_digits_classifier
from ._digits import train_digits_classifier as train_digits_classifier
from ._frechet import fid as fid
from ._frechet import frechet_distance as frechet_distance
from ._frechet import gaussian_statistics as gaussian_statistics
from ._frechet import inception_feature_fn as inception_feature_fn
from ._inception import InceptionV3 as InceptionV3
from ._inception import convert_pytorch_fid_state_dict as convert_pytorch_fid_state_dict
from ._inception import load_inception_npz as load_inception_npz
from ._inception import save_inception_npz as save_inception_npz
from ._toy import toy_metrics as toy_metrics
