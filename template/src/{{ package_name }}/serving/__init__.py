# Template-owned: `copier update` replaces this file. See GUIDE.md, "Who owns what".
"""The prediction service: ``create_app`` builds it, ``python -m`` runs it."""
