import sys
from pathlib import Path

import pytest
import torch

# Tiny test models run fastest, and least disturbed by other load, on one thread.
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))


@pytest.fixture
def hf_offline(tmp_path, monkeypatch):
    """`datasets` in offline mode with an empty cache, as on a compute node run with HF_HUB_OFFLINE=1 where nothing
    was downloaded (the variable itself is read once, when `datasets` is imported); returns the cache folder."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return tmp_path / "hf-cache"
