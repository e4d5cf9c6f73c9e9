"""Evaluation of depth models against metric ground truth (``localdepth eval``).

* :mod:`.metrics`: AbsRel, SqRel, RMSE, RMSE-log, log10, SILog, δ1-3; crops; aggregation.
* :mod:`.datasets`: folder/manifest, NYU Depth v2 (.mat), KITTI Eigen split files, DIODE.
* :mod:`.evaluate`: predict -> align -> clamp -> score, Markdown/JSON reports, error maps.
"""

from .datasets import Dataset, Sample, open_dataset
from .evaluate import ALIGNMENTS, EvalSettings, Predictor, estimator_predictor, evaluate, oracle, to_markdown
from .metrics import CROPS, METRICS, compute_metrics, crop_mask, valid_mask

__all__ = ["ALIGNMENTS", "CROPS", "METRICS", "Dataset", "EvalSettings", "Predictor", "Sample", "compute_metrics",
           "crop_mask", "estimator_predictor", "evaluate", "open_dataset", "oracle", "to_markdown", "valid_mask"]
