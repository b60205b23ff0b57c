# Template-owned: `copier update` brings its new versions. See GUIDE.md, "Who owns what".
"""The training pipeline on Kubeflow Pipelines: the stages dvc.yaml runs, as KFP components.

``dvc.yaml`` stays the pipeline's truth on one machine; this package runs the same stage
modules on a pipeline engine. ``workspace`` runs one stage in a scratch copy of the project
that holds only the stage's inputs, ``components`` wraps each stage as a lightweight
component of the project's image, ``pipeline`` joins them into the DAG, and ``__main__`` is
``make kfp-compile``, ``make kfp-run-local`` and ``make kfp-submit``.
"""
