"""Datasets: a local Parquet mirror laid out as <dir>/<split>.parquet with the hub's schema when
one is configured (params `data.mirror` or the ULMFIT_DATA environment variable), otherwise the
Hugging Face hub through `datasets.load_dataset`, which keeps what it downloads in its cache and, in
offline mode (HF_HUB_OFFLINE=1 or HF_DATASETS_OFFLINE=1), reads from that cache only; or the user's own .csv
or .parquet file with a text and a label column (`file_dataset`). Plus the seeded samplers the experiments use:
stratified label budgets and the 10% validation split carved from train.
"""

import functools
import os
import socket
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .io import DataError  # noqa: F401  (raised here; the class every module imports from ulmfit.data)


@dataclass(frozen=True)
class Spec:
    hub: str | None  # hub repository; None = local mirror only
    config: str | None  # hub configuration name
    mirror_dir: str  # directory name in the mirror
    splits: tuple
    text: tuple = ("text",)  # text columns, joined with a space
    label: str | None = None
    classes: tuple = ()
    name: str = ""
    files: dict | None = None  # the user's own dataset: split -> .csv or .parquet file


# The hub's schema (a mirror file keeps it), columns in order: imdb text, label (-1 throughout unsupervised); trec
# text, coarse_label, fine_label (unused); ag_news and yelp_polarity text, label; yelp_review_full label, text;
# dbpedia_14 label, title, content (title and content are joined); WikiText one `text` row per line (see
# wiki_articles). `classes` follows the hub's ClassLabel, whose numbers are the labels; our names are the hub's except
# yelp_polarity's (hub: "1", "2") and yelp_review_full's "2 stars" (hub: "2 star").
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
DATASETS = {name: replace(s, name=name) for name, s in DATASETS.items()}
FILE_TYPES = (".csv", ".parquet")

MIRROR_HELP = ("point the ULMFIT_DATA environment variable (or params `data.mirror`) at a directory holding "
               "<dataset>/<split>.parquet")


def spec(name):
    """The Spec of a named dataset (a Spec, such as a user's file dataset, is returned as it is)."""
    if isinstance(name, Spec):
        return name
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


def hub_reachable(timeout=3.0):
    """True if the Hugging Face hub answers within `timeout` seconds."""
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
    """One split of a dataset as a `datasets.Dataset`: a user's file, or a named dataset's (mirror first, then the hub)."""
    s = spec(name)
    name = s.name
    if split not in s.splits:
        raise DataError(f"dataset {name!r} has no split {split!r}; its splits are: {', '.join(s.splits)}")
    if s.files:
        return read_file(s.files[split], s)
    mirror = mirror_dir(mirror)
    tried = "no mirror configured"
    if mirror:
        path = Path(mirror) / s.mirror_dir / f"{split}.parquet"
        if path.exists():
            return read_parquet(path, s)
        tried = f"mirror file {path} does not exist" + (" (mirror from ULMFIT_DATA)" if os.environ.get("ULMFIT_DATA") else "")
    if s.hub is None:
        raise DataError(f"{name}/{split} is only available from a local mirror ({tried}); {MIRROR_HELP}")
    return load_hub(s, split, tried)


def load_hub(s, split, tried):
    """One split of a named dataset through `datasets.load_dataset`: from the hub, or from the Hugging Face cache
    when it was loaded before; offline mode (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE set to 1 when `datasets` is
    imported, that is before the run starts) reads the cache only. Online, an unreachable hub fails within seconds."""
    import datasets

    offline = datasets.config.HF_HUB_OFFLINE
    what = s.hub + (f" (config {s.config})" if s.config else "")

    def error(reason):
        return DataError(f"cannot load {s.name}/{split}: {tried}, and {reason}; Hugging Face cache: "
                         f"{datasets.config.HF_DATASETS_CACHE}; to fix, load it once with network access (offline "
                         f"runs, with HF_HUB_OFFLINE=1, then read it from that cache) or {MIRROR_HELP}")

    if not offline and not hub_reachable():
        raise error("the Hugging Face hub is unreachable and offline mode is off")
    try:
        return datasets.load_dataset(s.hub, s.config, split=split)
    except (ConnectionError, FileNotFoundError, ValueError) as e:  # not cached, not on the hub, or no such config
        detail = " ".join(str(e).split())
        raise error(f"offline mode finds no copy of {what} in the Hugging Face cache ({detail})" if offline
                    else f"the Hugging Face hub did not provide {what} ({detail})") from e


def file_dataset(name, file, text_column="text", label_column="label", test_file=None):
    """The Spec of a user's dataset: a .csv or .parquet file (and optionally a test file) with a text column and a
    label column. Its classes are the labels found, in sorted order: class names, or whole numbers."""
    files = {"train": str(file), **({"test": str(test_file)} if test_file else {})}
    s = Spec(None, None, "", tuple(files), text=(text_column,), label=label_column, name=name, files=files)
    found = {split: {class_value(v, row, path, label_column) for row, v in enumerate(read_file(path, s)[label_column])}
             for split, path in files.items()}
    kinds = {split: {"class names" if isinstance(v, str) else "numbers" for v in values} for split, values in found.items()}
    if len(set.union(*kinds.values())) > 1:
        where = "; ".join(f"{files[split]} has {' and '.join(sorted(k))}" for split, k in kinds.items())
        raise DataError(f"column {label_column!r} mixes class names and numbers ({where}); use one kind of label")
    unseen = sorted(found.get("test", set()) - found["train"], key=str)
    if unseen:
        raise DataError(f"{test_file}: class(es) {', '.join(map(repr, unseen))} of column {label_column!r} have no "
                        f"example in {file}; a classifier cannot learn them: drop those rows or add training examples")
    values = found["train"]
    classes = tuple(str(v) for v in sorted(values))
    if len(classes) < 2:
        raise DataError(f"{file}: column {label_column!r} holds {len(classes)} class(es) ({', '.join(classes)}); a "
                        "classifier needs examples of at least two classes: check the label column")
    return replace(s, classes=classes)


def class_value(value, row, path, column):
    """A user's label as a class name or a whole number (a whole float such as 2.0 included)."""
    if value is None or isinstance(value, float) and np.isnan(value):
        raise DataError(f"{path}: row {row} of column {column!r} has no label; fill it in or drop that row")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip():  # "pos " and "pos" are one class
        return value.strip()
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise DataError(f"{path}: row {row} of column {column!r} has label {value!r}; a label must be a class name or a "
                    "whole number: fix or drop that row")


def read_file(path, s):
    """A user's .csv or .parquet file as a `datasets.Dataset`."""
    path = Path(path)
    if path.suffix.lower() not in FILE_TYPES:
        raise DataError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; a dataset file must be "
                        f"{' or '.join(FILE_TYPES)}")
    if not path.exists():
        raise DataError(f"{path} does not exist; check the dataset's file path")
    return read_parquet(path, s) if path.suffix.lower() == ".parquet" else read_csv(path, s)


def check_columns(path, s, columns):
    expected = list(s.text) + ([s.label] if s.label else [])
    missing = [c for c in expected if c not in columns]
    if missing:
        fix = ("name the text and label columns with --text-column and --label-column (params: text_column, "
               "label_column)" if s.files else f"a mirror file must keep the hub's schema with columns {', '.join(expected)}")
        raise DataError(f"{path} lacks column(s) {', '.join(missing)} (it has: {', '.join(map(str, columns))}); {fix}")


@contextmanager
def quiet_datasets():
    """No progress bars or log lines from `datasets` while it reads a file (our errors say what went wrong)."""
    import datasets

    bars, verbosity = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()


def read_parquet(path, s):
    """A Parquet file as an in-memory `datasets.Dataset` through datasets' own Parquet reader; its Arrow cache is
    written to a temporary directory, removed at once."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    damaged = "the file is damaged or truncated: copy it again"
    try:
        columns = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"cannot read {path} ({e}); {damaged}") from e
    check_columns(path, s, columns)
    try:
        with tempfile.TemporaryDirectory(prefix="ulmfit-parquet-") as cache, quiet_datasets():
            ds = datasets.Dataset.from_parquet(str(path), cache_dir=cache, keep_in_memory=True)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"cannot read {path} ({e}); {damaged}") from e
    except datasets.exceptions.DatasetGenerationError as e:
        raise DataError(f"cannot read {path} ({e.__cause__ or e}); {damaged}") from e
    for col in s.text:
        kind = ds.data.schema.field(col).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
                or pa.types.is_large_binary(kind) or pa.types.is_null(kind)):
            fix = "name the column of texts with --text-column" if s.files else "a mirror file keeps the hub's schema"
            raise DataError(f"{path}: text column {col!r} holds {kind}, not text; {fix}")
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            ds = ds.remove_columns(col).add_column(col, decode_utf8(ds.data.column(col), path, col))
        else:
            try:
                ds.data.column(col).validate(full=True)
            except pa.ArrowInvalid as e:
                raise DataError(f"{path}: column {col!r} holds text that is not valid UTF-8 ({e}); "
                                "re-encode the file as UTF-8") from e
    return ds


def read_csv(path, s):
    """A CSV file (comma-separated UTF-8 with a header row) as an in-memory `datasets.Dataset`: text cells are read
    as text (an empty cell is an empty text), an empty label cell is a missing label."""
    import datasets

    check_columns(path, s, list(_csv(path, nrows=0).columns))
    frame = _csv(path, dtype={c: str for c in s.text}, keep_default_na=False, na_values={s.label: [""]})
    return datasets.Dataset.from_pandas(frame, preserve_index=False)


def _csv(path, **options):
    import pandas as pd

    try:
        return pd.read_csv(path, **options)
    except (ValueError, OSError) as e:  # pandas' parser and decoding errors are ValueErrors
        raise DataError(f"cannot read {path} as CSV ({' '.join(str(e).split())}); save it as comma-separated UTF-8 "
                        "text with a header row") from e


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
    name = s.name
    columns = [ds[c] for c in s.text]
    texts = [" ".join("" if v is None else v for v in values) for values in zip(*columns)] if len(columns) > 1 \
        else ["" if v is None else v for v in columns[0]]
    if not s.label:
        return texts, None
    raw = ds[s.label]
    if s.files:  # a user's labels: class names or whole numbers, named as in s.classes
        raw = [str(class_value(v, row, name, s.label)) for row, v in enumerate(raw)]
    if all(v == -1 for v in raw):
        return texts, None
    return texts, np.array([label_id(v, row, name, s.classes) for row, v in enumerate(raw)], dtype=np.int64)


def labelled(ds, name, split):
    """(texts, labels) of a split that must be labelled (train or test of a classification dataset)."""
    texts, labels = texts_and_labels(ds, name)
    name = spec(name).name
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
    """Group WikiText-layout lines into articles, each one document of the language-model corpus.

    WikiText (and the wikipedia_en mirror, laid out like it) has one row per line: ' = Title = \\n' heads an
    article, ' = = Section = = \\n' (or deeper) a section, '' is a blank line and every other row a paragraph
    ending in '\\n'. A top-level ' = Title = ' line starts a new article; lines are joined as they are, so
    headings and line ends stay in the text. WikiText's text is pre-tokenized: words and punctuation are
    separated by spaces, ' @-@ ', ' @,@ ' and ' @.@ ' mark a hyphen, comma or point inside a word or number
    ('1 @,@ 200'), and rare words are '<unk>'. The tokenizer (ulmfit.text: fastai's rules, and fastai 1's
    for ' @,@ ') undoes the marks ('1,200', 'year-old', '3.5') and turns '<unk>' into xxunk, the vocabulary's
    unknown token (id 0).
    """
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
