"""Model checkpoints: one `model.pt` per model directory holding the weights, the vocabulary, the
model configuration and (for classifiers) the class names, written atomically."""

from dataclasses import asdict, fields
from pathlib import Path

import torch

from .awd_lstm import Classifier, LanguageModel
from .config import ModelConfig
from .io import CheckpointError, save_torch

FILE = "model.pt"


def save_model(directory, model, vocab, classes=None, meta=None):
    """Write `directory/model.pt` for a LanguageModel or a Classifier."""
    obj = {
        "kind": "classifier" if isinstance(model, Classifier) else "lm",
        "model_config": asdict(model.encoder.cfg),
        "vocab": list(vocab),
        "classes": list(classes) if classes is not None else None,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    if isinstance(model, Classifier):
        obj["bptt"], obj["max_len"] = model.bptt, model.max_len
    save_torch(Path(directory) / FILE, obj)


def read(directory):
    path = Path(directory) / FILE if Path(directory).is_dir() or not str(directory).endswith(".pt") else Path(directory)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; train the model first or pass the directory holding {FILE}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for damaged files
        raise CheckpointError(f"cannot read checkpoint {path} ({e}); it is damaged: retrain or restore it") from e
    if not isinstance(obj, dict) or "state_dict" not in obj or "vocab" not in obj:
        raise CheckpointError(f"{path} is not a ulmfit checkpoint (no state_dict/vocab); use `ulmfit import-fastai` for fastai files")
    needed = ["kind", "model_config", "meta"] + (["classes", "bptt", "max_len"] if obj.get("kind") == "classifier" else [])
    missing = [k for k in needed if k not in obj]
    if missing or obj["kind"] not in ("lm", "classifier") or not isinstance(obj["model_config"], dict):
        raise CheckpointError(f"{path} is damaged: it lacks {', '.join(missing) or 'a valid kind or model_config'}; "
                              "train the model again or restore the file")
    obj["path"] = str(path)
    return obj


def model_config(obj):
    known = {f.name for f in fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in obj["model_config"].items() if k in known})


def load_weights(model, state_dict, source, prefix=""):
    """load_state_dict with a message that names the mismatching tensors."""
    own = model.state_dict()
    wanted = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
    missing = [k for k in own if k.startswith(prefix) and k not in wanted]
    unexpected = [k for k in wanted if k not in own]
    shapes = [f"{k} {tuple(wanted[k].shape)} vs {tuple(own[k].shape)}" for k in wanted
              if k in own and wanted[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        problems = "; ".join(filter(None, [
            missing and f"missing {', '.join(missing[:5])}",
            unexpected and f"unexpected {', '.join(unexpected[:5])}",
            shapes and f"shape mismatch {', '.join(shapes[:5])} (checkpoint vs model)",
        ]))
        raise CheckpointError(f"checkpoint {source} does not fit the model being built: {problems}; "
                              "use a checkpoint trained with the same model sizes and vocabulary")
    model.load_state_dict(wanted, strict=not prefix)


def load_model(directory, device="cpu"):
    """(model, checkpoint dict) for a saved LanguageModel or Classifier, in eval mode."""
    obj = read(directory)
    cfg = model_config(obj)
    if obj["kind"] == "classifier":
        model = Classifier(len(obj["vocab"]), len(obj["classes"]), cfg, obj["bptt"], obj["max_len"])
    else:
        model = LanguageModel(len(obj["vocab"]), cfg)
    load_weights(model, obj["state_dict"], obj["path"])
    return model.to(device).eval(), obj


def check_vocab(obj, vocab):
    """The checkpoint's vocabulary must be exactly `vocab` (same tokens, same ids)."""
    theirs = obj["vocab"]
    if list(theirs) != list(vocab):
        diff = next((i for i, (a, b) in enumerate(zip(theirs, vocab)) if a != b), min(len(theirs), len(vocab)))
        raise CheckpointError(
            f"checkpoint {obj['path']} has a vocabulary of {len(theirs)} tokens that differs from the data's "
            f"({len(vocab)} tokens; first difference at id {diff}); fine-tune the language model on this "
            "dataset's vocabulary first (finetune-lm maps a pretrained vocabulary onto it)"
        )
