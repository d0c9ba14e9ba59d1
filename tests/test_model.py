import pytest
import torch

from ulmfit import awd_lstm
from ulmfit.awd_lstm import (
    AWDLSTM,
    Classifier,
    EmbeddingDropout,
    LanguageModel,
    LockedDropout,
    SoftmaxCrossEntropy,
    WeightDrop,
    ar_tar,
    concat_pool,
    softmax_block,
    transfer_vocab,
)
from ulmfit.config import ModelConfig

TINY = ModelConfig(emb_size=8, hidden_size=12, n_layers=3, head_hidden=6)
NO_DROP = ModelConfig(emb_size=8, hidden_size=12, n_layers=3, head_hidden=6, output_p=0, hidden_p=0, input_p=0,
                      embed_p=0, weight_p=0, head_p=0)


def test_weight_drop_resamples_in_training_is_identity_in_eval_and_trains_the_raw_weight():
    torch.manual_seed(0)
    wd = WeightDrop(torch.nn.LSTM(4, 5, batch_first=True), 0.5)
    x = torch.randn(2, 3, 4)
    wd.train()
    wd(x)
    first = wd.lstm.weight_hh_l0.clone()
    wd(x)
    second = wd.lstm.weight_hh_l0.clone()
    assert not torch.equal(first, second)  # a new mask every forward call
    zero = first == 0
    assert 0.3 < zero.float().mean() < 0.7  # about half of the weights dropped
    assert torch.allclose(first[~zero], 2 * wd.weight_hh_l0_raw[~zero])  # the rest rescaled by 1 / (1 - p)
    wd(x, new_mask=False)
    assert torch.equal(wd.lstm.weight_hh_l0, second)  # the chunks of one batch share a mask
    wd.eval()
    wd(x)
    assert torch.equal(wd.lstm.weight_hh_l0, wd.weight_hh_l0_raw)
    wd.train()
    out, _ = wd(x)
    out.sum().backward()
    assert wd.weight_hh_l0_raw.grad is not None and wd.weight_hh_l0_raw.grad.abs().sum() > 0
    assert "weight_hh_l0" not in dict(wd.lstm.named_parameters())  # only the raw copy is a parameter


def test_embedding_dropout_drops_whole_rows_and_rescales():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(50, 6)
    dp = EmbeddingDropout(0.5).train()
    ids = torch.arange(50).repeat(2, 1)  # every word twice
    out = dp(emb, ids)
    dropped = (out[0] == 0).all(dim=1)
    assert 5 < dropped.sum() < 45
    assert torch.equal(dropped, (out[1] == 0).all(dim=1))  # a word is dropped everywhere it occurs
    assert torch.allclose(out[0][~dropped], 2 * emb.weight[~dropped])
    assert torch.equal(dp.eval()(emb, ids), emb(ids))


def test_locked_dropout_keeps_one_mask_over_time():
    torch.manual_seed(0)
    x = torch.ones(3, 20, 7)
    out = LockedDropout(0.5).train()(x)
    assert torch.equal(out, out[:, :1].expand_as(out))  # same mask at every time step
    assert not torch.equal(out[0], out[1])  # different masks per sequence
    assert set(out.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(LockedDropout(0.5).eval()(x), x)


def test_language_model_ties_weights_and_returns_logits():
    lm = LanguageModel(30, TINY)
    assert lm.decoder.weight is lm.encoder.embedding.weight
    logits, raw, dropped, state = lm(torch.randint(0, 30, (2, 5)))
    assert logits.shape == (2, 5, 30) and raw.shape == (2, 5, 8) and len(state) == 3
    assert len(lm.groups()) == 4 and lm.groups()[-1][0] is lm.encoder.embedding.weight  # the tied decoder is the head
    assert sorted(k for k in lm.state_dict() if "embedding" in k) == ["encoder.embedding.weight"]


def test_ar_tar():
    raw = torch.tensor([[[1.0], [3.0], [6.0]]])
    dropped = torch.tensor([[[2.0], [0.0], [0.0]]])
    assert ar_tar(raw, dropped, 2.0, 0.0).item() == pytest.approx(2 * 4 / 3)
    assert ar_tar(raw, dropped, 0.0, 1.0).item() == pytest.approx((4 + 9) / 2)


def test_concat_pool_ignores_padding():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 3)
    lengths = torch.tensor([4, 2])
    pooled = concat_pool(x, lengths)
    assert torch.allclose(pooled[1], torch.cat([x[1, 1], x[1, :2].max(0).values, x[1, :2].mean(0)]))
    padded = torch.cat([x, torch.full((2, 3, 3), 100.0)], dim=1)
    assert torch.allclose(concat_pool(padded, lengths), pooled)


def test_classifier_output_unchanged_when_padding_is_added():
    torch.manual_seed(0)
    clf = Classifier(40, 3, TINY, bptt=4, max_len=6).eval()
    ids = torch.randint(2, 40, (3, 11))
    ids[1, 8:] = 1
    ids[2, 5:] = 1
    lengths = torch.tensor([11, 8, 5])
    out = clf(ids, lengths)
    more_padding = torch.cat([ids, torch.ones(3, 9, dtype=torch.long)], dim=1)
    assert torch.allclose(clf(more_padding, lengths), out, atol=1e-6)
    alone = clf(ids[2:, :5], lengths[2:])  # a document gives the same output alone as in a batch
    assert torch.allclose(alone, out[2:], atol=1e-6)


def test_bpt3c_gradients_reach_only_the_last_max_len_tokens():
    torch.manual_seed(0)
    clf = Classifier(40, 2, NO_DROP, bptt=3, max_len=5).train()
    ids = torch.randint(2, 40, (2, 13))
    ids[1, 9:] = 1
    lengths = torch.tensor([13, 9])
    seen = {}
    clf.encoder.embedding_dropout.register_forward_hook(lambda m, i, o: seen.setdefault("emb", []).append(o))

    def keep_grad(module, inputs, output):
        if output.requires_grad:
            output.retain_grad()
    clf.encoder.embedding_dropout.register_forward_hook(keep_grad)
    (clf(ids, lengths) ** 2).sum().backward()  # a plain sum is constant under BatchNorm
    grads = [e.grad for e in seen["emb"] if e.requires_grad]
    assert len(grads) == 1  # only the tail runs with gradients
    tail = grads[0]
    assert tail.shape[1] == 5  # the last max_len tokens
    assert (tail.abs().sum(dim=2) > 0).all()
    no_grad = [e for e in seen["emb"] if not e.requires_grad]
    # prefixes of 8 and 4 tokens: ragged starts of 2 and 1 tokens, then whole chunks of 3 aligned at the end
    assert [tuple(e.shape[:2]) for e in no_grad] == [(2, 2), (1, 3), (2, 3)]
    # the prefix still shapes the output through the carried hidden state
    with torch.no_grad():
        clf.eval()
        changed = ids.clone()
        changed[0, 0] = (ids[0, 0] + 1) % 38 + 2
        assert not torch.allclose(clf(ids, lengths)[0], clf(changed, lengths)[0])


def test_encoder_packed_lengths_match_unpadded_runs():
    torch.manual_seed(0)
    enc = AWDLSTM(30, NO_DROP).eval()
    ids = torch.randint(2, 30, (2, 6))
    raw, _, state = enc(ids, torch.tensor([6, 4]))
    raw_short, _, state_short = enc(ids[1:, :4])
    assert torch.allclose(raw[-1][1, :4], raw_short[-1][0], atol=1e-6)
    assert torch.allclose(state[-1][0][:, 1], state_short[-1][0][:, 0], atol=1e-6)


def test_classifier_head_layout():
    clf = Classifier(40, 3, TINY)
    kinds = [type(m).__name__ for m in clf.head]
    assert kinds == ["BatchNorm1d", "Dropout", "Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear"]
    assert clf.head[2].in_features == 3 * 8 and clf.head[2].out_features == 6
    assert len(clf.groups()) == 5


def test_transfer_vocab_copies_shared_rows_and_gives_new_tokens_the_mean():
    lm = LanguageModel(4, TINY)
    sd = lm.state_dict()
    new = transfer_vocab(sd, ["a", "b", "c", "d"], ["c", "z", "a"])
    emb = sd["encoder.embedding.weight"]
    assert torch.equal(new["encoder.embedding.weight"][0], emb[2])
    assert torch.equal(new["encoder.embedding.weight"][2], emb[0])
    assert torch.allclose(new["encoder.embedding.weight"][1], emb.mean(0))
    assert torch.allclose(new["decoder.bias"][1], sd["decoder.bias"].mean())


def test_bpt3c_equals_reading_each_document_whole():
    """In eval mode the chunked, batched BPT3C gives what one uninterrupted pass over each document
    gives: the pooled outputs of its last max_len tokens."""
    torch.manual_seed(0)
    clf = Classifier(40, 2, TINY, bptt=4, max_len=5).eval()
    lengths = torch.tensor([3, 17, 9, 12, 5, 16])  # unsorted, ragged prefixes of every size
    ids = torch.randint(2, 40, (6, 17))
    for i, n in enumerate(lengths):
        ids[i, n:] = 1
    with torch.no_grad():
        pooled = clf.encode(ids, lengths)
        for i, n in enumerate(lengths.tolist()):
            raw, _, _ = clf.encoder(ids[i : i + 1, :n])
            tail = raw[-1][:, max(0, n - 5) :]
            expected = concat_pool(tail, torch.tensor([tail.size(1)]))
            assert torch.allclose(pooled[i], expected[0], atol=1e-5), i


@pytest.mark.parametrize("blocks", [False, True])
def test_chunked_softmax_cross_entropy_matches_the_plain_one(blocks, monkeypatch):
    if blocks:  # 300 rows in blocks of 100, each in softmax passes of 32 rows (the last one ragged)
        monkeypatch.setattr(awd_lstm, "CPU_LOGITS_BYTES", 100 * 5000 * 4)
        monkeypatch.setattr(awd_lstm, "MIN_BLOCK_ROWS", 1)
        monkeypatch.setattr(awd_lstm, "SOFTMAX_ROWS", 32)
    torch.manual_seed(0)
    h = torch.randn(300, 8, requires_grad=True)
    w = torch.randn(5000, 8, requires_grad=True)
    b = torch.randn(5000, requires_grad=True)
    y = torch.randint(0, 5000, (300,))
    ours = SoftmaxCrossEntropy.apply(h, w, b, y)
    grads = torch.autograd.grad(ours * 3, (h, w, b))
    ref = torch.nn.functional.cross_entropy(torch.nn.functional.linear(h, w, b), y)
    ref_grads = torch.autograd.grad(ref * 3, (h, w, b))
    assert torch.allclose(ours, ref, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-6)
    with torch.no_grad():  # evaluation: the loss alone
        assert torch.allclose(SoftmaxCrossEntropy.apply(h, w, b, y, False), ref, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 products, fp32 softmax
        low = SoftmaxCrossEntropy.apply(h.to(torch.bfloat16), w, b, y)
    assert abs(low.item() - ref.item()) < 0.02 * ref.item()


def test_the_softmax_block_fills_the_logits_budget_in_the_precision_of_h():
    for vocab in (10_000, 20_000, 60_000, 200):  # the benchmarks' vocabularies: 1,677 / 838 / 279 rows in bf16 on a CPU
        assert softmax_block(vocab, 2, "cpu") == max(256, 2**24 // vocab)
        assert softmax_block(vocab, 4, "cpu") == max(256, 2**23 // vocab)
        assert softmax_block(vocab, 2, "cuda") == max(256, 2**28 // vocab)
    rows = softmax_block(60_000, 2, "cpu")
    assert rows * 60_000 * 2 <= 32 * 2**20 < (rows + 1) * 60_000 * 2


def test_language_model_loss_equals_cross_entropy_of_its_logits():
    torch.manual_seed(0)
    lm = LanguageModel(30, NO_DROP).eval()
    x, y = torch.randint(0, 30, (2, 5)), torch.randint(0, 30, (2, 5))
    logits = lm(x)[0]
    assert torch.allclose(lm.loss(x, y)[0], torch.nn.functional.cross_entropy(logits.reshape(-1, 30), y.reshape(-1)),
                          atol=1e-6)


def test_drop_mult_scales_every_dropout_and_the_checkpoint_keeps_the_model_config():
    clf = Classifier(40, 3, TINY, drop_mult=0.5)
    enc = clf.encoder
    assert enc.embedding_dropout.p == pytest.approx(TINY.embed_p / 2)
    assert enc.input_dropout.p == pytest.approx(TINY.input_p / 2)
    assert [d.p for d in enc.hidden_dropouts] == pytest.approx([TINY.hidden_p / 2] * 2)
    assert [r.p for r in enc.rnns] == pytest.approx([TINY.weight_p / 2] * 3)
    assert clf.head[1].p == pytest.approx(TINY.output_p / 2) and clf.head[5].p == pytest.approx(TINY.head_p / 2)
    assert enc.cfg == TINY  # what a checkpoint records: the model's own dropouts
    assert LanguageModel(40, TINY, drop_mult=0.1).output_dropout.p == pytest.approx(TINY.output_p / 10)
    with pytest.raises(ValueError, match="drop_mult 3 makes .*weight_p.*outside \\[0, 1\\)"):
        Classifier(40, 3, TINY, drop_mult=3)
