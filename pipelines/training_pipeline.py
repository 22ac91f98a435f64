"""The training pipeline with the default images, for ``kfp dsl compile --py``.

``l1recal kfp compile`` writes the same pipeline (``make pipeline`` refreshes
the golden copy ``l1recal-training.yaml`` next to this file).
"""

from l1recal.kfp.pipeline import build_pipeline

training_pipeline = build_pipeline()
