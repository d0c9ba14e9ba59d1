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

`fetch_fastai` (`ulmfit fetch-fastai`) downloads fastai's published archives, checks their sha256 against a lock file
(recording it on the first download) and unpacks them, ready for params `pretrain_import`.
"""

import gzip
import hashlib
import json
import pickle
import re
import shutil
import tarfile
import urllib.request
import zlib
from pathlib import Path

import torch

from .awd_lstm import LanguageModel, transfer_vocab
from .checkpoint import load_weights, save_model
from .config import ModelConfig
from .io import atomic_dir, write_text

# fastai's URLs.WT103_FWD and URLs.WT103_BWD (fastai/data/external.py: URLs.S3_MODEL + the archive's name); fastai
# publishes no checksum of these two, so the first download's sha256 is recorded in a lock file and checked after.
FASTAI_URL = "https://s3.amazonaws.com/fast-ai-modelzoo/"
ARCHIVES = {"fwd": "wt103-fwd.tgz", "bwd": "wt103-bwd.tgz"}

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


def read_fastai(weights, vocab):
    """fastai's language model as (our state dict, its tokens, its ModelConfig), every key and shape checked."""
    sd = load_state_dict(weights)
    itos = load_itos(vocab)
    cfg = infer_config(sd)
    vocab_size = sd["0.encoder.weight"].shape[0]
    if vocab_size != len(itos):
        raise ValueError(f"{weights} has {vocab_size} embedding rows but {vocab} holds {len(itos)} tokens; "
                         "pass the itos file published with these weights")
    return convert(sd, cfg, vocab_size), itos, cfg


def import_fastai(weights, vocab, out_dir, direction="fwd", target_vocab=None):
    """Convert fastai's `weights` (.pth) and `vocab` (itos .pkl) into `out_dir/model.pt`.

    With `target_vocab` the rows are mapped onto that vocabulary (shared tokens keep their rows,
    new ones get the mean embedding and mean decoder bias). Returns a summary of what was written.
    """
    if direction not in ("fwd", "bwd"):
        raise ValueError(f"direction must be fwd or bwd, got {direction!r}")
    state, itos, cfg = read_fastai(weights, vocab)

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


# ---------------------------------------------------------------- fastai's published archives


def archive_url(source, name):
    """The URL of archive `name` in `source`: a folder, or a file://, http:// or https:// URL of one."""
    if "://" not in str(source):
        return Path(source, name).resolve().as_uri()
    return str(source).rstrip("/") + "/" + name


def download(url, path):
    """Copy `url` to the file `path`; returns its sha256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as f:
            while chunk := response.read(2**20):
                digest.update(chunk)
                f.write(chunk)
    except OSError as e:  # urllib's URLError and HTTPError included
        raise OSError(f"cannot download {url} ({getattr(e, 'reason', None) or e}); download it where there is a "
                      "network and pass its folder as --source") from e
    return digest.hexdigest()


def read_lock(lock):
    """{archive name: sha256} of a lock file (lines `<sha256>  <archive>`, as sha256sum writes them); {} if missing."""
    lock, sums = Path(lock), {}
    for n, line in enumerate(lock.read_text().splitlines() if lock.exists() else [], 1):
        parts = line.split()
        if parts and (len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[0])):
            raise ValueError(f"{lock}, line {n}: expected '<sha256>  <archive name>', got {line!r}")
        if parts:
            sums[parts[1]] = parts[0]
    return sums


def unpack(archive, folder, direction, url):
    """The one .pth and the one .pkl of fastai's archive, written to `folder` as lstm_<direction>.pth and
    itos_wt103.pkl (fastai itself loads whichever .pth and .pkl its archive holds); nothing else is extracted."""
    names = {"pth": f"lstm_{direction}.pth", "pkl": "itos_wt103.pkl"}
    try:
        with gzip.open(archive) as whole:  # read to the end, where gzip checks its CRC-32 of everything it holds
            while whole.read(2**24):
                pass
        with tarfile.open(archive, "r:gz") as tar:
            files = [m for m in tar.getmembers() if m.isfile()]
            found = {ext: [m for m in files if m.name.endswith("." + ext)] for ext in names}
            if any(len(members) != 1 for members in found.values()):
                raise ValueError(f"{url} holds {', '.join(m.name for m in files) or 'no files'}; expected one .pth "
                                 "(fastai's weights) and one .pkl (its token list)")
            for ext, name in names.items():
                with tar.extractfile(found[ext][0]) as src, open(folder / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ValueError(f"{url} is not a readable .tgz archive ({e}); nothing was written: fetch it again") from e
    try:
        read_fastai(folder / names["pth"], folder / names["pkl"])
    except ValueError as e:
        raise ValueError(f"{url}: {str(e).replace(str(folder) + '/', '')}") from e


def pretrain_import(out):
    """params `pretrain_import` for the models `fetch_fastai` wrote to `out`."""
    out = Path(out).as_posix()
    return {d: {"weights": f"{out}/{d}/lstm_{d}.pth", "vocab": f"{out}/{d}/itos_wt103.pkl"} for d in ARCHIVES}


def fetch_fastai(out, source=FASTAI_URL, lock="fastai_wt103.sha256"):
    """Download fastai's forward and backward WT103 archives from `source`, check each one's sha256 against `lock`
    (recording it there if the lock lacks it), check that each holds a fastai AWD-LSTM language model and write
    `out`/fwd and `out`/bwd, all or nothing. Returns the names whose sha256 was recorded and params' pretrain_import."""
    known, sums = read_lock(lock), {}
    with atomic_dir(out, "fetch-fastai") as tmp:
        for direction, name in ARCHIVES.items():
            url = archive_url(source, name)
            sums[name] = download(url, tmp / name)
            if known.get(name, sums[name]) != sums[name]:
                raise ValueError(f"{url} has sha256 {sums[name]} but {lock} records {known[name]}: a damaged download "
                                 f"or a changed file; nothing was written. Fetch again; if fastai republished it, "
                                 f"delete its line from {lock}")
            (tmp / direction).mkdir()
            unpack(tmp / name, tmp / direction, direction, url)
            (tmp / name).unlink()
        if set(sums) - set(known):
            write_text(lock, "".join(f"{sha}  {name}\n" for name, sha in {**known, **sums}.items()))
    return {"recorded": sorted(set(sums) - set(known)), "pretrain_import": pretrain_import(out)}
