"""The hub route of ulmfit.data, without network: every hub dataset is written as small Parquet files with the hub's
exact schema (column names and order, dtypes, ClassLabel names), read once from a mirror of those files and once,
offline and with no mirror, from a Hugging Face cache built from the same files by `datasets`' own Parquet builder in
the layout `load_dataset` reads offline (see the offline-cache section of the data mirror's README). One subprocess,
started with offline mode set as on a compute node, does every offline load and the `ulmfit prepare` runs."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ulmfit import data as D
from ulmfit import steps
from ulmfit.text import SPECIAL_TOKENS, UNK

ROOT = Path(__file__).resolve().parents[1]

TREC_FINE = ("ABBR:abb ABBR:exp ENTY:animal ENTY:body ENTY:color ENTY:cremat ENTY:currency ENTY:dismed ENTY:event "
             "ENTY:food ENTY:instru ENTY:lang ENTY:letter ENTY:other ENTY:plant ENTY:product ENTY:religion ENTY:sport "
             "ENTY:substance ENTY:symbol ENTY:techmeth ENTY:termeq ENTY:veh ENTY:word DESC:def DESC:desc DESC:manner "
             "DESC:reason HUM:gr HUM:ind HUM:title HUM:desc LOC:city LOC:country LOC:mount LOC:other LOC:state "
             "NUM:code NUM:count NUM:date NUM:dist NUM:money NUM:ord NUM:other NUM:period NUM:perc NUM:speed NUM:temp "
             "NUM:volsize NUM:weight").split()
DBPEDIA = ("Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder", "MeanOfTransportation", "Building",
           "NaturalPlace", "Village", "Animal", "Plant", "Album", "Film", "WrittenWork")
# dataset -> (the hub's config, its columns in the hub's order: "text", or the ClassLabel names of a label column)
HUB = {
    "imdb": ("plain_text", {"text": "text", "label": ("neg", "pos")}),
    "trec": ("default", {"text": "text", "coarse_label": ("ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"),
                         "fine_label": TREC_FINE}),
    "ag_news": ("default", {"text": "text", "label": ("World", "Sports", "Business", "Sci/Tech")}),
    "yelp_polarity": ("plain_text", {"text": "text", "label": ("1", "2")}),
    "yelp_review_full": ("yelp_review_full", {"label": ("1 star", "2 star", "3 stars", "4 stars", "5 stars"),
                                              "text": "text"}),
    "dbpedia_14": ("dbpedia_14", {"label": DBPEDIA, "title": "text", "content": "text"}),
    "wikitext-103": ("wikitext-103-v1", {"text": "text"}),
}
PREPARED = ("imdb", "trec", "ag_news", "wikitext-103")
CAPS = {"max_train": 20, "max_valid": 4, "max_test": 8, "max_unlabelled": 12, "min_freq": 1, "workers": 1}
WORDS = ("the film a story was good bad great plot actor scene it and but not very I liked hated of to this "
         "with music ending").split()
WIKI = {  # WikiText layout: '' for a blank line, headings, pre-tokenized paragraphs with @-@, @,@, @.@ and <unk>
    "train": ["", " = Valkyria Chronicles = \n", "", " The game sold 1 @,@ 200 copies in its first week . \n", "",
              " = = Gameplay = = \n", "", " A turn @-@ based <unk> system with 3 @.@ 5 units . \n", "",
              " = Tropical Storm Ana = \n", "", " Ana was a <unk> storm that formed in 2003 . \n",
              " = = Impact = = \n", " It caused $ 1 @.@ 2 million in damage . \n", "",
              " = The Boat Race = \n", "", " Oxford won the race by 3 @,@ 500 lengths . \n"],
    "validation": ["", " = Homarus gammarus = \n", "", " The lobster is a large <unk> . \n", "",
                   " = = Description = = \n", " It is 60 cm long and weighs 6 @.@ 5 kg . \n"],
    "test": ["", " = Robert Boulter = \n", "", " Boulter is an English film @-@ maker . \n"],
}
SCRIPT = """
import json, sys
from ulmfit import data as D
from ulmfit.cli import main
out, names, prepared, caps = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4:]
loaded = {}
for name in names:
    for split in D.spec(name).splits:
        ds = D.load(name, split)
        texts, labels = D.texts_and_labels(ds, name)
        schema = [[c, getattr(f, "names", None) or f.dtype] for c, f in ds.features.items()]
        loaded[f"{name}/{split}"] = [schema, texts, None if labels is None else labels.tolist()]
json.dump(loaded, open(f"{out}/loaded.json", "w"))
codes = {n: main(["prepare", "--dataset", n, "--out", f"{out}/{n}", "--set", *caps]) for n in [*prepared, "wikitext-2"]}
json.dump(codes, open(f"{out}/codes.json", "w"))
"""


def rows(name, split, rng, n=None):
    """A few rows (n, or as many as this module's tests use) of one split with the hub's columns (labels as numbers),
    every class represented."""
    if name.startswith("wikitext"):
        return {"text": WIKI[split]}
    columns, label = HUB[name][1], D.spec(name).label
    k = len(columns[label])
    n = n or (20 if split == "unsupervised" else 42 if split == "train" else max(12, 2 * k))
    labels = [-1] * n if split == "unsupervised" else [i % k for i in range(n)]
    out = {}
    for column, kind in columns.items():
        if kind == "text":
            out[column] = [" ".join(rng.choice(WORDS, rng.integers(4, 12))).capitalize() + " .<br />Seen it ?"
                           for _ in labels]
        else:
            out[column] = labels if column == label else [int(rng.integers(len(kind))) for _ in labels]
    return out


def features(name):
    import datasets

    return datasets.Features({c: datasets.Value("string") if kind == "text" else datasets.ClassLabel(names=list(kind))
                              for c, kind in HUB[name][1].items()})


def build_cache(name, files, cache, build):
    """The Hugging Face cache of hub dataset `name` as a download leaves it:
    <cache>/<namespace>___<name>/<config>/0.0.0/<hash>/<name>-<split>.arrow, made by datasets' Parquet builder."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    namespace, hub_name = D.spec(name).hub.split("/")
    config = HUB[name][0]
    builder = Parquet(cache_dir=str(build), dataset_name=hub_name, config_name=config, config_id=config,
                      hash="0123456789abcdef", data_files={s: str(f) for s, f in files.items()})
    builder.download_and_prepare()
    shutil.move(build / builder.dataset_name, cache / f"{namespace}___{builder.dataset_name}")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """(mirror, rows written, output folder, stderr) of the offline subprocess (HF_DATASETS_OFFLINE=1, HF_HOME holding
    the cache built from the mirror, no ULMFIT_DATA, no --mirror), which loads every split and runs `ulmfit prepare`."""
    import datasets

    tmp = tmp_path_factory.mktemp("hub")
    mirror, hf, out = tmp / "mirror", tmp / "hf", tmp / "offline"
    (hf / "datasets").mkdir(parents=True)
    out.mkdir()
    written, rng = {}, np.random.default_rng(0)
    with D.quiet_datasets():
        for name in HUB:
            files = {}
            for split in D.spec(name).splits:
                files[split] = mirror / D.spec(name).mirror_dir / f"{split}.parquet"
                files[split].parent.mkdir(parents=True, exist_ok=True)
                written[f"{name}/{split}"] = rows(name, split, rng)
                datasets.Dataset.from_dict(written[f"{name}/{split}"], features=features(name)).to_parquet(files[split])
            build_cache(name, files, hf / "datasets", tmp / "build")
    env = {k: v for k, v in os.environ.items() if k not in ("ULMFIT_DATA", "HF_HUB_OFFLINE", "HF_DATASETS_CACHE")}
    env.update(HF_HOME=str(hf), HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT))
    caps = [f"{k}={v}" for k, v in CAPS.items()]
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(out), " ".join(HUB), " ".join(PREPARED), *caps],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return mirror, written, out, result.stderr


@pytest.mark.parametrize("name", HUB)
def test_every_hub_schema_reads_the_same_offline_from_the_cache_as_from_a_mirror(hub, name, monkeypatch):
    monkeypatch.delenv("ULMFIT_DATA", raising=False)
    mirror, written, out, _ = hub
    loaded = json.loads((out / "loaded.json").read_text())
    s = D.spec(name)
    for split in s.splits:
        texts, labels = D.texts_and_labels(D.load(name, split, mirror), name)
        labels = None if labels is None else labels.tolist()
        schema = [[c, "string" if kind == "text" else list(kind)] for c, kind in HUB[name][1].items()]
        assert loaded[f"{name}/{split}"] == [schema, texts, labels]  # the cache kept the hub's schema
        columns = written[f"{name}/{split}"]
        assert texts == [" ".join(t) for t in zip(*(columns[c] for c in s.text))]
        assert labels == (None if split == "unsupervised" or not s.label else columns[s.label])
    if s.label:  # our classes are the hub's ClassLabel names in its order (two renamed for display)
        renamed = {"1": "negative", "2": "positive", "2 star": "2 stars"}
        assert s.classes == tuple(renamed.get(c, c) for c in HUB[name][1][s.label])


@pytest.mark.parametrize("name", PREPARED)
def test_prepare_offline_from_the_cache_matches_the_mirror_route(hub, name, tmp_path, monkeypatch):
    monkeypatch.delenv("ULMFIT_DATA", raising=False)
    mirror, _, out, _ = hub
    info = steps.prepare(name, tmp_path / name, mirror, **CAPS)
    offline = out / name
    assert sorted(p.name for p in offline.iterdir()) == sorted(p.name for p in (tmp_path / name).iterdir())
    for split in [p.stem for p in offline.glob("*.npz")]:
        ours, theirs = np.load(tmp_path / name / f"{split}.npz"), np.load(offline / f"{split}.npz")
        assert sorted(ours.files) == sorted(theirs.files)
        assert all(np.array_equal(ours[k], theirs[k]) for k in ours.files)
    assert (offline / "vocab.json").read_text() == (tmp_path / name / "vocab.json").read_text()
    timing = ("started", "finished", "wall_s", "peak_mem_mb")
    assert {k: v for k, v in json.loads((offline / "info.json").read_text()).items() if k not in timing} == \
        {k: v for k, v in json.loads(json.dumps(info)).items() if k not in timing}
    assert sorted(p.stem for p in offline.glob("*.npz")) == \
        (["train", "valid"] if name == "wikitext-103" else ["test", "train", "unlabelled", "valid"])


def test_wikitext_articles_become_documents_with_marks_undone_and_unk_as_xxunk(hub):
    _, _, out, _ = hub
    info = json.loads((out / "wikitext-103" / "info.json").read_text())
    assert info["train"]["docs"] == 3 and info["valid"]["docs"] == 1  # one document per ' = Title = ' article
    vocab = json.loads((out / "wikitext-103" / "vocab.json").read_text())
    assert vocab[:len(SPECIAL_TOKENS)] == SPECIAL_TOKENS and vocab[0] == UNK
    assert not {"@-@", "@,@", "@.@", "<unk>", "unk", "@"} & set(vocab)
    assert {"1,200", "3,500", "3.5", "1.2", "-", "="} <= set(vocab)
    train = np.load(out / "wikitext-103" / "train.npz")
    assert int(np.sum(train["ids"] == 0)) == 2  # the two '<unk>' of train


def test_offline_without_a_cached_copy_fails_with_one_line_naming_the_cache_and_the_fixes(hub):
    _, _, out, stderr = hub
    assert json.loads((out / "codes.json").read_text())["wikitext-2"] == 2
    errors = [line for line in stderr.splitlines() if line.startswith("ulmfit prepare: error:")]
    assert len(errors) == 1, stderr
    for words in ("cannot load wikitext-2/train: no mirror configured", "offline mode finds no copy of "
                  "Salesforce/wikitext (config wikitext-2-v1)", f"Hugging Face cache: {out.parent / 'hf' / 'datasets'}",
                  "load it once with network access", "ULMFIT_DATA"):
        assert words in errors[0], errors[0]


def test_offline_cli_without_a_cached_copy_or_a_mirror_exits_2_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("ULMFIT_DATA", "HF_DATASETS_OFFLINE", "HF_DATASETS_CACHE")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "ulmfit.cli", "prepare", "--dataset", "ag_news", "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    for words in ("cannot load ag_news/train: no mirror configured, and offline mode finds no copy of fancyzhx/ag_news",
                  f"Hugging Face cache: {tmp_path / 'hf' / 'datasets'};", "load it once with network access",
                  "ULMFIT_DATA"):
        assert words in lines[0], lines[0]
    assert not (tmp_path / "out").exists()
