"""Datasets: a local Parquet mirror laid out as <dir>/<split>.parquet with the hub's schema when
one is configured (params `data.mirror` or the ULMFIT_DATA environment variable), otherwise the
Hugging Face hub. Plus the seeded samplers the experiments use: stratified label budgets and
the 10% validation split carved from train.
"""

import functools
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """Data could not be loaded or used; the message names the item at fault and the fix."""


@dataclass(frozen=True)
class Spec:
    hub: str | None  # hub repository; None = local mirror only
    config: str | None  # hub configuration name
    mirror_dir: str  # directory name in the mirror
    splits: tuple
    text: tuple = ("text",)  # text columns, joined with a space
    label: str | None = None
    classes: tuple = ()


DATASETS = {
    "imdb": Spec("stanfordnlp/imdb", None, "imdb", ("train", "test", "unsupervised"), label="label",
                 classes=("neg", "pos")),
    "trec": Spec("CogComp/trec", None, "trec", ("train", "test"), label="coarse_label",
                 classes=("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM")),
    "ag_news": Spec("fancyzhx/ag_news", None, "ag_news", ("train", "test"), label="label",
                    classes=("World", "Sports", "Business", "Sci/Tech")),
    "yelp_polarity": Spec("fancyzhx/yelp_polarity", None, "yelp_polarity", ("train", "test"), label="label",
                          classes=("negative", "positive")),
    "yelp_review_full": Spec("Yelp/yelp_review_full", None, "yelp_review_full", ("train", "test"), label="label",
                             classes=("1 star", "2 stars", "3 stars", "4 stars", "5 stars")),
    "dbpedia_14": Spec("fancyzhx/dbpedia_14", None, "dbpedia_14", ("train", "test"), text=("title", "content"),
                       label="label", classes=("Company", "EducationalInstitution", "Artist", "Athlete",
                                               "OfficeHolder", "MeanOfTransportation", "Building", "NaturalPlace",
                                               "Village", "Animal", "Plant", "Album", "Film", "WrittenWork")),
    "wikitext-103": Spec("Salesforce/wikitext", "wikitext-103-v1", "wikitext-103-v1", ("train", "validation", "test")),
    "wikitext-2": Spec("Salesforce/wikitext", "wikitext-2-v1", "wikitext-2-v1", ("train", "validation", "test")),
    "wikipedia_en": Spec(None, None, "wikipedia_en", ("train", "validation", "test")),
}

MIRROR_HELP = ("point the ULMFIT_DATA environment variable (or params `data.mirror`) at a directory holding "
               "<dataset>/<split>.parquet")


def spec(name):
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


def hub_reachable(timeout=3.0):
    """True if the Hugging Face hub answers within `timeout` seconds (and offline mode is off)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("0", ""):
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def mirror_dir(mirror=None):
    """The mirror to read: ULMFIT_DATA when set (it overrides --mirror and params `data.mirror`, saying so
    once when the two differ), else `mirror`."""
    env = os.environ.get("ULMFIT_DATA")
    if env and mirror and Path(env).resolve() != Path(mirror).resolve():
        _say_once(f"ulmfit: reading data from ULMFIT_DATA={env}, which overrides the mirror {mirror} "
                  "given by --mirror or params data.mirror (unset ULMFIT_DATA to use that one)")
    return env or mirror


@functools.cache
def _say_once(message):
    print(message, file=sys.stderr)


def load(name, split, mirror=None):
    """One split of a named dataset as a `datasets.Dataset` (mirror first, then the hub)."""
    s = spec(name)
    if split not in s.splits:
        raise DataError(f"dataset {name!r} has no split {split!r}; its splits are: {', '.join(s.splits)}")
    mirror = mirror_dir(mirror)
    tried = "no mirror configured"
    if mirror:
        path = Path(mirror) / s.mirror_dir / f"{split}.parquet"
        if path.exists():
            return read_parquet(path, s)
        tried = f"mirror file {path} does not exist" + (" (mirror from ULMFIT_DATA)" if os.environ.get("ULMFIT_DATA") else "")
    if s.hub is None:
        raise DataError(f"{name}/{split} is only available from a local mirror ({tried}); {MIRROR_HELP}")
    if not hub_reachable():
        raise DataError(
            f"cannot load {name}/{split}: {tried} and the Hugging Face hub is unreachable (offline); {MIRROR_HELP}"
        )
    import datasets

    return datasets.load_dataset(s.hub, s.config, split=split)


def read_parquet(path, s):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.table import InMemoryTable

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"cannot read {path} ({e}); the file is damaged or truncated: copy it again") from e
    expected = list(s.text) + ([s.label] if s.label else [])
    missing = [c for c in expected if c not in table.column_names]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {', '.join(missing)} (it has: {', '.join(table.column_names)}); "
            f"a mirror file must keep the hub's schema with columns {', '.join(expected)}"
        )
    for col in s.text:
        if pa.types.is_binary(table.schema.field(col).type) or pa.types.is_large_binary(table.schema.field(col).type):
            table = table.set_column(table.column_names.index(col), col, decode_utf8(table.column(col), path, col))
        else:
            try:
                table.column(col).validate(full=True)
            except pa.ArrowInvalid as e:
                raise DataError(f"{path}: column {col!r} holds text that is not valid UTF-8 ({e}); "
                                "re-encode the file as UTF-8") from e
    return datasets.Dataset(InMemoryTable(table))


def decode_utf8(column, path, col):
    import pyarrow as pa

    values = []
    for row, raw in enumerate(column.to_pylist()):
        try:
            values.append(None if raw is None else raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: row {row} of column {col!r} is not valid UTF-8 ({e}); "
                            "re-encode the file as UTF-8 or drop that row") from e
    return pa.array(values, pa.string())


def texts_and_labels(ds, name):
    """(texts, labels) of a loaded split; labels is None for unlabelled data (no column, or all -1)."""
    s = spec(name)
    columns = [ds[c] for c in s.text]
    texts = [" ".join("" if v is None else v for v in values) for values in zip(*columns)] if len(columns) > 1 \
        else ["" if v is None else v for v in columns[0]]
    if not s.label:
        return texts, None
    raw = ds[s.label]
    if all(v == -1 for v in raw):
        return texts, None
    return texts, np.array([label_id(v, row, name, s.classes) for row, v in enumerate(raw)], dtype=np.int64)


def labelled(ds, name, split):
    """(texts, labels) of a split that must be labelled (train or test of a classification dataset)."""
    texts, labels = texts_and_labels(ds, name)
    if labels is None:
        raise DataError(f"{name}/{split} has no labels (every label is -1); a classifier needs a labelled {split} split: "
                        "check the label column")
    return texts, labels


def label_id(value, row, name, classes):
    """The class number of one label: a whole number 0..k-1 (a whole float such as 2.0 included) or a class name."""
    if isinstance(value, str) and value in classes:
        return classes.index(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and 0 <= value < len(classes):
        return int(value)
    raise DataError(f"{name}: row {row} has label {value!r}, outside the declared classes 0..{len(classes) - 1}; "
                    f"expected a whole number 0..{len(classes) - 1} or a class name ({', '.join(classes)}); "
                    "fix or drop that row")


def wiki_articles(lines):
    """Group WikiText-layout lines into articles: a ' = Title = ' line starts a new one."""
    articles, current = [], []
    for line in lines:
        if line.startswith(" = ") and not line.startswith(" = = ") and "".join(current).strip():
            articles.append("".join(current))
            current = []
        current.append(line)
    if current:
        articles.append("".join(current))
    return articles


def _quotas(counts, n, balanced):
    k = len(counts)
    if balanced:
        quotas = np.full(k, n // k)
        quotas[: n % k] += 1
    else:  # proportional to class frequency, largest remainders first
        exact = counts * n / counts.sum()
        quotas = np.floor(exact).astype(int)
        quotas[np.argsort(-(exact - quotas), kind="stable")[: n - quotas.sum()]] += 1
    return quotas


def stratified_sample(labels, n, seed, balanced=True, classes=None):
    """Indices of `n` labelled examples drawn per class with a seeded generator.

    balanced=True takes n / n_classes per class; otherwise each class keeps its share.
    Asking for more examples of a class than exist is an error that names the class.
    """
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if classes is None else len(classes)
    counts = np.bincount(labels, minlength=k)
    if n <= 0:
        raise DataError(f"label budget must be positive, got {n}")
    if n > len(labels):
        raise DataError(f"label budget {n} exceeds the {len(labels)} labelled examples available; use at most {len(labels)}")
    quotas = _quotas(counts, n, balanced)
    short = np.nonzero(quotas > counts)[0]
    if len(short):
        c = short[0]
        name = classes[c] if classes is not None else c
        largest = next(m for m in range(n - 1, 0, -1) if (_quotas(counts, m, balanced) <= counts).all())
        raise DataError(
            f"label budget {n} needs {quotas[c]} examples of class {name!r} but only {counts[c]} are available; "
            f"use a budget of at most {largest} or sample in proportion to class frequency (balanced: false)"
        )
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.nonzero(labels == c)[0])[: quotas[c]] for c in range(k)]
    return np.sort(np.concatenate(picked))


def check_classes(labels, classes, what):
    """A classifier needs examples of at least two classes."""
    present = np.unique(labels)
    if len(present) < 2:
        only = classes[present[0]] if len(present) else "none"
        raise DataError(f"{what}: only class {only} has examples ({len(labels)} rows); a classifier needs examples "
                        "of at least two classes: check the label column or the split")


def train_valid_split(labels, valid_frac, seed):
    """Seeded stratified split of train into (train, validation) indices; valid_frac of each class."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.nonzero(labels == c)[0])
        cut = int(round(len(idx) * valid_frac))
        valid.append(idx[:cut])
        train.append(idx[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(valid))
