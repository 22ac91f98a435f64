"""The pipeline's container components, one per stage (defined in ``l1recal.kfp.components``).

Import from here to reuse a stage in another pipeline::

    from components.l1recal_components import train_falkon
"""

from l1recal.kfp.components import (
    DEFAULT_IMAGES,
    ImageSet,
    approval_flag,
    approve,
    evaluate,
    fetch_data,
    hls_csim,
    hls_synth,
    ingest,
    jet_ingest,
    make_params,
    package,
    preprocess,
    register_data,
    roll_out,
    train_falkon,
    train_network,
    validate,
)

__all__ = [
    "DEFAULT_IMAGES",
    "ImageSet",
    "approval_flag",
    "approve",
    "evaluate",
    "fetch_data",
    "hls_csim",
    "hls_synth",
    "ingest",
    "jet_ingest",
    "make_params",
    "package",
    "preprocess",
    "register_data",
    "roll_out",
    "train_falkon",
    "train_network",
    "validate",
]
