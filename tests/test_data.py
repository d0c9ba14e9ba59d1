import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ulmfit import data as D


def write(path, table):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


@pytest.fixture
def mirror(tmp_path):
    write(tmp_path / "trec" / "train.parquet", pa.table({"text": ["What is a dog ?", "Who was Lincoln ?"],
                                                        "coarse_label": [1, 3], "fine_label": [2, 29]}))
    return tmp_path


def test_load_from_a_mirror_gives_a_datasets_dataset(mirror):
    ds = D.load("trec", "train", mirror)
    assert type(ds).__name__ == "Dataset" and len(ds) == 2
    texts, labels = D.texts_and_labels(ds, "trec")
    assert texts == ["What is a dog ?", "Who was Lincoln ?"] and labels.tolist() == [1, 3]


def test_unknown_dataset_and_split_name_the_choices(mirror):
    with pytest.raises(D.DataError, match="unknown dataset 'imbd'.*imdb"):
        D.load("imbd", "train", mirror)
    with pytest.raises(D.DataError, match="no split 'dev'.*train, test"):
        D.load("trec", "dev", mirror)


def test_offline_or_unreachable_without_data_fails_fast_naming_the_mirror_the_cache_and_the_fixes(tmp_path, monkeypatch,
                                                                                                    hf_offline):
    import datasets

    monkeypatch.delenv("ULMFIT_DATA", raising=False)
    start = time.time()
    with pytest.raises(D.DataError) as e:
        D.load("ag_news", "train", tmp_path)
    assert time.time() - start < 10
    msg = str(e.value)
    assert f"ag_news/train: mirror file {tmp_path / 'ag_news' / 'train.parquet'} does not exist, and offline mode " \
           "finds no copy of fancyzhx/ag_news in the Hugging Face cache" in msg
    assert f"Hugging Face cache: {hf_offline}; to fix, load it once with network access" in msg
    assert "ULMFIT_DATA" in msg and "\n" not in msg
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "https://huggingface.invalid")
    with pytest.raises(D.DataError, match="does not exist, and the Hugging Face hub is unreachable and offline mode is "
                                          "off; Hugging Face cache: .*ULMFIT_DATA"):
        D.load("ag_news", "train", tmp_path)
    assert time.time() - start < 10


def test_local_only_corpus_without_mirror(monkeypatch):
    monkeypatch.delenv("ULMFIT_DATA", raising=False)
    with pytest.raises(D.DataError, match="wikipedia_en/train is only available from a local mirror"):
        D.load("wikipedia_en", "train")


def test_damaged_and_misshapen_mirror_files(tmp_path):
    path = tmp_path / "trec" / "test.parquet"
    write(path, pa.table({"text": ["a"] * 100, "coarse_label": [0] * 100}))
    path.write_bytes(path.read_bytes()[:-40])  # truncated
    with pytest.raises(D.DataError, match="damaged or truncated: copy it again"):
        D.load("trec", "test", tmp_path)
    write(path, pa.table({"question": ["a"], "coarse_label": [0]}))
    with pytest.raises(D.DataError, match="lacks column\\(s\\) text .*has: question, coarse_label"):
        D.load("trec", "test", tmp_path)


def test_invalid_utf8_is_reported_with_its_row(tmp_path):
    write(tmp_path / "trec" / "test.parquet",
          pa.table({"text": pa.array([b"fine", b"bad \xff byte"], pa.binary()), "coarse_label": [0, 1]}))
    with pytest.raises(D.DataError, match="row 1 of column 'text' is not valid UTF-8"):
        D.load("trec", "test", tmp_path)


def test_labels_outside_the_declared_classes(tmp_path):
    write(tmp_path / "trec" / "test.parquet", pa.table({"text": ["a", "b"], "coarse_label": [0, 7]}))
    with pytest.raises(D.DataError, match="row 1 has label 7, outside the declared classes 0..5"):
        D.texts_and_labels(D.load("trec", "test", tmp_path), "trec")
    write(tmp_path / "trec" / "test.parquet", pa.table({"text": ["a", "b"], "coarse_label": pa.array([0, None], pa.int64())}))
    with pytest.raises(D.DataError, match="row 1 has label None"):
        D.texts_and_labels(D.load("trec", "test", tmp_path), "trec")


def test_unlabelled_split_has_no_labels(tmp_path):
    write(tmp_path / "imdb" / "unsupervised.parquet", pa.table({"text": ["x", "y"], "label": [-1, -1]}))
    assert D.texts_and_labels(D.load("imdb", "unsupervised", tmp_path), "imdb")[1] is None


def test_wiki_articles_split_at_titles():
    lines = ["", " = A = \n", "", " text a \n", " = = Section = = \n", " more \n", " = B = \n", " text b \n"]
    assert D.wiki_articles(lines) == [" = A = \n text a \n = = Section = = \n more \n", " = B = \n text b \n"]


def test_stratified_sample_is_balanced_seeded_and_checks_budgets():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    idx = D.stratified_sample(labels, 30, seed=1)
    assert np.bincount(labels[idx]).tolist() == [10, 10, 10]
    assert np.array_equal(idx, D.stratified_sample(labels, 30, seed=1))
    assert not np.array_equal(idx, D.stratified_sample(labels, 30, seed=2))
    prop = D.stratified_sample(labels, 50, seed=1, balanced=False)
    assert np.bincount(labels[prop]).tolist() == [25, 15, 10]
    with pytest.raises(D.DataError, match="needs 30 examples of class 'c' but only 20 .* at most 62"):
        D.stratified_sample(labels, 90, seed=1, classes=["a", "b", "c"])
    with pytest.raises(D.DataError, match="exceeds the 100 labelled examples"):
        D.stratified_sample(labels, 101, seed=1)


def test_train_valid_split_carves_ten_percent_per_class():
    labels = np.array([0] * 500 + [1] * 300)
    train, valid = D.train_valid_split(labels, 0.1, seed=0)
    assert np.bincount(labels[valid]).tolist() == [50, 30]
    assert len(set(train) & set(valid)) == 0 and len(train) + len(valid) == 800
    assert np.array_equal(valid, D.train_valid_split(labels, 0.1, seed=0)[1])


def test_labels_as_class_names_whole_floats_or_wrong_types(tmp_path):
    write(tmp_path / "trec" / "test.parquet", pa.table({"text": ["a", "b", "c"], "coarse_label": ["DESC", "ABBR", "NUM"]}))
    assert D.texts_and_labels(D.load("trec", "test", tmp_path), "trec")[1].tolist() == [2, 0, 5]
    write(tmp_path / "trec" / "test.parquet", pa.table({"text": ["a", "b"], "coarse_label": [2.0, 0.0]}))
    assert D.texts_and_labels(D.load("trec", "test", tmp_path), "trec")[1].tolist() == [2, 0]
    expected = "expected a whole number 0..5 or a class name \\(ABBR, ENTY, DESC, HUM, LOC, NUM\\); fix or drop that row"
    for column, bad in ([2.0, 2.5], "row 1 has label 2.5"), ([True, False], "row 0 has label True"), \
                       (["DESC", "desc"], "row 1 has label 'desc'"):
        write(tmp_path / "trec" / "test.parquet", pa.table({"text": ["a", "b"], "coarse_label": column}))
        with pytest.raises(D.DataError, match=f"trec: {bad}, outside the declared classes 0..5; {expected}"):
            D.texts_and_labels(D.load("trec", "test", tmp_path), "trec")
    write(tmp_path / "trec" / "test.parquet", pa.table({"text": ["a", "b"], "coarse_label": [-1, -1]}))
    with pytest.raises(D.DataError, match="trec/test has no labels \\(every label is -1\\); a classifier needs a "
                                          "labelled test split"):
        D.labelled(D.load("trec", "test", tmp_path), "trec", "test")


def test_ulmfit_data_overriding_an_explicit_mirror_says_so(tmp_path, monkeypatch, capsys, hf_offline):
    D._say_once.cache_clear()
    monkeypatch.setenv("ULMFIT_DATA", str(tmp_path / "env"))
    assert D.mirror_dir(tmp_path / "env") == str(tmp_path / "env") and capsys.readouterr().err == ""
    assert D.mirror_dir(tmp_path / "given") == str(tmp_path / "env")
    assert capsys.readouterr().err == (f"ulmfit: reading data from ULMFIT_DATA={tmp_path / 'env'}, which overrides the "
                                       f"mirror {tmp_path / 'given'} given by --mirror or params data.mirror "
                                       "(unset ULMFIT_DATA to use that one)\n")
    with pytest.raises(D.DataError, match="env/trec/test.parquet does not exist \\(mirror from ULMFIT_DATA\\)"):
        D.load("trec", "test", tmp_path / "given")
    monkeypatch.delenv("ULMFIT_DATA")
    assert D.mirror_dir(tmp_path / "given") == tmp_path / "given"
