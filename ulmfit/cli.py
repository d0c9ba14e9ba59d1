"""The `ulmfit` command: one subcommand per step of ULMFiT.

Model and training knobs are set with `--set key=value ...` over the paper's defaults (see
ulmfit/config.py for every key), or read from a params file section with `--params FILE`.
"""

import argparse
import json
import sys
from dataclasses import fields
from importlib.metadata import version
from pathlib import Path

import yaml

from .config import PRECISIONS, ClfConfig, ConfigError, LMConfig, ModelConfig, check_keys, from_dict, number, read_yaml
from .interrupt import stop_cleanly


def parse_sets(pairs):
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = number(yaml.safe_load(value))
    return out


def configs(args, train_cls):
    """(ModelConfig, train config) from --params/--section and --set, every key checked."""
    values = {}
    if args.section and not args.params:
        raise ConfigError("--section names a section of a --params file; give --params too")
    if args.params:
        params = read_yaml(args.params)
        if args.section and not isinstance(params.get(args.section), dict):
            sections = [k for k, v in params.items() if isinstance(v, dict)]
            raise ConfigError(f"{args.params} has no section {args.section!r}; its sections are: {', '.join(sections)}")
        values.update(params.get("model") or {})
        values.update(params.get(args.section) or {} if args.section else {})
    values.update(parse_sets(args.set))
    model_keys = {f.name for f in fields(ModelConfig)}
    train_keys = {f.name for f in fields(train_cls)}
    check_keys(values, sorted(model_keys | train_keys))
    model = from_dict(ModelConfig, {k: v for k, v in values.items() if k in model_keys}, "model")
    train = from_dict(train_cls, {k: v for k, v in values.items() if k in train_keys}, train_cls.__name__)
    return model, train


FASTAI_OUT = "models/fastai_wt103"  # where the paper profiles' pretrain_import looks
PRECISION_HELP = "auto (default): bf16 where the device runs it natively, fp32 elsewhere"


def add_config_args(p):
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override a config value (see ulmfit/config.py), e.g. "
                                                                  "precision=fp32 (default auto)")
    p.add_argument("--params", help="a params.yaml to read model and training values from")
    p.add_argument("--section", help="the params section holding the training values")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def build_parser():
    parser = argparse.ArgumentParser(prog="ulmfit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ulmfit {version('ulmfit')}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="load, split, tokenize and numericalize a dataset")
    p.add_argument("--dataset", required=True, help="imdb, trec, ag_news, wikipedia_en, wikitext-103, ..., or your own "
                                                    ".csv or .parquet file")
    p.add_argument("--out", required=True)
    p.add_argument("--mirror", default=None, help="local mirror directory (<dataset>/<split>.parquet)")
    p.add_argument("--text-column", help="your file's text column (default: text)")
    p.add_argument("--label-column", help="your file's label column (default: label)")
    p.add_argument("--test-file", help="your dataset's test file (default: carve the test split from --dataset)")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE",
                   help="valid_frac, split_seed, max_vocab, min_freq, max_valid, max_test, max_unlabelled, max_words, repartition_test, workers")

    p = sub.add_parser("pretrain", help="pretrain a language model on a prepared general-domain corpus")
    p.add_argument("--corpus", required=True, help="prepared corpus directory")
    p.add_argument("--out", required=True)
    p.add_argument("--direction", choices=("fwd", "bwd"), default="fwd")
    add_config_args(p)

    p = sub.add_parser("import-fastai", help="convert fastai's pretrained AWD-LSTM (WT103) into a model directory")
    p.add_argument("--weights", required=True, help="fastai state dict, e.g. lstm_fwd.pth")
    p.add_argument("--vocab", required=True, help="fastai's pickled token list, e.g. itos_wt103.pkl")
    p.add_argument("--out", required=True, help="model directory to write (model.pt)")
    p.add_argument("--direction", choices=("fwd", "bwd"), default="fwd", help="the direction the weights were trained in")
    p.add_argument("--target-vocab", help="map the rows onto this vocab.json (a prepared dataset's)")

    p = sub.add_parser("fetch-fastai", help="download fastai's WT103 language models (fwd and bwd), check their sha256 "
                                            "and unpack them for params pretrain_import")
    p.add_argument("--out", default=FASTAI_OUT, help=f"folder to write (default: {FASTAI_OUT}, where "
                                                     "profiles/paper_main.yaml and paper_tables.yaml look)")
    p.add_argument("--source", help="folder or file://, http(s):// URL holding wt103-fwd.tgz and wt103-bwd.tgz "
                                    "(default: fastai's, https://s3.amazonaws.com/fast-ai-modelzoo/)")
    p.add_argument("--lock", default="fastai_wt103.sha256", help="the archives' sha256, recorded on the first download "
                                                                 "and checked on every later one: commit it")

    p = sub.add_parser("finetune-lm", help="fine-tune a language model on a prepared target dataset")
    p.add_argument("--data", required=True, help="prepared dataset directory")
    p.add_argument("--out", required=True)
    p.add_argument("--pretrained", help="pretrained model directory (omit to start from random weights)")
    p.add_argument("--direction", choices=("fwd", "bwd"), default="fwd")
    p.add_argument("--text", choices=("all", "labelled"), default="all")
    p.add_argument("--budget", type=int, default=0, help="with --text labelled: number of labelled examples")
    p.add_argument("--no-training", action="store_true", help="only map the vocabulary (no LM fine-tuning)")
    add_config_args(p)

    p = sub.add_parser("train-clf", help="train a classifier on a prepared dataset")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--lm", help="fine-tuned language model directory (omit to train from scratch)")
    p.add_argument("--direction", choices=("fwd", "bwd"), default="fwd")
    p.add_argument("--budget", type=int, default=0, help="labelled examples (0 = all)")
    p.add_argument("--proportional", action="store_true", help="sample the budget in proportion to class frequency")
    add_config_args(p)

    p = sub.add_parser("evaluate", help="test error of classifiers and of their ensemble")
    p.add_argument("--data", required=True)
    p.add_argument("--model", action="append", required=True, help="classifier directory (repeat to ensemble)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--device", default=None)
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)

    p = sub.add_parser("predict", help="print the label and probability for each text")
    p.add_argument("--model", action="append", required=True, help="classifier directory (repeat to ensemble)")
    p.add_argument("texts", nargs="+", help="texts to classify ('-' reads one text per line from stdin)")
    p.add_argument("--device", default=None)
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    return parser


def dataset_options(args):
    """(name, file options) of `prepare --dataset`: a .csv or .parquet path is the user's own dataset, named after
    the file."""
    own = {k: v for k, v in (("text_column", args.text_column), ("label_column", args.label_column),
                             ("test_file", args.test_file)) if v is not None}
    if Path(args.dataset).suffix or own:
        return Path(args.dataset).stem, {"file": args.dataset, **own}
    return args.dataset, {}


def fetch_fastai_command(args):
    from .fastai_import import FASTAI_URL, fetch_fastai

    r = fetch_fastai(args.out, args.source or FASTAI_URL, args.lock)
    check = (f"sha256 recorded in {args.lock} (first download): commit it; later fetches are checked against it"
             if r["recorded"] else f"sha256 checked against {args.lock}")
    source = yaml.safe_dump(r["pretrain_import"], default_flow_style=True, width=float("inf"), sort_keys=False).strip()
    print(f"fetched fastai's WT103 language models into {args.out}/fwd and {args.out}/bwd; {check}\n"
          f"start from them: cp profiles/paper_main.yaml params.yaml && dvc repro  (paper_tables.yaml: every table; "
          f"both read {FASTAI_OUT})\n"
          f"or set in params.yaml  pretrain_import: {source}")


def run(args):
    from . import steps
    from .api import check_texts, load_classifier
    from .precision import check_device

    if getattr(args, "device", None):
        check_device(args.device)
    if args.command == "prepare":
        name, own = dataset_options(args)
        info = steps.prepare(name, args.out, mirror=args.mirror, **{**own, **parse_sets(args.set)})
        print(json.dumps(info, indent=2))
    elif args.command == "pretrain":
        model_cfg, lm_cfg = configs(args, LMConfig)
        steps.pretrain(args.corpus, args.out, model_cfg, lm_cfg, args.direction, args.seed, args.device)
    elif args.command == "import-fastai":
        from .fastai_import import import_fastai

        r = import_fastai(args.weights, args.vocab, args.out, args.direction, args.target_vocab)
        mapped = (f", mapped onto {r['vocab_size']} target tokens ({r['shared_tokens']} shared)"
                  if args.target_vocab else "")
        print(f"imported fastai {r['direction']} LM: vocab {r['source_vocab_size']}{mapped}, emb {r['emb_size']}, "
              f"hidden {r['hidden_size']}, {r['n_layers']} layers -> {r['out']}")
    elif args.command == "fetch-fastai":
        fetch_fastai_command(args)
    elif args.command == "finetune-lm":
        model_cfg, lm_cfg = configs(args, LMConfig)
        steps.finetune_lm(args.data, args.out, None if args.no_training else lm_cfg, args.pretrained, model_cfg,
                          args.direction, args.text, args.budget, True, args.seed, args.device)
    elif args.command == "train-clf":
        model_cfg, clf_cfg = configs(args, ClfConfig)
        r = steps.train_clf(args.data, args.out, clf_cfg, args.lm, model_cfg, args.direction, args.budget,
                            not args.proportional, args.seed, True, args.device)
        print(f"validation error {r['valid_error']:.4f} ({r['n_train']} training examples)")
    elif args.command == "evaluate":
        models = {f"model{i}": m for i, m in enumerate(args.model)}
        print(json.dumps(steps.evaluate(args.data, models, args.out, args.device, precision=args.precision), indent=2))
    elif args.command == "predict":
        texts = check_texts(sys.stdin.read().splitlines() if args.texts == ["-"] else args.texts)
        for label, prob in load_classifier(args.model, args.device, args.precision).predict(texts):
            print(f"{label}\t{prob:.4f}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    exit_code = stop_cleanly()
    try:
        run(args)
    except (ValueError, OSError, RuntimeError) as e:  # our errors name the problem and the fix
        from .precision import kernel_error

        error = kernel_error(e) if isinstance(e, RuntimeError) else e
        if error is None:  # a bug: keep its traceback
            raise
        print(f"ulmfit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"ulmfit {args.command}: interrupted; nothing was written", file=sys.stderr)
        return exit_code(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
