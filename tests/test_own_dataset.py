"""A user's own .csv or .parquet file with a text and a label column is a dataset like the built-in ones:
through the step function, the command line and a params entry."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ulmfit import load_classifier, steps
from ulmfit.config import ClfConfig, ConfigError, ModelConfig
from ulmfit.data import DataError

ROOT = Path(__file__).resolve().parents[1]
WORDS = {"neg": "awful dull boring", "pos": "great fun lovely"}


def reviews(n, start=0):
    """n reviews whose words give away their sentiment, alternating neg and pos."""
    rows = [("neg", "pos")[i % 2] for i in range(start, start + n)]
    return pd.DataFrame({"id": range(start, start + n), "review": [f"A {WORDS[s]} film number {i} ." for i, s in
                                                                   zip(range(start, start + n), rows)],
                         "sentiment": rows})


def decoded(out, split):
    """(text, class name) of each prepared document of a split."""
    vocab, info = json.loads((out / "vocab.json").read_text()), json.loads((out / "info.json").read_text())
    docs = steps.load_prepared(out, split)
    return [(" ".join(vocab[t] for t in docs[i]), info["classes"][docs.labels[i]]) for i in range(len(docs))]


def test_a_csv_file_is_a_dataset_with_sorted_class_names(tmp_path):
    reviews(40).to_csv(tmp_path / "mine.csv", index=False)
    info = steps.prepare("mine", tmp_path / "out", file=tmp_path / "mine.csv", text_column="review",
                         label_column="sentiment", min_freq=1)
    assert info["dataset"] == "mine" and info["classes"] == ["neg", "pos"]
    assert info["source"] == {"train": str(tmp_path / "mine.csv"), "text_column": "review", "label_column": "sentiment"}
    assert info["train"]["docs"] + info["valid"]["docs"] + info["test"]["docs"] == 40
    assert info["test"]["per_class"] == [2, 2] and "re-partitioned" in info["repartitioned"]  # carved like valid
    for split in ("train", "valid", "test"):
        for text, label in decoded(tmp_path / "out", split):
            assert WORDS[label] in text


def test_a_classifier_trained_on_it_predicts_its_class_names(tmp_path):
    reviews(40).to_csv(tmp_path / "mine.csv", index=False)
    steps.prepare("mine", tmp_path / "data", file=tmp_path / "mine.csv", text_column="review",
                  label_column="sentiment", min_freq=1)
    steps.train_clf(tmp_path / "data", tmp_path / "clf", ClfConfig(epochs=1, batch_size=8), None,
                    ModelConfig(emb_size=8, hidden_size=12), device="cpu")
    predictions = load_classifier(tmp_path / "clf", "cpu").predict(["A great film .", "A dull film ."])
    assert len(predictions) == 2 and {label for label, _ in predictions} <= {"neg", "pos"}


def test_a_parquet_file_with_whole_number_labels_and_a_test_file(tmp_path):
    train = pd.DataFrame({"text": [f"review {i} with {i % 3} stars" for i in range(30)], "label": [1 + i % 3 for i in range(30)]})
    pq.write_table(pa.Table.from_pandas(train, preserve_index=False), tmp_path / "train.parquet")
    pq.write_table(pa.table({"text": ["one more with 2 stars", "and 0 stars"], "label": [3, 1]}), tmp_path / "test.parquet")
    info = steps.prepare("stars", tmp_path / "out", file=str(tmp_path / "train.parquet"),
                         test_file=str(tmp_path / "test.parquet"), min_freq=1)
    assert info["classes"] == ["1", "2", "3"] and "repartitioned" not in info
    assert [(text.split()[-2], label) for text, label in decoded(tmp_path / "out", "test")] == [("2", "3"), ("0", "1")]
    assert all(text.endswith(f"{int(label) - 1} stars") for text, label in decoded(tmp_path / "out", "train"))


def test_same_file_same_prepared_data(tmp_path):
    reviews(40).to_csv(tmp_path / "mine.csv", index=False)
    for out in ("a", "b"):
        steps.prepare("mine", tmp_path / out, file=tmp_path / "mine.csv", text_column="review",
                      label_column="sentiment", min_freq=1)
    for name in ("train.npz", "valid.npz", "test.npz", "vocab.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize("make,options,message", [
    (None, {}, "missing.csv does not exist; check the dataset's file path"),
    (lambda p: reviews(10).to_csv(p, index=False), {"text_column": "body"},
     "lacks column(s) body (it has: id, review, sentiment); name the text and label columns with --text-column"),
    (lambda p: reviews(10).assign(sentiment="pos").to_csv(p, index=False), {"text_column": "review"},
     "column 'sentiment' holds 1 class(es) (pos); a classifier needs examples of at least two classes"),
    (lambda p: p.write_text("review,sentiment\ngood,pos\nbad,\n"), {"text_column": "review"},
     "row 1 of column 'sentiment' has no label; fill it in or drop that row"),
    (lambda p: p.write_text("review,sentiment\ngood,1\nbad,0.5\n"), {"text_column": "review"},
     "row 1 of column 'sentiment' has label 0.5; a label must be a class name or a whole number"),
    (lambda p: p.write_bytes(b"review,sentiment\ngood,pos\ncaf\xe9,neg\n"), {"text_column": "review"},
     "as CSV ('utf-8' codec can't decode byte 0xe9"),
])
def test_file_mistakes_name_the_problem(tmp_path, make, options, message):
    path = tmp_path / ("missing.csv" if make is None else "mine.csv")
    if make:
        make(path)
    with pytest.raises(DataError, match=message.replace("(", "\\(").replace(")", "\\)")):
        steps.prepare("mine", tmp_path / "out", file=path, **{"label_column": "sentiment", **options})
    assert not (tmp_path / "out").exists()


def test_unsupported_type_and_columns_without_a_file(tmp_path):
    (tmp_path / "mine.txt").write_text("good\n")
    with pytest.raises(DataError, match="unsupported file type '.txt'; a dataset file must be .csv or .parquet"):
        steps.prepare("mine", tmp_path / "out", file=tmp_path / "mine.txt")
    with pytest.raises(ConfigError, match="text_column describe a dataset read from a file; set file too"):
        steps.prepare("trec", tmp_path / "out", text_column="question")


def cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), ULMFIT_DATA="")
    return subprocess.run([sys.executable, "-m", "ulmfit.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_the_command_line_takes_a_file_and_its_columns(tmp_path):
    reviews(40).to_csv(tmp_path / "mine.csv", index=False)
    result = cli("prepare", "--dataset", tmp_path / "mine.csv", "--text-column", "review", "--label-column",
                 "sentiment", "--out", tmp_path / "out", "--set", "min_freq=1")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out" / "info.json").read_text())["classes"] == ["neg", "pos"]
    for args, message in ((["--dataset", tmp_path / "nope.csv"], "nope.csv does not exist"),
                          (["--dataset", tmp_path / "mine.csv", "--text-column", "body"],
                           "lacks column(s) body, label (it has: id, review, sentiment)"),
                          (["--dataset", tmp_path / "mine.xlsx"], "unsupported file type '.xlsx'")):
        result = cli("prepare", *args, "--out", tmp_path / "bad")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr


def test_a_params_entry_names_the_file(tmp_path):
    from common import load_params

    params = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    params["datasets"] = params["datasets"] + ["mine"]
    params["mine"] = {"prepare": {"file": "data/mine.csv", "text_column": "review", "label_column": "sentiment"},
                      "budget": 0, "balanced": True, "finetune_lm": {}, "clf": {}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert load_params(tmp_path / "params.yaml")["mine"]["prepare"]["file"] == "data/mine.csv"
    params["mine"]["prepare"]["text_colum"] = "review"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match="mine.prepare: unknown key\\(s\\) 'text_colum'"):
        load_params(tmp_path / "params.yaml")
    params["mine"]["prepare"] = {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match="unknown dataset 'mine'.*give mine.prepare a file, text_column and label_column"):
        load_params(tmp_path / "params.yaml")


def test_labels_are_stripped_and_a_test_class_without_training_examples_or_mixed_kinds_are_refused(tmp_path):
    train = reviews(40)
    train.loc[train.sentiment == "pos", "sentiment"] = [" pos", "pos "] * 10  # one class, spaces aside
    train.to_csv(tmp_path / "mine.csv", index=False)
    spec = steps.D.file_dataset("mine", tmp_path / "mine.csv", "review", "sentiment")
    assert spec.classes == ("neg", "pos")
    test = reviews(10, start=40)
    test.loc[0, "sentiment"] = "meh"
    test.to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(DataError, match=f"{tmp_path / 'test.csv'}: class\\(es\\) 'meh' of column 'sentiment' have no "
                                        f"example in {tmp_path / 'mine.csv'}"):
        steps.D.file_dataset("mine", tmp_path / "mine.csv", "review", "sentiment", tmp_path / "test.csv")
    test["sentiment"] = [i % 2 for i in range(10)]  # numbers in the test file, names in the training file
    test.to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(DataError, match=f"mixes class names and numbers \\({tmp_path / 'mine.csv'} has class names; "
                                        f"{tmp_path / 'test.csv'} has numbers\\)"):
        steps.D.file_dataset("mine", tmp_path / "mine.csv", "review", "sentiment", tmp_path / "test.csv")


def test_a_text_column_of_numbers_is_named(tmp_path):
    pd.DataFrame({"review": list(range(20)), "sentiment": ["neg", "pos"] * 10}).to_parquet(tmp_path / "mine.parquet")
    result = cli("prepare", "--dataset", tmp_path / "mine.parquet", "--text-column", "review", "--label-column",
                 "sentiment", "--out", tmp_path / "out")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "text column 'review' holds int64, not text; name the column of texts with --text-column" in lines[0]
