# Template-owned: `copier update` brings its new versions. See GUIDE.md, "Who owns what".
"""The template's MLOps machinery: the data contract, tracking and the registry, the
gates, the monitors and the audit trail. Each ``copier update`` brings their new
versions: an edit made here is merged where the template did not change the same lines,
and is a conflict where it did. The stages that are yours to change sit one level up:
``ingest``, ``features``, ``train`` (the model families), ``evaluate`` (the metrics),
``predict`` and ``routes``; the settings you tune are in ``params.yaml``."""
