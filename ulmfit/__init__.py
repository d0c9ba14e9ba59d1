"""ULMFiT (Howard & Ruder, ACL 2018): `from ulmfit import load_classifier, load_language_model` (see api.py).

The API is imported on first use, so that `import ulmfit.<module>` stays as light as that module."""

API = ("load_classifier", "load_language_model", "TextClassifier", "TextLanguageModel")


def __getattr__(name):
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'ulmfit' has no attribute {name!r}")
