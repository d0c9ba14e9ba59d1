"""Every kind of bad input gets an error that names the item at fault and the fix, and leaves no
partial output behind: the previous output of a failed step stays as it was."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from ulmfit import io, steps
from ulmfit.api import check_texts, load_classifier
from ulmfit.awd_lstm import LanguageModel
from ulmfit.checkpoint import CheckpointError, save_model
from ulmfit.config import ClfConfig, ConfigError, LMConfig, ModelConfig, from_dict
from ulmfit.data import DataError
from ulmfit.precision import check_device

ROOT = Path(__file__).resolve().parents[1]
TINY = ModelConfig(emb_size=8, hidden_size=12)


def mirror(tmp_path, train_texts, train_labels=None, test_texts=("What is it ?",) * 12):
    labels = train_labels if train_labels is not None else [i % 6 for i in range(len(train_texts))]
    for split, texts, y in (("train", train_texts, labels), ("test", test_texts, [i % 6 for i in range(len(test_texts))])):
        path = tmp_path / "mirror" / "trec" / f"{split}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"text": list(texts), "coarse_label": list(y)}), path)
    return tmp_path / "mirror"


def questions(n):
    return [f"What is thing number {i} called in the {['red', 'big', 'old'][i % 3]} book ?" for i in range(n)]


def previous_output(path, step="prepare"):
    path.mkdir(parents=True)
    (path / io.MARKER).write_text(f"{step}\nmarker\n")  # the step, then the names it wrote
    (path / "marker").write_text("previous result")
    return path


def test_empty_documents_are_skipped_and_counted(tmp_path):
    texts = questions(60)
    texts[3], texts[10], texts[20] = "", "   \n\t ", " "
    info = steps.prepare("trec", tmp_path / "out", mirror(tmp_path, texts), min_freq=1)
    assert info["skipped_empty"]["train"] == 3
    assert info["train"]["docs"] + info["valid"]["docs"] == 57


def test_a_split_with_only_empty_documents_is_an_error_and_keeps_the_previous_output(tmp_path):
    out = previous_output(tmp_path / "out")
    with pytest.raises(DataError, match="trec/train: every document is empty or whitespace-only"):
        steps.prepare("trec", out, mirror(tmp_path, ["", "  "] * 6))
    assert (out / "marker").read_text() == "previous result" and sorted(os.listdir(out)) == [io.MARKER, "marker"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["mirror", "out"]  # no temporary directory left


def test_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "mirror" / "trec" / "train.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"text": pa.array([b"ok", b"caf\xe9 au lait"], pa.binary()), "coarse_label": [0, 1]}), path)
    out = previous_output(tmp_path / "out")
    with pytest.raises(DataError, match="row 1 of column 'text' is not valid UTF-8.*re-encode"):
        steps.prepare("trec", out, tmp_path / "mirror")
    assert sorted(os.listdir(out)) == [io.MARKER, "marker"]


def test_a_single_5_mb_document(tmp_path):
    texts = questions(60)
    texts[0] = "The film was good . " * 262_144  # 5 MB
    start = time.time()
    info = steps.prepare("trec", tmp_path / "out", mirror(tmp_path, texts), min_freq=1)
    assert time.time() - start < 120
    assert info["train"]["tokens"] + info["valid"]["tokens"] > 1_000_000


def test_labels_missing_or_outside_the_classes(tmp_path):
    with pytest.raises(DataError, match="row 2 has label 9, outside the declared classes 0..5"):
        steps.prepare("trec", tmp_path / "out", mirror(tmp_path, questions(12), [0, 1, 9] + [0] * 9))


def test_unknown_dataset_or_split():
    with pytest.raises(DataError, match="unknown dataset 'trek'; known datasets: imdb, trec"):
        steps.prepare("trek", "unused")
    from ulmfit.data import load
    with pytest.raises(DataError, match="no split 'dev'"):
        load("imdb", "dev")


def test_mirror_file_missing_truncated_or_wrong_columns(tmp_path, hf_offline):
    root = mirror(tmp_path, questions(30))
    (root / "trec" / "test.parquet").unlink()
    with pytest.raises(DataError, match=r"mirror file .*trec/test.parquet does not exist, and offline mode finds no"):
        steps.prepare("trec", tmp_path / "out", root)
    pq.write_table(pa.table({"question": ["a"], "coarse_label": [0]}), root / "trec" / "test.parquet")
    with pytest.raises(DataError, match="lacks column\\(s\\) text"):
        steps.prepare("trec", tmp_path / "out", root)
    data = (root / "trec" / "train.parquet").read_bytes()
    (root / "trec" / "train.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="damaged or truncated: copy it again"):
        steps.prepare("trec", tmp_path / "out", root)
    assert not (tmp_path / "out").exists()


def test_unknown_or_misspelt_params_keys_list_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown key\\(s\\) 'epoch'; valid keys are: epochs, batch_size"):
        from_dict(ClfConfig, {"epoch": 3})
    from common import load_params

    params = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    params["clf"]["lerning_rate"] = 0.1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match="'lerning_rate'.*valid keys are: epochs"):
        load_params(tmp_path / "params.yaml")
    params["clf"].pop("lerning_rate")
    params["trec"]["prepare"]["max_trian"] = 5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match="trec.prepare: unknown key\\(s\\) 'max_trian'; valid keys are: max_vocab"):
        load_params(tmp_path / "params.yaml")
    from ulmfit import cli as ulmfit_cli  # the command line's --set goes through the same check

    args = ulmfit_cli.build_parser().parse_args(["train-clf", "--data", "d", "--out", "o", "--set", "epoch=3"])
    with pytest.raises(ConfigError, match="^unknown key\\(s\\) 'epoch'; valid keys are: batch_size, beta1, beta2, body_lr"):
        ulmfit_cli.configs(args, ClfConfig)


@pytest.mark.parametrize("cls,key,value", [(ModelConfig, "hidden_size", 0), (LMConfig, "epochs", -1),
                                           (ClfConfig, "batch_size", 0), (LMConfig, "lr", 0.0),
                                           (ClfConfig, "lr", -0.01), (ModelConfig, "output_p", 1.5)])
def test_zero_or_negative_sizes_epochs_batches_and_rates(cls, key, value):
    with pytest.raises(ConfigError, match=f"{key} must"):
        from_dict(cls, {key: value})


def test_checkpoint_whose_vocabulary_or_architecture_does_not_match(tmp_path):
    data = tmp_path / "data"
    steps.prepare("trec", data, mirror(tmp_path, questions(60)), min_freq=1)
    vocab = json.loads((data / "vocab.json").read_text())
    save_model(tmp_path / "lm_other_vocab", LanguageModel(len(vocab), TINY), vocab[:-1] + ["zzz"], meta={"direction": "fwd"})
    out = previous_output(tmp_path / "clf", "train-clf")
    with pytest.raises(CheckpointError, match=f"vocabulary of {len(vocab)} tokens that differs.*first difference at id {len(vocab) - 1}"):
        steps.train_clf(data, out, ClfConfig(epochs=1), tmp_path / "lm_other_vocab")
    lm = LanguageModel(len(vocab), TINY)
    save_model(tmp_path / "lm_bad_arch", lm, vocab, meta={"direction": "fwd"})
    obj = torch.load(tmp_path / "lm_bad_arch" / "model.pt", weights_only=False)
    obj["model_config"]["hidden_size"] = 16  # the weights say 12
    torch.save(obj, tmp_path / "lm_bad_arch" / "model.pt")
    with pytest.raises(CheckpointError, match="does not fit the model being built: shape mismatch .*weight_hh_l0_raw"):
        steps.train_clf(data, out, ClfConfig(epochs=1), tmp_path / "lm_bad_arch")
    assert sorted(os.listdir(out)) == [io.MARKER, "marker"]


def test_label_budget_larger_than_a_class_has(tmp_path):
    data = tmp_path / "data"
    labels = [0] * 30 + [1] * 30 + [2, 3, 4, 5] * 10  # 10% held out: 9 of each of the last four classes remain
    steps.prepare("trec", data, mirror(tmp_path, questions(len(labels)), labels), min_freq=1)
    with pytest.raises(DataError, match="budget 60 needs 10 examples of class 'DESC' but only 9 are available; "
                                        "use a budget of at most 56"):
        steps.train_clf(data, tmp_path / "clf", ClfConfig(epochs=1), None, TINY, budget=60, balanced=True)


def test_no_room_on_disk_for_a_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    target.write_bytes(b"previous checkpoint")

    def full_disk(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(io.OutputError, match="no space left on the device writing .*model.pt.*previous version is kept"):
        io.save_torch(target, {"weights": 1})
    assert target.read_bytes() == b"previous checkpoint"
    assert os.listdir(tmp_path) == ["model.pt"]  # no temporary file left


def test_offline_with_no_local_data_fails_fast_naming_the_mirror(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="0", HF_ENDPOINT="https://huggingface.invalid", ULMFIT_DATA="")
    start = time.time()
    result = subprocess.run([sys.executable, "-m", "ulmfit.cli", "prepare", "--dataset", "imdb", "--out",
                             str(tmp_path / "out"), "--mirror", str(tmp_path / "nowhere")],
                            capture_output=True, text=True, env=env, timeout=60)
    assert time.time() - start < 10
    assert result.returncode == 2
    assert "imdb/train" in result.stderr and "nowhere/imdb/train.parquet does not exist" in result.stderr
    assert "ULMFIT_DATA" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def cli(*args, stdin=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), ULMFIT_DATA="")
    return subprocess.run([sys.executable, "-m", "ulmfit.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, input=stdin, timeout=120)


def one_line_error(result, *words):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_out_holding_the_inputs_or_other_files_is_refused_and_nothing_is_deleted(tmp_path):
    work = tmp_path / "W2"
    data = work / "trec"
    steps.prepare("trec", data, mirror(tmp_path, questions(60)), min_freq=1)
    with pytest.raises(io.OutputError, match=f"output folder {work} holds this step's input .*nothing was deleted.*"
                                             f"new folder, e.g. {work / 'train-clf'}"):
        steps.train_clf(data, work, ClfConfig(epochs=1), None, TINY)
    with pytest.raises(io.OutputError, match="holds this step's input"):
        steps.train_clf(data, data, ClfConfig(epochs=1), None, TINY)
    assert (data / "train.npz").exists() and (data / "info.json").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    result = cli("prepare", "--dataset", "trec", "--out", tmp_path / "mine", "--mirror", tmp_path / "mirror")
    one_line_error(result, f"error: the output folder {tmp_path / 'mine'} holds notes.txt, which prepare did not write; "
                           "nothing was deleted. Move those out or choose a new or empty folder")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine" and (data / "train.npz").exists()
    one_line_error(cli("prepare", "--dataset", "trec", "--out", tmp_path, "--mirror", tmp_path / "mirror"),
                   f"the output folder {tmp_path} holds this step's input {tmp_path / 'mirror'}")
    with pytest.raises(io.OutputError, match="holds info.json, .*which train-clf did not write"):  # a prepare output
        io.check_output(data, "train-clf", steps.MODEL_LAYOUT)


def test_a_step_replaces_only_what_it_wrote_itself(tmp_path):
    root = mirror(tmp_path, questions(60))
    out = tmp_path / "out"
    steps.prepare("trec", out, root, min_freq=1)
    written = sorted(os.listdir(out))
    assert (out / io.MARKER).read_text().split() == ["prepare", *sorted(set(written) - {io.MARKER})]
    (out / "notes.txt").write_text("mine")  # a user's file and folder inside an earlier output
    (out / "plots").mkdir()
    with pytest.raises(io.OutputError, match="holds notes.txt, plots, which prepare did not write; nothing was deleted"):
        steps.prepare("trec", out, root, min_freq=1)
    assert (out / "notes.txt").read_text() == "mine" and sorted(os.listdir(out)) == sorted(written + ["notes.txt", "plots"])
    (out / "notes.txt").unlink()
    (out / "plots").rmdir()
    (tmp_path / ".out.old").mkdir()  # a user's folder named like the backup older code made
    (tmp_path / ".out.old" / "keep").write_text("mine")
    steps.prepare("trec", out, root, min_freq=1)  # only its own files: replaced as a whole
    assert (tmp_path / ".out.old" / "keep").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.old", "mirror", "out"]  # no backup or temporary left
    (out / io.MARKER).unlink()  # files that fit the layout but carry no marker: nobody can say who wrote them
    with pytest.raises(io.OutputError, match="which prepare did not write"):
        steps.prepare("trec", out, root, min_freq=1)
    legacy = tmp_path / "clf"  # older code's marker names the step only: its layout's files count as its own
    (legacy / "dvclive").mkdir(parents=True)
    (legacy / "metrics.json").write_text("{}")
    (legacy / "model.pt").write_text("")
    (legacy / io.MARKER).write_text("train-clf\n")
    assert io.foreign(legacy, "train-clf", steps.MODEL_LAYOUT) == []
    (legacy / "notes.txt").write_text("mine")  # anything else is someone else's
    assert io.foreign(legacy, "train-clf", steps.MODEL_LAYOUT) == ["notes.txt"]
    assert io.foreign(tmp_path / "mirror", "prepare", steps.PREPARED_LAYOUT) == ["trec"]
    assert io.foreign(tmp_path / "missing", "prepare") == []


def test_outputs_have_the_modes_a_plain_mkdir_and_open_give_under_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        steps.prepare("trec", tmp_path / "out", mirror(tmp_path, questions(60)), min_freq=1)
        io.write_json(tmp_path / "result.json", {})
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "out").st_mode & 0o777 == 0o755
    for name in ("vocab.json", "info.json", "train.npz"):
        assert os.stat(tmp_path / "out" / name).st_mode & 0o777 == 0o644, name
    assert os.stat(tmp_path / "result.json").st_mode & 0o777 == 0o644


def test_permission_denied_names_the_output_folder_not_the_temporary_one(tmp_path, monkeypatch):
    def denied(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}toiy9h_l{suffix}")

    monkeypatch.setattr(io.tempfile, "mkdtemp", denied)
    with pytest.raises(io.OutputError) as e:
        with io.atomic_dir(tmp_path / "trec", "prepare"):
            pass
    assert str(e.value) == (f"cannot write the output folder {tmp_path / 'trec'}: permission denied in {tmp_path}; "
                            "choose an output folder you can write to or fix its permissions")


def test_a_read_only_output_folder_is_replaced_without_leaving_old_behind(tmp_path, monkeypatch):
    out = tmp_path / "trec"
    with io.atomic_dir(out, "prepare") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.npz").write_text("old")
    os.chmod(out / "sub", 0o500)
    os.chmod(out, 0o500)
    rmtree = io.shutil.rmtree

    def as_non_root(path, *args, **kwargs):  # root ignores permissions; a user cannot empty a read-only folder
        for d in ([path] if os.path.exists(path) else []) + [os.path.join(r, n) for r, ds, _ in os.walk(path) for n in ds]:
            if not os.stat(d).st_mode & 0o200 and os.listdir(d):
                raise PermissionError(errno.EACCES, "Permission denied", d)
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(io.shutil, "rmtree", as_non_root)
    with io.atomic_dir(out, "prepare") as tmp:
        (tmp / "a.npz").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trec"]
    assert (out / "a.npz").read_text() == "new"


def test_a_training_split_with_a_single_class(tmp_path):
    with pytest.raises(DataError, match="trec/train: only class ABBR has examples \\(300 rows\\); a classifier needs "
                                        "examples of at least two classes"):
        steps.prepare("trec", tmp_path / "out", mirror(tmp_path, questions(300), [0] * 300), min_freq=1)
    data = tmp_path / "data"  # prepared by older code, which let a single class through
    steps.prepare("trec", data, mirror(tmp_path, questions(60)), min_freq=1)
    train = steps.load_prepared(data, "train")
    train.subset(np.nonzero(train.labels == 1)[0]).save(data / "train.npz")
    with pytest.raises(DataError, match="train.npz: only class ENTY has examples"):
        steps.train_clf(data, tmp_path / "clf", ClfConfig(epochs=1), None, TINY)


def test_a_budget_suggestion_that_works(tmp_path):
    data = tmp_path / "data"
    steps.prepare("trec", data, mirror(tmp_path, questions(300), [0] * 250 + [1] * 50), min_freq=1)
    with pytest.raises(DataError, match="budget 60 needs 10 examples of class 'DESC' but only 0 are available; "
                                        "use a budget of at most 2 or sample in proportion"):
        steps.train_clf(data, tmp_path / "clf", ClfConfig(epochs=1), None, TINY, budget=60)
    train = steps.load_prepared(data, "train")
    assert len(steps.D.stratified_sample(train.labels, 2, 0, True, range(6))) == 2


def test_predict_refuses_empty_text(tmp_path):
    one_line_error(cli("predict", "--model", tmp_path / "clf", ""), "error: text 1 is empty or whitespace-only")
    for texts in (["What is it ?", "  "], []):
        with pytest.raises(DataError, match="is empty or whitespace-only|no text to classify"):
            check_texts(texts)


@pytest.mark.parametrize("key,value,must", [("valid_frac", -0.5, "a fraction between 0 and 1"),
                                            ("valid_frac", 1.5, "a fraction between 0 and 1"),
                                            ("max_vocab", 0, "a whole number above 9"),
                                            ("max_train", -2000, "a whole number >= 0"),
                                            ("max_train", "abc", "a whole number >= 0")])
def test_prepare_options_out_of_range_name_the_key(tmp_path, key, value, must):
    with pytest.raises(ConfigError, match=f"prepare: {key} must be {must}.*got {value!r}"):
        steps.prepare("trec", tmp_path / "out", mirror(tmp_path, questions(12)), **{key: value})
    assert not (tmp_path / "out").exists()


def test_cli_config_mistakes_get_one_line(tmp_path):
    one_line_error(cli("prepare", "--dataset", "trec", "--out", tmp_path / "out", "--set", "bogus=1"),
                   "unknown option 'bogus'; valid options are: valid_frac")
    from ulmfit import cli as ulmfit_cli

    assert ulmfit_cli.parse_sets(["lr=1e-3", "epochs=2"]) == {"lr": 0.001, "epochs": 2}
    assert from_dict(ClfConfig, {"lr": "1e-3"}).lr == 0.001
    monkey = pytest.MonkeyPatch()
    monkey.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device cuda: CUDA is not available on this machine; use cpu"):
        check_device("cuda")
    monkey.undo()
    for device in ("mps", "nonsense", "CPU"):  # one line, exit 2, not a traceback
        one_line_error(cli("evaluate", "--data", tmp_path, "--model", tmp_path, "--out", tmp_path / "e.json", "--device",
                           device), f"device '{device}' is not one this suite runs on; use cpu or cuda")


def test_predict_or_evaluate_on_a_language_model_folder(tmp_path):
    data = tmp_path / "data"
    steps.prepare("trec", data, mirror(tmp_path, questions(60)), min_freq=1)
    vocab = json.loads((data / "vocab.json").read_text())
    save_model(tmp_path / "lm", LanguageModel(len(vocab), TINY), vocab, meta={"direction": "fwd"})
    message = "lm holds a language model, not a classifier; pass a folder written by train-clf"
    with pytest.raises(CheckpointError, match=message):
        load_classifier(tmp_path / "lm", "cpu")
    with pytest.raises(CheckpointError, match=message):
        steps.evaluate(data, {"m": tmp_path / "lm"}, tmp_path / "eval.json", "cpu")


@pytest.mark.parametrize("change,message", [
    (lambda p: "seeds: [0\n", "is not valid YAML"),
    (lambda p: p.update(seeds=[]), "seeds must list whole numbers >= 0"),
    (lambda p: p.update(datasets=[]), "datasets must list at least one dataset"),
    (lambda p: p["trec"].update(budget=-5), "trec.budget .* must be a whole number"),
    (lambda p: p["clf"].update(max_len=0), "clf.*max_len must be > 0"),
    (lambda p: p["trec"]["prepare"].update(max_train=-2000), "trec.prepare: max_train must be a whole number >= 0"),
])
def test_params_mistakes_name_the_key(tmp_path, change, message):
    from common import load_params

    params = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    text = change(params)
    (tmp_path / "params.yaml").write_text(text if isinstance(text, str) else yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=message):
        load_params(tmp_path / "params.yaml")


def test_stage_scripts_print_one_line_and_exit_2(tmp_path):
    (tmp_path / "params.yaml").write_text("seeds: [0\n")
    env = dict(os.environ, ULMFIT_PARAMS=str(tmp_path / "params.yaml"), PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", "import sys; sys.argv = ['prepare.py']; import common; "
                             "common.load_params()"], cwd=ROOT / "experiments", capture_output=True, text=True, env=env)
    one_line_error(result, f"prepare.py: error: {tmp_path / 'params.yaml'} is not valid YAML", "fix the syntax")


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_during_tokenisation_stops_within_2_s(tmp_path, signum, code):
    root = mirror(tmp_path, [" ".join(questions(8))] * 100_000)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT), ULMFIT_DATA="")
    proc = subprocess.Popen([sys.executable, "-m", "ulmfit.cli", "prepare", "--dataset", "trec", "--out", str(out),
                             "--mirror", str(root), "--set", "workers=2"], stderr=subprocess.PIPE, text=True, env=env)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    while proc.poll() is None and len(children.read_text().split()) < 2:  # until the pool's workers run
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None
    proc.send_signal(signum)
    start = time.time()
    try:
        proc.wait(timeout=5)
    finally:
        proc.kill()
    assert time.time() - start < 2
    stderr = proc.stderr.read()
    assert proc.returncode == code and "Traceback" not in stderr and "interrupted" in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror"]  # no output, no temporary folder


def test_the_next_run_removes_the_temporary_folder_of_a_killed_run(tmp_path):
    out = tmp_path / "out"
    killed = tmp_path / ".out.k1ll3d_x.tmp"
    killed.mkdir()
    (killed / io.MARKER).write_text("prepare\n")
    (killed / "train.npz").write_text("half written")
    other = tmp_path / ".out.0th3r_st.tmp"  # not written by this step: left alone
    other.mkdir()
    with io.atomic_dir(out, "prepare") as tmp:
        (tmp / "info.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.0th3r_st.tmp", "out"]


def test_stage_scripts_exit_130_or_143_when_interrupted(tmp_path):
    for signum, code in (("SIGINT", 130), ("SIGTERM", 143)):
        result = subprocess.run([sys.executable, "-c", "import os, signal, sys, time; sys.argv = ['train_clf.py']; "
                                 f"import common; os.kill(os.getpid(), signal.{signum}); time.sleep(5)"],
                                cwd=ROOT / "experiments", capture_output=True, text=True, timeout=60,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert result.returncode == code and "Traceback" not in result.stderr
        assert result.stderr == "train_clf.py: interrupted; the stage's outputs were not changed\n"


def test_version_is_the_installed_package_version(capsys):
    from importlib.metadata import version

    from ulmfit.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"ulmfit {version('ulmfit')}"


def test_evaluate_writes_a_new_file_or_its_own_earlier_result_and_refuses_anything_else(tmp_path):
    data = tmp_path / "data"
    steps.prepare("trec", data, mirror(tmp_path, questions(60)), min_freq=1)
    steps.train_clf(data, tmp_path / "clf", ClfConfig(epochs=1, batch_size=8), None, TINY)
    (tmp_path / "notes.md").write_text("mine")
    for target in (tmp_path / "clf" / "model.pt", data / "info.json", data / "vocab.json", tmp_path / "notes.md"):
        before = target.read_bytes()
        result = cli("evaluate", "--data", data, "--model", tmp_path / "clf", "--out", target)
        one_line_error(result, f"error: {target} exists and is not an earlier result of evaluate; nothing was written")
        assert target.read_bytes() == before
    out = tmp_path / "test.json"
    for _ in range(2):  # a new file, then its own earlier result replaced
        assert cli("evaluate", "--data", data, "--model", tmp_path / "clf", "--out", out).returncode == 0
        assert json.loads(out.read_text())["step"] == "evaluate"


def test_params_files_with_a_duplicate_key_bad_yaml_bad_seeds_or_an_unknown_section(tmp_path):
    from common import load_params

    good = (ROOT / "profiles" / "tiny.yaml").read_text()
    cases = {"key 'epochs' is given twice": good.replace("clf:\n", "clf:\n  epochs: 1\n  epochs: 2\n", 1),
             "is not valid YAML": good + "clf: [unclosed\n",
             "seeds must list whole numbers >= 0": good.replace("seeds: [", "seeds: [a, ", 1)}
    for message, text in cases.items():
        (tmp_path / "params.yaml").write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_params(tmp_path / "params.yaml")
        if "seeds" not in message:
            one_line_error(cli("train-clf", "--data", tmp_path, "--out", tmp_path / "o", "--params", tmp_path / "params.yaml",
                               "--section", "clf"), message)
    (tmp_path / "params.yaml").write_text(good)
    one_line_error(cli("train-clf", "--data", tmp_path, "--out", tmp_path / "o", "--params", tmp_path / "params.yaml",
                       "--section", "nosuch"), "has no section 'nosuch'; its sections are: ")
    with pytest.raises(ConfigError, match="cannot read the params file"):
        load_params(tmp_path / "missing.yaml")


def test_a_dataset_too_small_for_its_splits_and_out_dot_are_named(tmp_path, monkeypatch):
    for n in (2, 5):
        with pytest.raises(DataError, match="has no documents: the data is too small to carve it out"):
            steps.prepare("trec", tmp_path / f"out{n}", mirror(tmp_path / str(n), questions(n)), min_freq=1)
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    with pytest.raises(io.OutputError, match=f"the output folder {work} holds notes.txt, which prepare did not write"):
        steps.prepare("trec", ".", mirror(tmp_path / "m", questions(60)), min_freq=1)


def test_a_full_disk_inside_torch_save_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io.save_torch(tmp_path / "state.pt", {"step": 1})

    def full(obj, f):  # what torch.save raises when the disk fills up under it
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 4096 vs 2048")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(io.OutputError, match=f"no space left on the device writing {tmp_path / 'state.pt'}"):
        io.save_torch(tmp_path / "state.pt", {"step": 2})
    monkeypatch.undo()
    assert torch.load(tmp_path / "state.pt") == {"step": 1} and sorted(os.listdir(tmp_path)) == ["state.pt"]


def test_mismatched_vocabularies_and_incomplete_files_are_named(tmp_path):
    data = tmp_path / "data"
    steps.prepare("trec", data, mirror(tmp_path, questions(60)), min_freq=1)
    good = json.loads((data / "vocab.json").read_text())
    other = good[:9] + good[9:][::-1]  # another valid vocabulary of the same size
    (data / "vocab.json").write_text(json.dumps(other))
    for args in (["finetune-lm", "--data", data, "--out", tmp_path / "lm", "--set", "epochs=1", "emb_size=8",
                  "hidden_size=12"],
                 ["train-clf", "--data", data, "--out", tmp_path / "clf", "--set", "epochs=1", "emb_size=8",
                  "hidden_size=12"]):
        one_line_error(cli(*args), f"{data / 'vocab.json'} ({len(other)} tokens) is not the vocabulary the documents of "
                                   f"{data} were made with")
    (data / "vocab.json").write_text(json.dumps(good[:12]))  # smaller than the documents' ids
    info = json.loads((data / "info.json").read_text())
    del info["vocab"]  # as older code wrote it: the ids are checked against the vocabulary's size
    (data / "info.json").write_text(json.dumps(info))
    one_line_error(cli("train-clf", "--data", data, "--out", tmp_path / "clf", "--set", "epochs=1"),
                   "holds token id", "beyond the 12 tokens of", str(data / "vocab.json"))
    (data / "vocab.json").write_text(json.dumps(good))
    del info["classes"]
    (data / "info.json").write_text(json.dumps(info))
    one_line_error(cli("train-clf", "--data", data, "--out", tmp_path / "clf", "--set", "epochs=1"),
                   f"{data / 'info.json'} has no list of classes")
    (data / "info.json").write_text(json.dumps({**info, "classes": ["a", "b", "c", "d", "e", "f"]}))
    model = tmp_path / "lm"
    save_model(model, LanguageModel(len(good), TINY), good, meta={"direction": "fwd"})
    obj = torch.load(model / "model.pt", weights_only=False)
    del obj["model_config"]
    torch.save(obj, model / "model.pt")
    with pytest.raises(CheckpointError, match=f"{model / 'model.pt'} is damaged: it lacks model_config"):
        steps.train_clf(data, tmp_path / "clf", ClfConfig(epochs=1), model)


def test_a_stage_script_without_its_prepared_folder_is_one_line(tmp_path):
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")  # a project root with nothing prepared
    result = subprocess.run([sys.executable, str(tmp_path / "experiments" / "train_clf.py"), "trec", "ulmfit"],
                            capture_output=True, text=True, env=dict(os.environ, ULMFIT_PARAMS=str(ROOT / "profiles" / "tiny.yaml")))
    one_line_error(result, f"{tmp_path / 'data' / 'prepared' / 'trec'} does not exist; run the prepare step for trec first")
