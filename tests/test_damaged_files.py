"""Every file of a prepared dataset folder and of a model folder, in turn truncated, emptied and filled with random
bytes: every step that reads it (finetune-lm, train-clf, evaluate, predict, the Python API) stops with exit code 2 and
one line that names that file, and no input changes."""

import hashlib

import numpy as np
import pytest
from test_bad_input import mirror, questions

from ulmfit import load_classifier
from ulmfit.cli import main

SMALL = ["emb_size=8", "hidden_size=12", "epochs=1", "batch_size=8", "bptt=10"]
DAMAGE = {"truncated": lambda b: b[: len(b) // 2], "emptied": lambda b: b"",
          "random bytes": lambda b: np.random.default_rng(0).integers(0, 256, max(len(b), 64), dtype=np.uint8).tobytes()}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    data, lm, clf = root / "data", root / "lm", root / "clf"
    assert main(["prepare", "--dataset", "trec", "--out", str(data), "--mirror", str(mirror(root, questions(80))),
                 "--set", "min_freq=1"]) == 0
    assert main(["finetune-lm", "--data", str(data), "--out", str(lm), "--set", *SMALL]) == 0
    assert main(["train-clf", "--data", str(data), "--lm", str(lm), "--out", str(clf), "--set", *SMALL, "max_len=20"]) == 0
    return root, data, lm, clf


def readers(root, data, lm, clf, name):
    """Each step that reads the file `name` of a folder, as a CLI call writing to a new output."""
    finetune = ["finetune-lm", "--data", data, "--out", root / "new_lm", "--set", *SMALL]
    train = ["train-clf", "--data", data, "--lm", lm, "--out", root / "new_clf", "--set", *SMALL, "max_len=20"]
    evaluate = ["evaluate", "--data", data, "--model", clf, "--out", root / "new.json"]
    predict = ["predict", "--model", clf, "What is it ?"]
    return {"info.json": [finetune, train, evaluate], "vocab.json": [finetune, train, evaluate],
            "train.npz": [finetune, train], "valid.npz": [finetune, train], "test.npz": [evaluate],
            "lm/model.pt": [train], "clf/model.pt": [evaluate, predict]}[name]


def checksums(*folders):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


CASES = [("data", name) for name in ("info.json", "vocab.json", "train.npz", "valid.npz", "test.npz")] + \
        [("lm", "model.pt"), ("clf", "model.pt")]


@pytest.mark.parametrize("folder, name", CASES)
def test_a_damaged_file_stops_every_step_that_reads_it_with_one_line_naming_it(folders, capsys, folder, name):
    root, data, lm, clf = folders
    path = {"data": data, "lm": lm, "clf": clf}[folder] / name
    good = path.read_bytes()
    try:
        for how, damage in DAMAGE.items():
            path.write_bytes(damage(good))
            before = checksums(data, lm, clf)
            for args in readers(root, data, lm, clf, name if folder == "data" else f"{folder}/{name}"):
                capsys.readouterr()
                code = main(list(map(str, args)))
                lines = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
                assert code == 2 and len(lines) == 1 and str(path) in lines[0], (how, args[0], lines)
                assert not any((root / new).exists() for new in ("new_lm", "new_clf", "new.json"))
            assert checksums(data, lm, clf) == before, (how, name)
            if folder == "clf":
                with pytest.raises(ValueError, match=str(path)):
                    load_classifier(clf, "cpu").predict(["What is it ?"])
    finally:
        path.write_bytes(good)
