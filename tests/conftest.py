import sys
from pathlib import Path

import torch

# Tiny test models run fastest, and least disturbed by other load, on one thread.
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
