"""Shared by the stage scripts: the active profile (params.yaml) and experiments/variants.yaml,
checked key by key, resolved into plain configs and output paths."""

import os
import sys
from dataclasses import replace
from pathlib import Path

import yaml

from ulmfit.config import ClfConfig, ConfigError, LMConfig, ModelConfig, check_keys, check_prepare, from_dict, read_yaml
from ulmfit.data import DATASETS, DataError
from ulmfit.interrupt import stop_cleanly
from ulmfit.io import CheckpointError, OutputError
from ulmfit.precision import kernel_error

ROOT = Path(__file__).resolve().parents[1]
PARAMS = Path(os.environ.get("ULMFIT_PARAMS", ROOT / "params.yaml"))
VARIANTS = ROOT / "experiments" / "variants.yaml"

TOP_KEYS = ["notes", "seeds", "datasets", "extra_datasets", "pretrained", "pretrain_import", "lm_variants",
            "clf_variants", "curve_budgets", "scaling", "data", "corpus", "model", "pretrain", "finetune_lm", "clf"]
DATA_KEYS = ["mirror", "valid_frac", "split_seed", "max_vocab", "min_freq", "workers"]
PREPARE_KEYS = ["max_vocab", "min_freq", "max_train", "max_valid", "max_test", "max_unlabelled", "repartition_test",
                "file", "text_column", "label_column", "test_file"]  # the last four: your own dataset (see README)
DATASET_KEYS = ["prepare", "budget", "balanced", "finetune_lm", "clf"]
CORPUS_KEYS = ["name", "max_words"]
GROUPS = {"lm_variants": ["from_same_name", "from_fwd", "from_nothing"],  # a stage group each in dvc.yaml; the first
          "clf_variants": ["from_fwd", "from_same_name", "from_pretrained_fwd", "from_nothing"]}  # has the plain name


def one_line_errors(kind, error, tb):
    """Every stage script imports this module: a config, data or output error, running out of memory (naming
    batch_size and max_len), or a backend kernel's error (named with the device and precision), prints one line naming
    the problem and the fix, and the script exits with code 2; Ctrl-C or SIGTERM exit with 130 or 143 after the step has removed
    its temporary files; anything else keeps its traceback."""
    if issubclass(kind, KeyboardInterrupt):
        print(f"{Path(sys.argv[0]).name}: interrupted; the stage's outputs were not changed", file=sys.stderr)
        code = interrupt_code(error)
    elif issubclass(kind, (ConfigError, DataError, OutputError, CheckpointError)) or kernel_error(error):
        print(f"{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}: error: {kernel_error(error) or error}", file=sys.stderr)
        code = 2
    else:
        return sys.__excepthook__(kind, error, tb)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(code)


sys.excepthook = one_line_errors
interrupt_code = stop_cleanly()


def _check_keys(section, valid, where):
    if not isinstance(section, dict):
        raise ConfigError(f"{where} must be a mapping, got {section!r}")
    check_keys(section, valid, where)


def load_params(path=None):
    """The profile's params, every key and value checked (a misspelt key names the valid ones)."""
    path = Path(path or PARAMS)
    p = read_yaml(path)
    if not p.get("datasets"):
        raise ConfigError(f"{path}: datasets must list at least one dataset, e.g. datasets: [trec]")
    datasets = list(p.get("datasets") or []) + list(p.get("extra_datasets") or [])
    _check_keys(p, TOP_KEYS + datasets, str(path))
    for key in TOP_KEYS[1:]:  # all but notes
        if key not in p:
            raise ConfigError(f"{path}: missing key {key!r}")
    for name in datasets:
        section = p.get(name) or {}
        own = isinstance(section, dict) and isinstance(section.get("prepare"), dict) and "file" in section["prepare"]
        if name not in DATASETS and not own:
            raise ConfigError(f"{path}: datasets lists unknown dataset {name!r}; known: {', '.join(DATASETS)}; for your "
                              f"own, give {name}.prepare a file, text_column and label_column (see README)")
        _check_keys(section, DATASET_KEYS, f"{path}: {name}")
        missing = [k for k in DATASET_KEYS if k not in section]
        if missing:
            raise ConfigError(f"{path}: section {name!r} lacks {', '.join(missing)}; every dataset section lists "
                              f"{', '.join(DATASET_KEYS)} (an empty mapping {{}} keeps the defaults)")
        if not isinstance(section.get("budget"), int) or section.get("budget") < 0:
            raise ConfigError(f"{path}: {name}.budget (labelled examples for the ablations) must be a whole number "
                              f">= 0 (0 = the whole labelled pool), got {section.get('budget')!r}")
        _check_keys(section.get("prepare", {}), PREPARE_KEYS, f"{path}: {name}.prepare")
        p[name] = section
    _check_keys(p["data"], DATA_KEYS, f"{path}: data")
    data = {k: v for k, v in p["data"].items() if k != "mirror"}
    for name in datasets:
        check_prepare({**data, **(p[name]["prepare"] or {})}, f"{path}: data and {name}.prepare")
    _check_keys(p["corpus"], CORPUS_KEYS, f"{path}: corpus")
    for b in p["curve_budgets"]:
        if not isinstance(b, int) or b <= 0:
            raise ConfigError(f"{path}: curve_budgets must be positive whole numbers, got {b!r}")
    if not isinstance(p["seeds"], list) or not p["seeds"] or not all(isinstance(s, int) and not isinstance(s, bool)
                                                                       and s >= 0 for s in p["seeds"]):
        raise ConfigError(f"{path}: seeds must list whole numbers >= 0, e.g. seeds: [0, 1, 2]; got {p['seeds']!r}")
    for name, source in p["pretrain_import"].items():
        if name not in p["pretrained"] or not isinstance(source, dict) or set(source) != {"weights", "vocab"}:
            raise ConfigError(f"{path}: pretrain_import.{name} must name a listed pretrained model and give its fastai "
                              "`weights` (.pth) and `vocab` (.pkl), e.g. {weights: lstm_fwd.pth, vocab: itos_wt103.pkl}")
    check_variants(p, load_variants(), path)
    check_scaling(p, path)
    # every config section must build
    model_config(p)
    from_dict(LMConfig, p["pretrain"], f"{path}: pretrain")
    for name in datasets:
        dataset_config(p, name, LMConfig, "finetune_lm")
        dataset_config(p, name, ClfConfig, "clf")
    return p


def check_variants(p, variants, path):
    """Every listed variant exists, sits in the group of the model it starts from, and that model is trained."""
    for name in p["pretrained"]:
        if name not in variants["pretrain"]:
            raise ConfigError(f"{path}: pretrained lists unknown variant {name!r}; "
                              f"experiments/variants.yaml defines: {', '.join(variants['pretrain'])}")
    for key, kind in (("lm_variants", "lm"), ("clf_variants", "clf")):
        _check_keys(p[key], GROUPS[key], f"{path}: {key}")
        for group in GROUPS[key]:
            if not isinstance(p[key].get(group), list):
                raise ConfigError(f"{path}: {key}.{group} must be a list of variants ([] for none)")
            for name in p[key][group]:
                if name not in variants[kind]:
                    raise ConfigError(f"{path}: {key}.{group} lists unknown variant {name!r}; "
                                      f"experiments/variants.yaml defines: {', '.join(variants[kind])}")
                source, own = start_of(kind, name, variants)
                if own not in GROUPS[key]:
                    raise ConfigError(f"{path}: {key}.{group} lists {name}, which starts from {source} under another "
                                      f"name; dvc.yaml has no stage group for that: in variants.yaml, name it "
                                      f"{source} or start it from fwd")
                if own != group:
                    raise ConfigError(f"{path}: {key}.{group} lists {name}, which starts from "
                                      f"{source or 'random weights'}; list it under {key}.{own}")
                pool = "pretrained" if kind == "lm" or group == "from_pretrained_fwd" else "lm_variants"
                if source and source not in (p[pool] if pool == "pretrained" else listed(p, pool)):
                    raise ConfigError(f"{path}: {key}.{group} lists {name}, which starts from {source}; add "
                                      f"{source} to {pool}")
    if not {"ulmfit", "bwd"} <= set(listed(p, "clf_variants")):
        raise ConfigError(f"{path}: clf_variants must list ulmfit and bwd: stage evaluate (the main results table) "
                          "tests both")


def start_of(kind, name, variants):
    """(model, stage group) that LM or classifier variant `name` starts from; dvc.yaml has one stage group per
    model read (from_...), so that each stage depends on exactly that model."""
    source = variants[kind][name]["pretrained" if kind == "lm" else "lm"]
    if source is None:
        return None, "from_nothing"
    if kind == "clf" and variants["lm"][source].get("text") == "labelled":  # fine-tuned inside the stage
        source = variants["lm"][source]["pretrained"]
        return source, f"from_pretrained_{source}"
    return source, "from_same_name" if source == name else f"from_{source}"


def listed(p, key):
    """Every variant of params' lm_variants or clf_variants, over all groups."""
    return [name for group in GROUPS[key] for name in p[key][group]]


def check_scaling(p, path):
    """params `scaling`: the compute-scaling study's dataset (one of `datasets`) and its levels, multiples of the
    profile's LM training tokens other than 1 (the profile's own run); above 1 they multiply whole epochs."""
    s = p["scaling"]
    _check_keys(s, ["dataset", "levels"], f"{path}: scaling")
    if s.get("dataset") not in p["datasets"]:
        raise ConfigError(f"{path}: scaling.dataset must be one of datasets ({', '.join(p['datasets'])}), got "
                          f"{s.get('dataset')!r}")
    levels = s.get("levels")
    if not isinstance(levels, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0
                                               and x != 1 for x in levels) or len(set(levels)) < len(levels):
        raise ConfigError(f"{path}: scaling.levels must list distinct positive numbers other than 1 (the profile "
                          f"itself), e.g. [0.25, 0.5, 2], or [] for no study; got {levels!r}")
    epochs = {"pretrain.epochs": from_dict(LMConfig, p["pretrain"], f"{path}: pretrain").epochs,
              f"{s['dataset']}.finetune_lm.epochs": dataset_config(p, s["dataset"], LMConfig, "finetune_lm").epochs}
    for level in (x for x in levels if x > 1):
        for key, n in epochs.items():
            if abs(level * n - round(level * n)) > 1e-9:
                raise ConfigError(f"{path}: scaling level {level} x {key} {n} is not a whole number of epochs; "
                                  "use a level that is (e.g. 2)")


def scaled(cfg, level, text_tokens):
    """LMConfig `cfg` training on `level` x its tokens, `text_tokens` being the text's: below 1 on that fraction of
    its text (max_tokens, a seeded subset of whole documents), above 1 for `level` x its epochs."""
    if level > 1:
        return replace(cfg, epochs=round(cfg.epochs * level))
    return replace(cfg, max_tokens=round((cfg.max_tokens or text_tokens) * level))


def load_variants():
    return yaml.safe_load(VARIANTS.read_text())


def model_config(p, pretrain_variant=None):
    values = dict(p["model"])
    if pretrain_variant:
        values.update({k: v for k, v in load_variants()["pretrain"][pretrain_variant].items() if k != "direction"})
    return from_dict(ModelConfig, values, "params.yaml: model")


def dataset_config(p, dataset, cls, section, overrides=None):
    values = {**p[section], **(p[dataset].get(section) or {}), **(overrides or {})}
    return from_dict(cls, values, f"params.yaml: {section} (with {dataset}.{section} and the variant's overrides)")


def direction_of_pretrained(name):
    return load_variants()["pretrain"][name]["direction"] if name else "fwd"


def lm_variant(p, dataset, name):
    """(LMConfig or None, pretrained LM name or None, text, direction) of an LM variant."""
    v = dict(load_variants()["lm"][name])
    pretrained, finetune, text = v.pop("pretrained"), v.pop("finetune", True), v.pop("text", "all")
    cfg = dataset_config(p, dataset, LMConfig, "finetune_lm", v) if finetune else None
    return cfg, pretrained, text, direction_of_pretrained(pretrained)


def clf_variant(p, dataset, name):
    """(ClfConfig, LM variant name or None, keep_model, direction) of a classifier variant."""
    v = dict(load_variants()["clf"][name])
    lm, keep = v.pop("lm"), v.pop("keep_model", False)
    direction = lm_variant(p, dataset, lm)[3] if lm else "fwd"
    return dataset_config(p, dataset, ClfConfig, "clf", v), lm, keep, direction


def data_dir(dataset):
    return ROOT / "data" / "prepared" / dataset


def pretrained_dir(name):
    return ROOT / "models" / "pretrained" / name


def lm_dir(dataset, variant):
    return ROOT / "models" / "lm" / dataset / variant


def run_dir(dataset, variant, budget=None):
    """A classifier stage's output: the ablation run of a variant, or a Figure 3 run at `budget`."""
    if budget is None:
        return ROOT / "runs" / "ablation" / dataset / variant
    return ROOT / "runs" / "curve" / dataset / f"{variant}-{budget}"


def resume_file(*names):
    """Resumable state of an interrupted stage, kept outside every DVC output."""
    return ROOT / ".resume" / ("-".join(map(str, names)) + ".pt")
