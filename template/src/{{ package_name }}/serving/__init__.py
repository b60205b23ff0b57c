"""The prediction service: ``create_app`` builds it, ``python -m`` runs it."""
