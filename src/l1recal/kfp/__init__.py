"""Kubeflow Pipelines v2 glue: container components, the training pipeline, its CLI.

Every component runs an ``l1recal`` sub-command in a container, the same
command that ``dvc repro`` runs locally. ``l1recal.kfp.components`` defines
them, ``l1recal.kfp.pipeline`` wires them into the training pipeline, and
``l1recal.kfp.local_run`` executes a compiled pipeline's container commands on
this machine.
"""
