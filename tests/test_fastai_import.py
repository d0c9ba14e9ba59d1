"""`ulmfit import-fastai`: a synthetic state dict with fastai's exact key names is converted, and
the converted model must reproduce an independent step-by-step AWD-LSTM computation. `ulmfit fetch-fastai`: archives
packed like fastai's are fetched from file:// URLs, checked against a sha256 lock file and imported."""

import hashlib
import json
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
import yaml

from ulmfit import cli
from ulmfit.checkpoint import load_model
from ulmfit.fastai_import import import_fastai, pretrain_import

ROOT = Path(__file__).resolve().parents[1]

VOCAB, EMB, LAYERS = 30, 8, 3
ITOS = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"] + [
    f"w{i}" for i in range(VOCAB - 9)
]


def fastai_state_dict(hidden, seed=0, vocab=VOCAB, emb_size=EMB):
    """Random weights under fastai's key names (SequentialRNN(AWD_LSTM, LinearDecoder))."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=g) - 0.5

    emb = rand(vocab, emb_size)
    sd = {"0.encoder.weight": emb, "0.encoder_dp.emb.weight": emb.clone()}
    sizes = [emb_size] + [hidden] * (LAYERS - 1) + [emb_size]
    for i in range(LAYERS):
        n_in, n_out = sizes[i], sizes[i + 1]
        raw = rand(4 * n_out, n_out)
        sd[f"0.rnns.{i}.weight_hh_l0_raw"] = raw
        sd[f"0.rnns.{i}.module.weight_ih_l0"] = rand(4 * n_out, n_in)
        # the dropped copy: must be ignored (half its entries zeroed, the rest doubled)
        sd[f"0.rnns.{i}.module.weight_hh_l0"] = raw * (torch.rand(raw.shape, generator=g) > 0.5) * 2
        sd[f"0.rnns.{i}.module.bias_ih_l0"] = rand(4 * n_out)
        sd[f"0.rnns.{i}.module.bias_hh_l0"] = rand(4 * n_out)
    sd["1.decoder.weight"] = emb.clone()
    sd["1.decoder.bias"] = rand(vocab)
    return sd


def write_fastai(tmp_path, sd, wrapped=False, itos=ITOS):
    weights, vocab = tmp_path / "lstm_fwd.pth", tmp_path / "itos_wt103.pkl"
    torch.save({"model": sd, "opt": None} if wrapped else sd, weights)
    with open(vocab, "wb") as f:
        pickle.dump(list(itos), f)
    return weights, vocab


def reference_logits(sd, ids):
    """Embedding lookup, each LSTM layer step by step (gates i, f, g, o), then the linear decoder."""
    sd = {k: v.double() for k, v in sd.items()}
    x = sd["0.encoder.weight"][ids]  # [batch, time, emb]
    for i in range(LAYERS):
        w_ih, w_hh = sd[f"0.rnns.{i}.module.weight_ih_l0"], sd[f"0.rnns.{i}.weight_hh_l0_raw"]
        b = sd[f"0.rnns.{i}.module.bias_ih_l0"] + sd[f"0.rnns.{i}.module.bias_hh_l0"]
        h = x.new_zeros(x.size(0), w_hh.size(1))
        c = torch.zeros_like(h)
        outputs = []
        for t in range(x.size(1)):
            gates = x[:, t] @ w_ih.T + h @ w_hh.T + b
            gi, gf, gg, go = gates.chunk(4, dim=1)
            c = torch.sigmoid(gf) * c + torch.sigmoid(gi) * torch.tanh(gg)
            h = torch.sigmoid(go) * torch.tanh(c)
            outputs.append(h)
        x = torch.stack(outputs, dim=1)
    return x @ sd["0.encoder.weight"].T + sd["1.decoder.bias"]


@pytest.mark.parametrize("hidden,wrapped", [(12, False), (12, True), (10, False), (10, True)])
def test_converted_model_matches_reference(tmp_path, hidden, wrapped):
    sd = fastai_state_dict(hidden)
    weights, vocab = write_fastai(tmp_path, sd, wrapped)
    info = import_fastai(weights, vocab, tmp_path / "lm", direction="bwd")
    assert (info["emb_size"], info["hidden_size"], info["n_layers"], info["vocab_size"]) == (EMB, hidden, LAYERS, VOCAB)

    model, obj = load_model(tmp_path / "lm")
    assert obj["kind"] == "lm" and obj["vocab"] == ITOS
    assert obj["meta"] == {"direction": "bwd", "source": "fastai", "weights": str(weights)}
    cfg = model.encoder.cfg
    assert (cfg.emb_size, cfg.hidden_size, cfg.n_layers) == (EMB, hidden, LAYERS)
    assert (cfg.output_p, cfg.hidden_p, cfg.input_p, cfg.embed_p, cfg.weight_p) == (0.4, 0.3, 0.4, 0.05, 0.5)
    assert not model.training

    ids = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(ids)[0]
    expected = reference_logits(sd, ids)
    assert logits.shape == (2, 7, VOCAB)
    torch.testing.assert_close(logits.double(), expected, rtol=1e-5, atol=1e-5)


def test_target_vocab_mapping(tmp_path):
    sd = fastai_state_dict(12)
    weights, vocab = write_fastai(tmp_path, sd)
    target = ITOS[:9] + ["new1", "w5", "w0", "new2", "w20"]
    (tmp_path / "vocab.json").write_text(json.dumps(target))
    info = import_fastai(weights, vocab, tmp_path / "lm", target_vocab=tmp_path / "vocab.json")
    assert (info["vocab_size"], info["shared_tokens"], info["source_vocab_size"]) == (14, 12, VOCAB)

    model, obj = load_model(tmp_path / "lm")
    assert obj["vocab"] == target
    emb, bias = model.encoder.embedding.weight.detach(), model.decoder.bias.detach()
    src_emb, src_bias = sd["0.encoder.weight"], sd["1.decoder.bias"]
    for new_id, tok in enumerate(target):
        if tok in ITOS:
            old_id = ITOS.index(tok)
            assert torch.equal(emb[new_id], src_emb[old_id]) and torch.equal(bias[new_id], src_bias[old_id])
        else:  # new token: fastai's mean rule
            torch.testing.assert_close(emb[new_id], src_emb.mean(0))
            torch.testing.assert_close(bias[new_id], src_bias.mean())
    assert model.decoder.weight is model.encoder.embedding.weight  # still tied
    # the LSTM layers are untouched by the vocabulary mapping
    assert torch.equal(model.encoder.rnns[1].weight_hh_l0_raw.detach(), sd["0.rnns.1.weight_hh_l0_raw"])


def test_missing_and_unexpected_keys_are_named(tmp_path):
    sd = fastai_state_dict(12)
    del sd["0.rnns.1.module.bias_hh_l0"]
    weights, vocab = write_fastai(tmp_path, sd)
    with pytest.raises(ValueError, match=r"missing keys 0\.rnns\.1\.module\.bias_hh_l0"):
        import_fastai(weights, vocab, tmp_path / "lm")

    sd = fastai_state_dict(12)
    sd["0.rnns.0.module.weight_ih_l1"] = torch.zeros(3)
    weights, vocab = write_fastai(tmp_path, sd)
    with pytest.raises(ValueError, match=r"unexpected keys 0\.rnns\.0\.module\.weight_ih_l1"):
        import_fastai(weights, vocab, tmp_path / "lm")

    sd = fastai_state_dict(12)
    sd["0.rnns.1.module.weight_ih_l0"] = torch.zeros(48, 11)
    weights, vocab = write_fastai(tmp_path, sd)
    with pytest.raises(ValueError, match=r"0\.rnns\.1\.module\.weight_ih_l0 \(48, 11\) \(expected \(48, 12\)\)"):
        import_fastai(weights, vocab, tmp_path / "lm")

    weights, vocab = write_fastai(tmp_path, fastai_state_dict(12), itos=ITOS[:-1])
    with pytest.raises(ValueError, match="30 embedding rows but .* holds 29 tokens"):
        import_fastai(weights, vocab, tmp_path / "lm")
    assert not (tmp_path / "lm").exists()


def test_cli_import_fastai(tmp_path, capsys):
    sd = fastai_state_dict(10)
    weights, vocab = write_fastai(tmp_path, sd, wrapped=True)
    target = ITOS[:9] + ["w3", "brand_new"]
    (tmp_path / "vocab.json").write_text(json.dumps(target))
    rc = cli.main(["import-fastai", "--weights", str(weights), "--vocab", str(vocab), "--out", str(tmp_path / "lm"),
                   "--direction", "fwd", "--target-vocab", str(tmp_path / "vocab.json")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "vocab 30" in out and "11 target tokens (10 shared)" in out and "hidden 10" in out and "3 layers" in out
    model, obj = load_model(tmp_path / "lm")
    assert obj["vocab"] == target and obj["meta"]["direction"] == "fwd"

    del sd["1.decoder.bias"]
    weights, vocab = write_fastai(tmp_path, sd)
    rc = cli.main(["import-fastai", "--weights", str(weights), "--vocab", str(vocab), "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert rc == 2 and "ulmfit import-fastai: error:" in err and "1.decoder.bias" in err

    rc = cli.main(["import-fastai", "--weights", str(tmp_path / "nope.pth"), "--vocab", str(vocab), "--out", str(tmp_path / "bad")])
    assert rc == 2 and "nope.pth" in capsys.readouterr().err


def fastai_archives(folder):
    """fastai's two WT103 archives as fastai packs them (a folder holding the weights and the token list), with
    random weights; returns each direction's state dict."""
    folder.mkdir()
    sds = {}
    for seed, direction in enumerate(("fwd", "bwd")):
        sds[direction] = fastai_state_dict(12, seed)
        inner = folder / f"wt103-{direction}"
        inner.mkdir()
        torch.save(sds[direction], inner / f"lstm_{direction}.pth")
        (inner / "itos_wt103.pkl").write_bytes(pickle.dumps(ITOS))
        with tarfile.open(folder / f"wt103-{direction}.tgz", "w:gz") as tar:
            tar.add(inner, arcname=inner.name)
    return sds


def fetch(source, out, lock):
    return cli.main(["fetch-fastai", "--source", str(source), "--out", str(out), "--lock", str(lock)])


def test_fetch_fastai_records_then_checks_the_sha256_and_its_pretrain_import_converts(tmp_path, capsys):
    sds, lock = fastai_archives(tmp_path / "s3"), tmp_path / "fastai_wt103.sha256"
    assert fetch((tmp_path / "s3").as_uri(), tmp_path / "wt103", lock) == 0  # a file:// URL, as fastai's https:// one
    out = capsys.readouterr().out
    sums = {f"wt103-{d}.tgz": hashlib.sha256((tmp_path / "s3" / f"wt103-{d}.tgz").read_bytes()).hexdigest()
            for d in ("fwd", "bwd")}
    assert lock.read_text() == "".join(f"{sha}  {name}\n" for name, sha in sums.items())
    assert f"sha256 recorded in {lock}" in out and "cp profiles/paper_main.yaml params.yaml && dvc repro" in out
    source = yaml.safe_load(out.split("pretrain_import: ", 1)[1])
    assert source == {d: {"weights": f"{tmp_path}/wt103/{d}/lstm_{d}.pth", "vocab": f"{tmp_path}/wt103/{d}/itos_wt103.pkl"}
                      for d in ("fwd", "bwd")}
    for direction, files in source.items():  # what experiments/pretrain.py does with params pretrain_import
        import_fastai(files["weights"], files["vocab"], tmp_path / "pretrained" / direction, direction)
        model, obj = load_model(tmp_path / "pretrained" / direction)
        ids = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            torch.testing.assert_close(model(ids)[0].double(), reference_logits(sds[direction], ids), rtol=1e-5, atol=1e-5)
        assert obj["meta"]["direction"] == direction

    assert fetch(tmp_path / "s3", tmp_path / "again", lock) == 0  # a plain folder; the lock is checked, not rewritten
    assert f"sha256 checked against {lock}" in capsys.readouterr().out and len(lock.read_text().splitlines()) == 2


@pytest.mark.parametrize("locked, damage", [(True, "flip"), (False, "flip"), (False, "cut")])
def test_fetch_fastai_refuses_a_damaged_archive_in_one_line_writing_nothing(tmp_path, capsys, locked, damage):
    """Against the lock by its sha256; on the first download (no lock yet) by gzip's own CRC-32."""
    fastai_archives(tmp_path / "s3")
    lock = tmp_path / "fastai_wt103.sha256"
    if locked:
        assert fetch(tmp_path / "s3", tmp_path / "first", lock) == 0
    before = lock.read_text() if locked else None
    damaged = tmp_path / "s3" / "wt103-bwd.tgz"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 1  # one bit flipped, in the compressed data of the weights
    damaged.write_bytes(data if damage == "flip" else data[: len(data) // 2])  # or a download cut short
    capsys.readouterr()
    assert fetch(tmp_path / "s3", tmp_path / "wt103", lock) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ulmfit fetch-fastai: error: ")
    assert ("has sha256" in err and f"but {lock} records" in err) if locked else "not a readable .tgz archive" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["s3", *(["first", lock.name] if locked else [])])
    assert (lock.read_text() if locked else None) == before


def test_the_pretrain_stage_names_missing_fastai_files_and_the_command_that_fetches_them(tmp_path):
    p = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    p["pretrain_import"] = pretrain_import(tmp_path / "never_fetched")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    result = subprocess.run([sys.executable, str(ROOT / "experiments" / "pretrain.py"), "bwd"], capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, ULMFIT_PARAMS=str(tmp_path / "params.yaml"),
                                                             PYTHONPATH=str(ROOT)))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"{tmp_path}/never_fetched/bwd/lstm_bwd.pth" in result.stderr and "run `ulmfit fetch-fastai` first" in result.stderr
