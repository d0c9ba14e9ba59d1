"""AWD-LSTM (Merity et al. 2017) and the ULMFiT language model and classifier built on it.

One module per regularisation technique (locked dropout, embedding dropout, weight drop), then
the encoder, the tied language model, and the BPT3C classifier with concat pooling.
Batches are batch-first: token ids of shape [batch, time].
"""

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import ModelConfig


class LockedDropout(nn.Module):
    """Variational dropout: one mask per sequence, shared by every time step."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):  # x: [batch, time, features]
        if not self.training or self.p == 0:
            return x
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask


class EmbeddingDropout(nn.Module):
    """Drops whole words: rows of the embedding matrix are zeroed, the others rescaled."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, embedding, ids):
        weight = embedding.weight
        if self.training and self.p > 0:
            mask = weight.new_empty(weight.size(0), 1).bernoulli_(1 - self.p) / (1 - self.p)
            weight = weight * mask
        return F.embedding(ids, weight, embedding.padding_idx)


class WeightDrop(nn.Module):
    """DropConnect on an LSTM's hidden-to-hidden matrix, keeping the fused nn.LSTM kernel.

    The trainable matrix lives here as `weight_hh_l0_raw`; before each call a dropped copy is
    handed to the wrapped nn.LSTM as a plain tensor, so one mask serves the whole sequence.
    """

    def __init__(self, lstm, p):
        super().__init__()
        self.lstm, self.p = lstm, p
        raw = lstm.weight_hh_l0
        del lstm._parameters["weight_hh_l0"]
        self.weight_hh_l0_raw = nn.Parameter(raw.detach().clone())
        self._set_weight()

    def _set_weight(self):
        raw = self.weight_hh_l0_raw
        w = F.dropout(raw, self.p, training=True) if self.training and self.p > 0 else raw.view_as(raw)
        # nn.LSTM picks the tensor up through its _flat_weights list (RNNBase.__setattr__).
        self.lstm.weight_hh_l0 = w

    def forward(self, x, state=None):
        self._set_weight()
        with warnings.catch_warnings():  # "weights are not part of a single contiguous chunk"
            warnings.simplefilter("ignore", UserWarning)
            return self.lstm(x, state)


class AWDLSTM(nn.Module):
    """Embedding -> n LSTM layers with embedding, input, hidden and weight dropout.

    forward(ids, lengths=None, state=None) returns (raw, dropped, state): the raw outputs of
    each layer, the outputs after the between-layer dropout (the last layer is left undropped:
    its dropout belongs to the decoder or classifier head), and the final hidden state per layer.
    With `lengths` (right-padded ids, lengths sorted in decreasing order) the LSTMs run on packed
    sequences: no computation on padding, and each sequence's state is its own last real step.
    """

    def __init__(self, vocab_size, cfg: ModelConfig, pad_idx=1):
        super().__init__()
        self.cfg, self.vocab_size, self.pad_idx = cfg, vocab_size, pad_idx
        self.embedding = nn.Embedding(vocab_size, cfg.emb_size, padding_idx=pad_idx)
        self.embedding.weight.data.uniform_(-0.1, 0.1)
        self.embedding_dropout = EmbeddingDropout(cfg.embed_p)
        sizes = [cfg.emb_size] + [cfg.hidden_size] * (cfg.n_layers - 1) + [cfg.emb_size]
        self.rnns = nn.ModuleList(
            WeightDrop(nn.LSTM(sizes[i], sizes[i + 1], batch_first=True), cfg.weight_p) for i in range(cfg.n_layers)
        )
        self.input_dropout = LockedDropout(cfg.input_p)
        self.hidden_dropouts = nn.ModuleList(LockedDropout(cfg.hidden_p) for _ in range(cfg.n_layers - 1))

    def forward(self, ids, lengths=None, state=None):
        x = self.input_dropout(self.embedding_dropout(self.embedding, ids))
        raw, dropped, new_state = [], [], []
        for i, rnn in enumerate(self.rnns):
            layer_state = None if state is None else state[i]
            if lengths is None:
                x, layer_state = rnn(x, layer_state)
            else:
                packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True)
                out, layer_state = rnn(packed, layer_state)
                x = pad_packed_sequence(out, batch_first=True, total_length=ids.size(1))[0]
            raw.append(x)
            if i < len(self.hidden_dropouts):
                x = self.hidden_dropouts[i](x)
            dropped.append(x)
            new_state.append(layer_state)
        return raw, dropped, new_state

    def groups(self):
        """Layer groups from the bottom: the embedding, then each LSTM layer."""
        return [[self.embedding.weight]] + [list(rnn.parameters()) for rnn in self.rnns]


def detach_state(state):
    return None if state is None else [tuple(t.detach() for t in layer) for layer in state]


class LanguageModel(nn.Module):
    """AWD-LSTM encoder with a tied linear decoder over the vocabulary."""

    def __init__(self, vocab_size, cfg: ModelConfig, pad_idx=1):
        super().__init__()
        self.encoder = AWDLSTM(vocab_size, cfg, pad_idx)
        self.output_dropout = LockedDropout(cfg.output_p)
        self.decoder = nn.Linear(cfg.emb_size, vocab_size)
        self.decoder.weight = self.encoder.embedding.weight  # tied
        nn.init.zeros_(self.decoder.bias)

    def forward(self, ids, state=None):
        """Returns logits [batch, time, vocab], the last layer's raw and dropped outputs, state."""
        raw, _, state = self.encoder(ids, state=state)
        dropped = self.output_dropout(raw[-1])
        return self.decoder(dropped), raw[-1], dropped, state

    def groups(self):
        return self.encoder.groups() + [[self.decoder.bias]]


def ar_tar(raw, dropped, alpha, beta):
    """AR: alpha * mean(dropped^2); TAR: beta * mean((h_t - h_{t-1})^2) on the raw output."""
    loss = raw.new_zeros(())
    if alpha:
        loss = loss + alpha * dropped.float().pow(2).mean()
    if beta and raw.size(1) > 1:
        loss = loss + beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
    return loss


def concat_pool(outputs, lengths):
    """[last, max, mean] over the real (unpadded) steps of right-padded outputs [B, T, E]."""
    steps = torch.arange(outputs.size(1), device=outputs.device)
    mask = (steps[None, :] < lengths[:, None].to(outputs.device))[:, :, None]
    last = outputs[torch.arange(outputs.size(0), device=outputs.device), lengths.to(outputs.device) - 1]
    maxed = outputs.masked_fill(~mask, float("-inf")).max(dim=1).values
    mean = (outputs * mask).sum(dim=1) / lengths.to(outputs.device)[:, None]
    return torch.cat([last, maxed, mean], dim=1)


class Classifier(nn.Module):
    """ULMFiT classifier: BPT3C over the AWD-LSTM encoder, concat pooling, two linear blocks.

    A document is read in chunks of `bptt` tokens with the hidden state carried across. The
    chunks before the last `max_len` tokens run without gradients; the last `max_len` tokens run
    with gradients and are pooled. Each head block is BatchNorm1d -> Dropout -> Linear.
    """

    def __init__(self, vocab_size, n_classes, cfg: ModelConfig, bptt=70, max_len=1400, pad_idx=1):
        super().__init__()
        self.encoder = AWDLSTM(vocab_size, cfg, pad_idx)
        self.bptt, self.max_len = bptt, max_len
        pooled = 3 * cfg.emb_size
        self.head = nn.Sequential(
            nn.BatchNorm1d(pooled),
            nn.Dropout(cfg.output_p),
            nn.Linear(pooled, cfg.head_hidden),
            nn.ReLU(),
            nn.BatchNorm1d(cfg.head_hidden),
            nn.Dropout(cfg.head_p),
            nn.Linear(cfg.head_hidden, n_classes),
        )

    def encode(self, ids, lengths):
        """BPT3C. ids: right-padded [B, T]; lengths: [B], sorted in decreasing order.

        Returns the pooled features [B, 3 * emb_size].
        """
        prefix = (lengths - self.max_len).clamp(min=0)  # tokens read without gradients
        state = None
        with torch.no_grad():
            for start in range(0, int(prefix.max()), self.bptt):
                n = int((prefix > start).sum())  # documents still in their prefix (a leading block)
                chunk = (prefix[:n] - start).clamp(max=self.bptt)
                part = None if state is None else [tuple(t[:, :n] for t in layer) for layer in state]
                _, _, new = self.encoder(ids[:n, start : start + self.bptt], chunk, part)
                state = new if state is None else [
                    tuple(torch.cat([a, b[:, n:]], dim=1) for a, b in zip(layer_new, layer_old))
                    for layer_new, layer_old in zip(new, state)
                ]
        if state is not None and state[0][0].size(1) < ids.size(0):  # documents with no prefix start at zero
            state = [tuple(F.pad(t, (0, 0, 0, ids.size(0) - t.size(1))) for t in layer) for layer in state]
        tail = lengths - prefix
        steps = torch.arange(int(tail.max()), device=ids.device)
        index = (prefix[:, None].to(ids.device) + steps[None, :]).clamp(max=ids.size(1) - 1)
        tail_ids = ids.gather(1, index).masked_fill(steps[None, :] >= tail[:, None].to(ids.device), self.encoder.pad_idx)
        raw, _, _ = self.encoder(tail_ids, tail, state)
        return concat_pool(raw[-1].float(), tail)

    def forward(self, ids, lengths):
        return self.head(self.encode(ids, lengths))

    def groups(self):
        """Layer groups from the bottom: embedding, each LSTM layer, the head."""
        return self.encoder.groups() + [list(self.head.parameters())]


def transfer_vocab(state_dict, old_itos, new_itos):
    """Re-index a language model's embedding/decoder rows from `old_itos` to `new_itos`.

    Tokens in both vocabularies keep their rows; new tokens get the mean embedding row and the
    mean decoder bias (fastai's rule). Works on any state dict holding those two tensors.
    """
    old_index = {tok: i for i, tok in enumerate(old_itos)}
    rows = torch.tensor([old_index.get(tok, -1) for tok in new_itos])
    known = rows >= 0
    out = dict(state_dict)
    for key in ("encoder.embedding.weight", "decoder.weight", "decoder.bias"):
        if key not in state_dict:
            continue
        old = state_dict[key]
        new = old.mean(dim=0, keepdim=True).expand(len(new_itos), *old.shape[1:]).clone()
        new[known] = old[rows[known]]
        out[key] = new
    return out
