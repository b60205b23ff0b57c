# Template-owned: `copier update` brings its new versions. See GUIDE.md, "Who owns what".
"""The prediction service: ``create_app`` builds it, ``python -m`` runs it."""
