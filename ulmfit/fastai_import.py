"""Convert fastai's published AWD-LSTM language model (WT103, `lstm_fwd.pth` + `itos_wt103.pkl`)
into a ulmfit checkpoint that `finetune-lm --pretrained` can start from.

fastai's model is SequentialRNN(AWD_LSTM, LinearDecoder), so its state dict keys are:

    0.encoder.weight                   embedding [vocab, emb]
    0.encoder_dp.emb.weight            the same embedding again (EmbeddingDropout wraps it)
    0.rnns.{i}.weight_hh_l0_raw        hidden-to-hidden matrix of LSTM layer i (the real weight)
    0.rnns.{i}.module.weight_ih_l0     input-to-hidden matrix
    0.rnns.{i}.module.weight_hh_l0     a weight-dropped copy of the raw matrix (older files; ignored)
    0.rnns.{i}.module.bias_ih_l0, 0.rnns.{i}.module.bias_hh_l0
    1.decoder.weight                   tied to the embedding
    1.decoder.bias

Both use PyTorch's LSTM gate order (i, f, g, o), so the tensors are copied unchanged.
"""

import json
import pickle
import re
from pathlib import Path

import torch

from .awd_lstm import LanguageModel, transfer_vocab
from .checkpoint import load_weights, save_model
from .config import ModelConfig

# Per-layer tensors: fastai's key suffix -> ours (under encoder.rnns.{i}.).
LAYER_KEYS = {
    "weight_hh_l0_raw": "weight_hh_l0_raw",
    "module.weight_ih_l0": "lstm.weight_ih_l0",
    "module.bias_ih_l0": "lstm.bias_ih_l0",
    "module.bias_hh_l0": "lstm.bias_hh_l0",
}
IGNORED_LAYER_KEY = "module.weight_hh_l0"  # the dropped copy of weight_hh_l0_raw
EMBEDDING_COPIES = ("0.encoder_dp.emb.weight", "1.decoder.weight")  # must equal 0.encoder.weight


def load_state_dict(weights):
    """fastai's state dict from a .pth file: either the dict itself or {"model": ..., "opt": ...}."""
    obj = torch.load(weights, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{weights} is not a fastai state dict (expected a dict of tensors, "
                         "or one under the key 'model'); pass fastai's lstm_fwd.pth / lstm_bwd.pth")
    return obj


def load_itos(vocab):
    """fastai's vocabulary: a pickled list of tokens, id i = itos[i]."""
    with open(vocab, "rb") as f:
        itos = pickle.load(f)
    if not isinstance(itos, (list, tuple)) or not all(isinstance(t, str) for t in itos):
        raise ValueError(f"{vocab} does not hold a pickled list of tokens (fastai's itos_wt103.pkl)")
    return list(itos)


def load_target_vocab(target):
    """A token list, or a path to a JSON list (a prepared dataset's vocab.json, or its directory)."""
    if isinstance(target, (str, Path)):
        path = Path(target) / "vocab.json" if Path(target).is_dir() else Path(target)
        with open(path) as f:
            target = json.load(f)
    if not isinstance(target, (list, tuple)) or not all(isinstance(t, str) for t in target):
        raise ValueError("the target vocabulary must be a JSON list of tokens (a prepared dataset's vocab.json)")
    return list(target)


def infer_config(sd):
    """ModelConfig with the file's sizes and the paper's dropouts; the layer count comes from the keys."""
    if "0.encoder.weight" not in sd:
        raise ValueError("missing key 0.encoder.weight: not a fastai AWD-LSTM language model")
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"0\.rnns\.(\d+)\.", k))}
    n_layers = len(layers)
    if n_layers == 0 or layers != set(range(n_layers)):
        raise ValueError(f"expected LSTM layers 0.rnns.0 ... 0.rnns.N-1, found layer indices {sorted(layers)}")
    emb_size = sd["0.encoder.weight"].shape[1]
    hidden_size = ModelConfig.hidden_size  # a 1-layer model has no hidden size: keep the default
    if n_layers > 1:
        if "0.rnns.0.weight_hh_l0_raw" not in sd:
            raise ValueError("missing key 0.rnns.0.weight_hh_l0_raw (the first LSTM layer's hidden-to-hidden matrix)")
        hidden_size = sd["0.rnns.0.weight_hh_l0_raw"].shape[1]  # 1152 in current files, 1150 in older ones
    return ModelConfig(emb_size=emb_size, hidden_size=hidden_size, n_layers=n_layers)


def expected_shapes(cfg, vocab_size):
    """Every fastai key this architecture has, with its shape."""
    shapes = {"0.encoder.weight": (vocab_size, cfg.emb_size), "1.decoder.bias": (vocab_size,)}
    for key in EMBEDDING_COPIES:
        shapes[key] = (vocab_size, cfg.emb_size)
    sizes = [cfg.emb_size] + [cfg.hidden_size] * (cfg.n_layers - 1) + [cfg.emb_size]
    for i in range(cfg.n_layers):
        n_in, n_out = sizes[i], sizes[i + 1]
        p = f"0.rnns.{i}."
        shapes[p + "weight_hh_l0_raw"] = shapes[p + IGNORED_LAYER_KEY] = (4 * n_out, n_out)
        shapes[p + "module.weight_ih_l0"] = (4 * n_out, n_in)
        shapes[p + "module.bias_ih_l0"] = shapes[p + "module.bias_hh_l0"] = (4 * n_out,)
    return shapes


def convert(sd, cfg, vocab_size):
    """Check fastai's keys and shapes, and return the state dict under our key names."""
    shapes = expected_shapes(cfg, vocab_size)
    optional = set(EMBEDDING_COPIES) | {f"0.rnns.{i}.{IGNORED_LAYER_KEY}" for i in range(cfg.n_layers)}
    missing = [k for k in shapes if k not in sd and k not in optional]
    unexpected = [k for k in sd if k not in shapes]
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {shapes[k]})" for k in sd
             if k in shapes and tuple(sd[k].shape) != shapes[k]]
    if missing or unexpected or wrong:
        problems = "; ".join(filter(None, [
            missing and f"missing keys {', '.join(missing)}",
            unexpected and f"unexpected keys {', '.join(unexpected)}",
            wrong and f"wrong shapes {', '.join(wrong)}",
        ]))
        raise ValueError(f"not a fastai AWD-LSTM language model with vocab {vocab_size}, emb {cfg.emb_size}, "
                         f"hidden {cfg.hidden_size}, {cfg.n_layers} layers: {problems}")
    for key in EMBEDDING_COPIES:  # our model ties the decoder to the embedding, as fastai does
        if key in sd and not torch.equal(sd[key], sd["0.encoder.weight"]):
            raise ValueError(f"{key} differs from 0.encoder.weight; only tied language models can be imported")

    emb = sd["0.encoder.weight"].float()
    ours = {"encoder.embedding.weight": emb, "decoder.weight": emb, "decoder.bias": sd["1.decoder.bias"].float()}
    for i in range(cfg.n_layers):
        for theirs, mine in LAYER_KEYS.items():
            ours[f"encoder.rnns.{i}.{mine}"] = sd[f"0.rnns.{i}.{theirs}"].float()
    return ours


def import_fastai(weights, vocab, out_dir, direction="fwd", target_vocab=None):
    """Convert fastai's `weights` (.pth) and `vocab` (itos .pkl) into `out_dir/model.pt`.

    With `target_vocab` the rows are mapped onto that vocabulary (shared tokens keep their rows,
    new ones get the mean embedding and mean decoder bias). Returns a summary of what was written.
    """
    if direction not in ("fwd", "bwd"):
        raise ValueError(f"direction must be fwd or bwd, got {direction!r}")
    sd = load_state_dict(weights)
    itos = load_itos(vocab)
    cfg = infer_config(sd)
    vocab_size = sd["0.encoder.weight"].shape[0]
    if vocab_size != len(itos):
        raise ValueError(f"{weights} has {vocab_size} embedding rows but {vocab} holds {len(itos)} tokens; "
                         "pass the itos file published with these weights")
    state = convert(sd, cfg, vocab_size)

    out_vocab, shared = itos, len(itos)
    if target_vocab is not None:
        out_vocab = load_target_vocab(target_vocab)
        state = transfer_vocab(state, itos, out_vocab)
        shared = len(set(out_vocab) & set(itos))

    model = LanguageModel(len(out_vocab), cfg)
    load_weights(model, state, str(weights))
    save_model(out_dir, model, out_vocab, meta={"direction": direction, "source": "fastai", "weights": str(weights)})
    return {"out": str(Path(out_dir) / "model.pt"), "direction": direction, "source_vocab_size": len(itos),
            "vocab_size": len(out_vocab), "shared_tokens": shared, "emb_size": cfg.emb_size,
            "hidden_size": cfg.hidden_size, "n_layers": cfg.n_layers}
