"""Plain configuration values for the model and the three kinds of training.

Every knob is a dataclass field with the paper's value (or fastai's, where the paper is silent)
as its default. `from_dict` builds a config from a params.yaml section and rejects unknown keys
and impossible values with a message that names the key and the fix.
"""

import re
from dataclasses import asdict, dataclass, fields, replace

PRECISIONS = ("auto", "fp32", "bf16")  # auto: bf16 where the device runs it natively (ulmfit/precision.py)


class ConfigError(ValueError):
    """A params value or key is wrong; the message names it and says how to fix it."""


@dataclass(frozen=True)
class ModelConfig:
    """AWD-LSTM sizes and dropouts. Defaults are the paper's (section 4.1)."""

    emb_size: int = 400
    hidden_size: int = 1150
    n_layers: int = 3
    output_p: float = 0.4  # dropout on the last LSTM layer's output ("layers")
    hidden_p: float = 0.3  # variational dropout between LSTM layers ("RNN layers")
    input_p: float = 0.4  # variational dropout on the embedding output ("input embedding layer")
    embed_p: float = 0.05  # embedding dropout: whole words dropped
    weight_p: float = 0.5  # DropConnect on every hidden-to-hidden matrix
    head_hidden: int = 50  # classifier: hidden units of the first linear block
    head_p: float = 0.1  # classifier: dropout before the last linear block


PAPER_MODEL = ModelConfig()
VANILLA_MODEL = ModelConfig(output_p=0.0, hidden_p=0.0, input_p=0.0, embed_p=0.0, weight_p=0.0)


@dataclass(frozen=True)
class LMConfig:
    """Language-model training: general-domain pretraining and target-task fine-tuning."""

    epochs: int = 1
    batch_size: int = 64
    bptt: int = 70
    variable_bptt: bool = True  # AWD-LSTM: N(bptt, 5), bptt/2 with p=0.05, lr scaled by length
    optimizer: str = "adam"  # "adam" (beta1 0.7, beta2 0.99) or "asgd" (NT-ASGD)
    lr: float = 0.004  # the top layer group's peak rate
    schedule: str = "stlr"  # "stlr", "constant" or "cos"
    cut_frac: float = 0.1
    ratio: float = 32.0
    discr: float = 2.6  # discriminative factor between layer groups; 1.0 = uniform
    beta1: float = 0.7
    beta2: float = 0.99
    weight_decay: float = 0.01
    clip: float = 0.25  # max gradient norm; 0 = off
    drop_mult: float = 1.0  # scales every dropout of the model (fastai's knob; 1 = the model's own)
    alpha: float = 2.0  # AR
    beta: float = 1.0  # TAR
    nonmono: int = 5  # NT-ASGD: evaluations without improvement before averaging starts
    eval_every: int = 0  # steps between validations (0 = once per epoch)
    max_tokens: int = 0  # train on at most this many tokens of the corpus (0 = all)
    max_valid_tokens: int = 0  # validate on at most this many tokens (0 = all)
    precision: str = "auto"
    ckpt_every: int = 200  # steps between resumable checkpoints


@dataclass(frozen=True)
class ClfConfig:
    """Classifier fine-tuning. Defaults are the paper's ULMFiT recipe (freez + discr + stlr)."""

    epochs: int = 50
    batch_size: int = 64
    lr: float = 0.01
    body_lr: float = 0.0  # if > 0, every group below the head uses this rate (chain-thaw)
    schedule: str = "stlr"
    cut_frac: float = 0.1
    ratio: float = 32.0
    discr: float = 2.6
    unfreeze: str = "gradual"  # "gradual", "last", "full" or "chain_thaw"
    beta1: float = 0.7
    beta2: float = 0.99
    weight_decay: float = 0.01
    clip: float = 0.25
    drop_mult: float = 1.0  # scales every dropout of the model, head included
    bptt: int = 70  # BPT3C chunk length
    max_len: int = 1400  # BPT3C: gradients and pooling cover the last max_len tokens
    min_steps: int = 0  # add epochs until there are at least this many updates (small label budgets)
    early_stop: bool = False  # keep the epoch with the best selection-split error (about 10 checks per run)
    patience: int = 0  # stop after this many checks without improvement (0 = never)
    precision: str = "auto"
    ckpt_every: int = 200  # steps between resumable checkpoints


CHOICES = {
    "optimizer": ("adam", "asgd"),
    "schedule": ("stlr", "constant", "cos"),
    "unfreeze": ("gradual", "last", "full", "chain_thaw"),
    "precision": PRECISIONS,
}
POSITIVE = {  # must be > 0
    "emb_size", "hidden_size", "n_layers", "head_hidden", "epochs", "batch_size", "bptt", "lr",
    "ratio", "discr", "max_len", "nonmono", "ckpt_every", "beta1", "beta2",
}
PROBABILITIES = {"output_p", "hidden_p", "input_p", "embed_p", "weight_p", "head_p", "cut_frac"}


PREPARE_OPTIONS = {  # prepare's options (params `data` and `<dataset>.prepare`, or --set): type, test, what it must be
    "valid_frac": ((int, float), lambda v: 0 < v < 1, "a fraction between 0 and 1 (exclusive), e.g. 0.1"),
    "split_seed": (int, lambda v: v >= 0, "a whole number >= 0"),
    "max_vocab": (int, lambda v: v > 9, "a whole number above 9 (the special tokens), e.g. 60000"),
    "min_freq": (int, lambda v: v >= 1, "a whole number >= 1"),
    "workers": (int, lambda v: v >= 1, "a whole number >= 1"),
    "max_train": (int, lambda v: v >= 0, "a whole number >= 0 (0 = no cap)"),
    "max_valid": (int, lambda v: v >= 0, "a whole number >= 0 (0 = no cap)"),
    "max_test": (int, lambda v: v >= 0, "a whole number >= 0 (0 = no cap)"),
    "max_unlabelled": (int, lambda v: v >= 0, "a whole number >= 0 (0 = no cap)"),
    "max_words": (int, lambda v: v >= 0, "a whole number >= 0 (0 = no cap)"),
    "repartition_test": ((int, float), lambda v: 0 <= v < 1, "a fraction in [0, 1) (0 = keep the official test split)"),
    "file": (str, bool, "the path of your dataset's .csv or .parquet file"),
    "text_column": (str, bool, "the name of the file's text column"),
    "label_column": (str, bool, "the name of the file's label column"),
    "test_file": (str, bool, "the path of your dataset's test .csv or .parquet file"),
}


def read_yaml(path):
    """A params file's contents; invalid YAML or a key given twice in one mapping is a ConfigError naming the file and
    the line (YAML itself would keep the last of two keys in silence)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
            for (key_node, _), key in zip(node.value, keys):
                if keys.count(key) > 1:
                    raise ConfigError(f"{path}: key {key!r} is given twice (line {key_node.start_mark.line + 1} and "
                                      "another); keep one")
            return super().construct_mapping(node, deep)

    try:
        with open(path) as f:
            return yaml.load(f, Loader) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML ({' '.join(str(e).split())}); fix the syntax there") from e
    except OSError as e:
        raise ConfigError(f"cannot read the params file {path} ({e.strerror}); give the path of a params.yaml") from e


def check_prepare(options, where="prepare"):
    """Reject unknown prepare options and values out of range, naming the key; returns options."""
    for key, value in options.items():
        if key not in PREPARE_OPTIONS:
            raise ConfigError(f"{where}: unknown option {key!r}; valid options are: {', '.join(PREPARE_OPTIONS)}")
        kind, ok, must = PREPARE_OPTIONS[key]
        if isinstance(value, bool) or not isinstance(value, kind) or not ok(value):
            raise ConfigError(f"{where}: {key} must be {must}, got {value!r}")
    return options


def check_keys(values, valid, where=""):
    """Reject the keys of `values` that are not in `valid`, naming them and listing the valid ones."""
    unknown = sorted(set(values) - set(valid))
    if unknown:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}unknown key(s) {', '.join(map(repr, unknown))}; valid keys are: {', '.join(valid)}")


def number(value):
    """A string such as '1e-3', which YAML 1.1 reads as text (no dot before the exponent), as the float it
    spells; any other value unchanged."""
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return float(value)
    return value


def from_dict(cls, values, where="params"):
    """Build config `cls` from a mapping, checking every key and value."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {type(values).__name__}")
    known = {f.name: f for f in fields(cls)}
    check_keys(values, known, where)
    out = {}
    for key, value in values.items():
        value = number(value)
        default = known[key].default
        kind = type(default)
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:
            ok = isinstance(value, kind) and not isinstance(value, bool)
        if not ok:
            raise ConfigError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
        out[key] = value
    cfg = replace(cls(), **out)
    check(cfg, where)
    return cfg


def check(cfg, where="params"):
    """Reject values no training could use; returns cfg."""
    for key, value in asdict(cfg).items():
        if key in POSITIVE and not value > 0:
            raise ConfigError(f"{where}.{key} must be > 0, got {value!r}")
        if key in PROBABILITIES and not 0 <= value < 1:
            raise ConfigError(f"{where}.{key} must be in [0, 1), got {value!r}")
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError(f"{where}.{key} must be one of {', '.join(CHOICES[key])}; got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"{where}.{key} must not be negative, got {value!r}")
    return cfg
