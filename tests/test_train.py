import math

import numpy as np
import pytest
import torch

from ulmfit.awd_lstm import Classifier, LanguageModel
from ulmfit.config import ClfConfig, LMConfig, ModelConfig
from ulmfit.optim import AdamW
from ulmfit.text import Docs
from ulmfit.train import (
    CURVE_POINTS,
    Averager,
    bptt_lengths,
    collate,
    confusion,
    error_rate,
    lm_loss,
    predict_probs,
    sortish_batches,
    train_classifier,
    train_lm,
)

SMALL = ModelConfig(emb_size=16, hidden_size=32, n_layers=3, head_hidden=8)


def make_docs(seqs, labels=None):
    lengths = np.array([len(s) for s in seqs])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.concatenate(seqs).astype(np.int32)
    return Docs(ids, offsets, None if labels is None else np.asarray(labels, dtype=np.int64))


def planted(n, seed, vocab=40):
    """Class 1 documents contain token 5 somewhere, class 0 documents never do."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for i in range(n):
        length = int(rng.integers(6, 30))
        seq = rng.integers(9, vocab, size=length)
        seq[0] = 2
        if i % 2:
            seq[rng.integers(1, length)] = 5
        seqs.append(seq)
        labels.append(i % 2)
    return make_docs(seqs, labels)


def test_tiny_lm_overfits_a_tiny_corpus():
    # a repeating 10-token pattern: a good LM predicts it almost perfectly
    pattern = np.array([2, 11, 12, 13, 14, 15, 16, 17, 18, 19])
    docs = make_docs([pattern] * 40)
    cfg = LMConfig(epochs=25, batch_size=4, bptt=10, variable_bptt=False, lr=0.01, schedule="constant", discr=1.0,
                   precision="fp32", weight_decay=0.0)
    model = LanguageModel(20, ModelConfig(emb_size=16, hidden_size=32, n_layers=2, output_p=0, hidden_p=0, input_p=0,
                                          embed_p=0, weight_p=0))
    history = train_lm(model, docs, docs, cfg, seed=0, progress=False)
    assert history[0]["train_loss"] > 2.0  # starts near ln(20) = 3.0
    assert history[-1]["valid_loss"] < 0.1  # stated bound: validation loss under 0.1 nats on the memorised pattern


def test_tiny_classifier_learns_a_planted_signal():
    train, valid = planted(200, 0), planted(100, 1)
    cfg = ClfConfig(epochs=25, batch_size=16, lr=0.01, unfreeze="full", discr=1.0, bptt=8, max_len=40,
                    precision="fp32")
    model = Classifier(40, 2, SMALL, cfg.bptt, cfg.max_len)
    history = train_classifier(model, train, valid, cfg, seed=0, progress=False)
    assert history[-1]["valid_error"] < 0.1
    assert min(h["train_loss"] for h in history[-5:]) < history[0]["train_loss"] / 2


@pytest.mark.parametrize("strategy", ["gradual", "last", "full", "chain_thaw"])
def test_which_groups_train_in_each_epoch(strategy):
    train = planted(40, 0)
    cfg = ClfConfig(epochs=6, batch_size=8, lr=0.01, unfreeze=strategy, bptt=8, max_len=40, precision="fp32",
                    weight_decay=0.0)
    model = Classifier(40, 2, SMALL, cfg.bptt, cfg.max_len)
    snapshots = [[torch.cat([p.detach().flatten().clone() for p in g]) for g in model.groups()]]
    train_classifier(model, train, None, cfg, seed=0, progress=False,
                     on_epoch=lambda r: snapshots.append([torch.cat([p.detach().flatten().clone() for p in g])
                                                          for g in model.groups()]))
    changed = [[not torch.equal(a, b) for a, b in zip(before, after)] for before, after in zip(snapshots, snapshots[1:])]
    expected = {
        "gradual": [[False] * (4 - e) + [True] * (e + 1) if e < 4 else [True] * 5 for e in range(6)],
        "last": [[False] * 4 + [True]] * 6,
        "full": [[True] * 5] * 6,
        "chain_thaw": [[False] * 4 + [True]] + [[g == e for g in range(5)] for e in range(4)] + [[True] * 5],
    }[strategy]
    assert changed == expected


def test_averaged_sgd_weights_are_the_mean_of_the_iterates_since_the_switch():
    w = torch.nn.Parameter(torch.zeros(3))
    iterates = []
    avg = None
    for k in range(8):
        w.data = torch.randn(3)
        if k == 3:
            avg = Averager([w])  # the switch: w_T is the first averaged iterate
        elif avg:
            avg.update()
        if avg:
            iterates.append(w.detach().clone())
    assert torch.allclose(avg.mean[0], torch.stack(iterates).mean(0), atol=1e-6)
    live = w.detach().clone()
    avg.swap()
    assert torch.allclose(w, torch.stack(iterates).mean(0), atol=1e-6)
    avg.swap()
    assert torch.equal(w.detach(), live)


def test_asgd_switches_to_averaging_when_validation_stops_improving():
    pattern = np.array([2, 11, 12, 13, 14, 15, 16, 17, 18, 19])
    docs = make_docs([pattern] * 20)
    noise = make_docs([np.random.default_rng(0).integers(2, 20, 200)])  # validation the LM cannot learn
    cfg = LMConfig(epochs=6, batch_size=4, bptt=10, optimizer="asgd", lr=1.0, schedule="constant", discr=1.0,
                   nonmono=1, precision="fp32", variable_bptt=False)
    model = LanguageModel(20, SMALL)
    history = train_lm(model, docs, noise, cfg, seed=0, progress=False)
    assert any(h["averaging"] for h in history) and not history[0]["averaging"]


def test_same_seed_gives_identical_numbers():
    def run():
        train, valid = planted(60, 0), planted(30, 1)
        cfg = ClfConfig(epochs=3, batch_size=8, bptt=8, max_len=16)
        torch.manual_seed(3)
        model = Classifier(40, 2, SMALL, cfg.bptt, cfg.max_len)
        history = train_classifier(model, train, valid, cfg, seed=3, progress=False)
        return history, predict_probs(model, valid)
    (h1, p1), (h2, p2) = run(), run()
    assert h1 == h2
    assert np.array_equal(p1, p2)


def test_lm_resume_after_interruption_gives_the_same_weights(tmp_path):
    docs = make_docs([np.random.default_rng(i).integers(2, 20, 50) for i in range(20)])
    cfg = LMConfig(epochs=2, batch_size=4, bptt=10, ckpt_every=3, precision="fp32")

    def fresh():
        torch.manual_seed(0)
        return LanguageModel(20, SMALL)

    full, points = fresh(), []
    train_lm(full, docs, docs, cfg, seed=1, progress=False, on_step=lambda m, s: points.append((m, s)))

    class Interrupt(Exception):
        pass

    calls = {"n": 0}
    resume = tmp_path / "lm.resume.pt"
    interrupted = fresh()
    original_step = AdamW.step

    def failing_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 8:  # mid-epoch, after the checkpoint at step 6
            raise Interrupt()
        return original_step(self, *a, **k)

    AdamW.step = failing_step
    try:
        with pytest.raises(Interrupt):
            train_lm(interrupted, docs, docs, cfg, seed=1, resume_path=resume, progress=False)
    finally:
        AdamW.step = original_step
    assert resume.exists()
    resumed, replayed = fresh(), []
    train_lm(resumed, docs, docs, cfg, seed=1, resume_path=resume, progress=False,
             on_step=lambda m, s: replayed.append((m, s)))
    assert not resume.exists()
    assert replayed == points  # the loss curve too: the points before the checkpoint replayed, the rest logged again
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_lm_logs_about_curve_points_training_losses_and_each_validation_without_changing_the_weights():
    docs = make_docs([np.random.default_rng(i).integers(2, 20, 50) for i in range(60)])  # 3000 tokens
    cfg = LMConfig(epochs=2, batch_size=2, bptt=5, variable_bptt=False, precision="fp32")  # 2 x 300 steps
    torch.manual_seed(0)
    quiet, logged, points = LanguageModel(20, SMALL), LanguageModel(20, SMALL), []
    logged.load_state_dict(quiet.state_dict())
    history = train_lm(quiet, docs, docs, cfg, seed=0, progress=False)
    train_lm(logged, docs, docs, cfg, seed=0, progress=False, on_step=lambda m, s: points.append((m, s)))
    train = [s for m, s in points if "train_loss" in m]
    every = round(600 / CURVE_POINTS)
    assert train == list(range(every, 601, every)) and len(train) == 100
    assert [(m["valid_loss"], s) for m, s in points if "valid_loss" in m] == [(h["valid_loss"], h["step"]) for h in history]
    for a, b in zip(quiet.state_dict().values(), logged.state_dict().values()):
        assert torch.equal(a, b)


def test_variable_bptt_covers_the_stream():
    rng = np.random.default_rng(0)
    lens = bptt_lengths(1001, 70, True, rng)
    assert sum(lens) == 1000 and min(lens[:-1]) >= 5
    assert bptt_lengths(141, 70, False, rng) == [70, 70]


def test_sortish_batches_and_collate():
    docs = planted(100, 0)
    batches = sortish_batches(docs.lengths, 16, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(100))
    ids, lengths, labels, index = collate(docs, batches[0])
    assert (lengths[:-1] >= lengths[1:]).all()  # longest first
    assert ids.shape == (len(index), int(lengths[0]))
    for row, i in enumerate(index):
        assert ids[row, : lengths[row]].tolist() == docs[i].tolist()
        assert (ids[row, lengths[row]:] == 1).all()


def test_error_rate_and_confusion():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 1, 1])
    assert error_rate(probs, labels) == pytest.approx(1 / 3)
    assert confusion(probs, labels, 2).tolist() == [[1, 0], [1, 1]]


def test_lm_loss_of_a_uniform_model_is_log_vocab():
    model = LanguageModel(20, SMALL)
    torch.nn.init.zeros_(model.encoder.embedding.weight)  # tied decoder: zero logits everywhere
    docs = make_docs([np.arange(2, 20)] * 10)
    loss = lm_loss(model, docs, LMConfig(batch_size=2, bptt=5, precision="fp32"))
    assert loss == pytest.approx(math.log(20), rel=1e-5)


def test_min_steps_adds_epochs_for_small_label_budgets_and_early_stopping_checks_about_ten_times():
    train, valid = planted(24, 0), planted(20, 1)  # 3 batches of 8 per epoch
    cfg = ClfConfig(epochs=2, batch_size=8, bptt=8, max_len=16, min_steps=60, early_stop=True, precision="fp32")
    model = Classifier(40, 2, SMALL, cfg.bptt, cfg.max_len)
    history = train_classifier(model, train, valid, cfg, seed=0, progress=False)
    assert len(history) == 20 and history[-1]["step"] == 60
    checked = [h["epoch"] for h in history if "valid_error" in h]
    assert checked == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]


def test_selection_split_is_outside_the_budget_and_stratified():
    from ulmfit.steps import selection_split

    labels = np.repeat([0, 1, 2], [60, 30, 10])
    chosen = np.sort(np.random.default_rng(0).permutation(100)[:40])
    train, select = selection_split(labels, chosen, 30, seed=1)
    assert np.array_equal(train, chosen) and len(select) == 30
    assert not set(select) & set(chosen)
    rest = np.setdiff1d(np.arange(100), chosen)
    expected = 30 * np.bincount(labels[rest], minlength=3) / len(rest)  # the class shares of what is left over
    assert np.abs(np.bincount(labels[select], minlength=3) - expected).max() < 1
    again = selection_split(labels, chosen, 30, seed=1)[1]
    assert np.array_equal(select, again)


def test_selection_split_of_a_whole_pool_budget_holds_examples_out_of_training():
    from ulmfit.steps import selection_split

    labels = np.repeat([0, 1], [50, 50])
    train, select = selection_split(labels, np.arange(100), 20, seed=0)
    assert len(select) == 20 and len(train) == 80
    assert not set(train) & set(select) and np.bincount(labels[select]).tolist() == [10, 10]


@pytest.mark.parametrize("change", ["epochs", "lr", "input"])
def test_a_checkpoint_made_from_other_params_or_data_is_discarded_not_resumed(tmp_path, capsys, change):
    """Interrupted at epoch 2 of 3, then run with another epoch count, rate or training set: the run starts over and
    ends as a clean run of the new settings (before, the stale checkpoint was taken as the result)."""
    train, valid = planted(40, 0), planted(20, 1)
    cfg = ClfConfig(epochs=3, batch_size=8, bptt=8, max_len=16, lr=0.01, ckpt_every=1000, precision="fp32")
    resume = tmp_path / "clf.resume.pt"

    def run(cfg, train, resume_path, on_epoch=None):
        torch.manual_seed(0)
        model = Classifier(40, 2, SMALL, cfg.bptt, cfg.max_len)
        return train_classifier(model, train, valid, cfg, seed=0, resume_path=resume_path, progress=False,
                                on_epoch=on_epoch)

    def stop_at_epoch_2(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, train, resume, stop_at_epoch_2)
    assert resume.exists()
    new_cfg, new_train = cfg, train
    if change == "epochs":
        new_cfg = ClfConfig(**{**cfg.__dict__, "epochs": 2})
    elif change == "lr":
        new_cfg = ClfConfig(**{**cfg.__dict__, "lr": 0.02})
    else:
        new_train = planted(40, 7)
    assert run(new_cfg, new_train, resume) == run(new_cfg, new_train, None)
    assert "was made from other params, data, starting weights or code; this run starts over" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):  # the same settings again: resumed, not started over
        run(cfg, train, resume, stop_at_epoch_2)
    assert run(cfg, train, resume) == run(cfg, train, None) and "starts over" not in capsys.readouterr().err
