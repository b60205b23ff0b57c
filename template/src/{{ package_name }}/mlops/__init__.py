# Template-owned: `copier update` replaces this file. See GUIDE.md, "Who owns what".
"""The template's MLOps machinery: the data contract, tracking and the registry, the
gates, the monitors and the audit trail. ``copier update`` replaces these modules whole,
so a change made here is lost to the next update (it reports the clash). The stages
that are yours to change sit one level up: ``ingest``, ``features``, ``train`` (the
model families), ``evaluate`` (the metrics) and ``predict``; the settings you tune are
in ``params.yaml``."""
