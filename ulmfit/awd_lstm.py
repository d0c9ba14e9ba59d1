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
    handed to the wrapped nn.LSTM as a plain tensor. forward(..., new_mask=True) draws a new mask;
    new_mask=False reuses the last one (the chunks of one BPT3C batch share a mask).
    """

    def __init__(self, lstm, p):
        super().__init__()
        self.lstm, self.p, self.mask = lstm, p, None
        raw = lstm.weight_hh_l0
        del lstm._parameters["weight_hh_l0"]
        self.weight_hh_l0_raw = nn.Parameter(raw.detach().clone())
        self.lstm.weight_hh_l0 = self.weight_hh_l0_raw.view_as(raw)

    def forward(self, x, state=None, new_mask=True):
        raw = self.weight_hh_l0_raw
        if self.training and self.p > 0:
            if new_mask or self.mask is None or self.mask.shape != raw.shape:
                self.mask = (torch.rand_like(raw) >= self.p).to(raw.dtype) / (1 - self.p)
            w = raw * self.mask
        else:
            w = raw.view_as(raw)
        self.lstm.weight_hh_l0 = w  # nn.LSTM reads it through its _flat_weights (RNNBase.__setattr__)
        with warnings.catch_warnings():  # "weights are not part of a single contiguous chunk"
            warnings.simplefilter("ignore", UserWarning)
            return self.lstm(x, state)


def dropouts(cfg: ModelConfig, drop_mult=1.0):
    """The model's dropout probabilities scaled by `drop_mult` (fastai's knob: 1 = as configured)."""
    p = {k: getattr(cfg, k) * drop_mult for k in ("output_p", "hidden_p", "input_p", "embed_p", "weight_p", "head_p")}
    bad = [k for k, v in p.items() if not 0 <= v < 1]
    if bad:
        raise ValueError(f"drop_mult {drop_mult} makes {', '.join(bad)} {[round(p[k], 3) for k in bad]}, outside [0, 1); "
                         "use a smaller drop_mult")
    return p


class AWDLSTM(nn.Module):
    """Embedding -> n LSTM layers with embedding, input, hidden and weight dropout.

    forward(ids, lengths=None, state=None, new_masks=True) returns (raw, dropped, state): the raw
    outputs of each layer, the outputs after the between-layer dropout (the last layer is left
    undropped: its dropout belongs to the decoder or classifier head), and the final hidden state
    of each layer. With `lengths` the sequences are packed, so each one's final state is its own
    last real step (the CPU runs packed LSTMs step by step, so only short ragged pieces use it).
    """

    def __init__(self, vocab_size, cfg: ModelConfig, pad_idx=1, drop_mult=1.0):
        super().__init__()
        self.cfg, self.vocab_size, self.pad_idx = cfg, vocab_size, pad_idx
        p = dropouts(cfg, drop_mult)
        self.embedding = nn.Embedding(vocab_size, cfg.emb_size, padding_idx=pad_idx)
        self.embedding.weight.data.uniform_(-0.1, 0.1)
        self.embedding_dropout = EmbeddingDropout(p["embed_p"])
        self.sizes = [cfg.emb_size] + [cfg.hidden_size] * (cfg.n_layers - 1) + [cfg.emb_size]
        self.rnns = nn.ModuleList(
            WeightDrop(nn.LSTM(self.sizes[i], self.sizes[i + 1], batch_first=True), p["weight_p"])
            for i in range(cfg.n_layers)
        )
        self.input_dropout = LockedDropout(p["input_p"])
        self.hidden_dropouts = nn.ModuleList(LockedDropout(p["hidden_p"]) for _ in range(cfg.n_layers - 1))

    def forward(self, ids, lengths=None, state=None, new_masks=True):
        x = self.input_dropout(self.embedding_dropout(self.embedding, ids))
        raw, dropped, new_state = [], [], []
        for i, rnn in enumerate(self.rnns):
            layer_state = None if state is None else state[i]
            if lengths is None:
                x, layer_state = rnn(x, layer_state, new_masks)
            else:
                packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
                out, layer_state = rnn(packed, layer_state, new_masks)
                x = pad_packed_sequence(out, batch_first=True, total_length=ids.size(1))[0]
            raw.append(x)
            if i < len(self.hidden_dropouts):
                x = self.hidden_dropouts[i](x)
            dropped.append(x)
            new_state.append(layer_state)
        return raw, dropped, new_state

    def zero_state(self, batch_size, device):
        return [tuple(torch.zeros(1, batch_size, n, device=device) for _ in range(2)) for n in self.sizes[1:]]

    def groups(self):
        """Layer groups from the bottom: the embedding, then each LSTM layer."""
        return [[self.embedding.weight]] + [list(rnn.parameters()) for rnn in self.rnns]


def lstm_flops(emb, hidden, n_layers=3):
    """Forward FLOPs a token of the AWD-LSTM's layers (emb -> hidden ... hidden -> emb), matmuls only: 2 x 4h x
    (n_in + h) a layer, its four gates' input and recurrent products."""
    sizes = [emb] + [hidden] * (n_layers - 1) + [emb]
    return sum(2 * 4 * h * (n_in + h) for n_in, h in zip(sizes[:-1], sizes[1:]))


def lm_flops(emb, hidden, vocab, n_layers=3):
    """Forward FLOPs a token of the language model: its LSTM layers and the tied decoder's 2 x emb x vocab. Training
    costs 3 x this (the backward pass's two products for each forward one); regularisers, embedding lookups and
    elementwise ops are left out. 3.97 MFLOP at (128, 192, 10k), 88.4 at the paper's (400, 1150, 60k)."""
    return lstm_flops(emb, hidden, n_layers) + 2 * emb * vocab


def detach_state(state):
    return None if state is None else [tuple(t.detach() for t in layer) for layer in state]


CPU_LOGITS_BYTES = 32 * 2**20  # memory budget for one row block's logits on a CPU, in h's precision
GPU_LOGITS_BYTES = 512 * 2**20  # the same on an accelerator
MIN_BLOCK_ROWS = 256  # below this, the products of a large vocabulary lose speed
SOFTMAX_ROWS = 256  # rows per fp32 softmax pass within a block (60 MB at a 60k vocabulary)


def softmax_block(vocab_size, element_size, device_type):
    """Rows per block of SoftmaxCrossEntropy: as many as the logits budget holds, at least MIN_BLOCK_ROWS.
    On a CPU in bf16: 1,677 rows at a 10k vocabulary, 838 at 20k, 279 at 60k."""
    budget = CPU_LOGITS_BYTES if device_type == "cpu" else GPU_LOGITS_BYTES
    return max(MIN_BLOCK_ROWS, budget // (element_size * vocab_size))


class SoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of softmax(h @ weight.T + bias) against `targets`, over row blocks.

    The loss is a scalar, so its gradients are those at an output gradient of 1 times the output
    gradient. So the forward pass makes them: for each block of rows it makes the logits in h's
    precision (bf16 under autocast), takes the softmax in fp32 passes of SOFTMAX_ROWS rows, writes
    softmax - one-hot over the logits, and multiplies that by the weight and by the block's h; the
    backward pass only scales the results. The whole [rows, vocab] logits are never held, and no
    product is made twice. grads=False (evaluation) makes the loss only. Same value and gradients
    as F.cross_entropy(F.linear(h, weight, bias), targets).

    Measured (benchmarks/run.py --case softmax: forward + backward of one batch, median of the timed steps;
    a quiet 2-core Xeon with AMX, 2026-12-02 07:07 UTC), at the 10k / 20k / 60k vocabularies of the
    cpu-profile / fastai-reference / paper cases, in bf16: 0.057 / 0.316 / 2.40 s against 0.160 / 0.626 /
    2.34 s for whole logits (2.8x / 2.0x / 0.97x their speed), with 136 / 265 / 295 MB above the process's
    baseline against 280 / 1,064 / 3,062 MB. The earlier version, which made the logits again in the
    backward pass, took 3.54 s at 60k the same day. In fp32 at 60k: 3.95 s and 249 MB against 3.54 s and
    3,019 MB.

    In fp32 the bias goes into the logits' product (addmm), the softmax is one fused log_softmax and one exp per pass,
    and the weight's gradient accumulates inside its product (addmm_) instead of through a [vocab, emb] temporary a
    block: LM training at the paper's sizes went from 608 to 722 tokens/s (medians of 4 steps each, interleaved in one
    process; 2 cores of a Xeon @ 2.80GHz with AVX-512, no bf16, 2026-12-07), no change beyond the noise at 10k.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, grads=True):
        n, block = h.size(0), softmax_block(weight.size(0), h.element_size(), h.device.type)
        w, b, total = weight.to(h.dtype), bias.float(), torch.zeros((), device=h.device)
        grad_h, grad_w, grad_b = [None] * 3
        if grads:
            grad_h, grad_w, grad_b = torch.empty_like(h), torch.zeros(weight.shape, device=h.device), torch.zeros_like(b)
        # the scratch buffers keep one size whatever the number of rows, so that steps of varying length reuse
        # the same memory (freed blocks of ever-changing sizes fragment the allocator's heap)
        logits_buf = torch.empty(min(block, n), weight.size(0), device=h.device, dtype=h.dtype)
        z_buf = torch.empty(min(SOFTMAX_ROWS, block, n), weight.size(0), device=h.device)
        fp32 = h.dtype == torch.float32  # the logits are fp32 themselves: the bias goes into their product
        with torch.autocast(h.device.type, enabled=False):
            for i in range(0, n, block):
                rows, tb = h[i : i + block], targets[i : i + block]
                out = logits_buf[: rows.size(0)]
                logits = torch.addmm(b, rows, w.t(), out=out) if fp32 else torch.mm(rows, w.t(), out=out)
                for j in range(0, logits.size(0), SOFTMAX_ROWS):
                    t, part = tb[j : j + SOFTMAX_ROWS], logits[j : j + SOFTMAX_ROWS]
                    z = z_buf[: t.size(0)]
                    log_p = torch.log_softmax(part if fp32 else torch.add(part, b, out=z), dim=1, out=z)  # fp32
                    total -= log_p.gather(1, t[:, None]).sum()
                    if grads:
                        p = torch.exp(log_p, out=part if fp32 else z)
                        p[torch.arange(p.size(0), device=p.device), t] -= 1  # softmax - one-hot
                        if not fp32:
                            part.copy_(p)
                        grad_b += p.sum(dim=0)
                if grads:
                    torch.mm(logits, w, out=grad_h[i : i + block])
                    if fp32:
                        grad_w.addmm_(logits.t(), rows)  # accumulated in the product: no [vocab, emb] temporary
                    else:
                        grad_w.add_(torch.mm(logits.t(), rows))
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = weight.dtype, bias.dtype
        return total / n

    @staticmethod
    def backward(ctx, grad):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale = grad.float() / grad_h.size(0)
        w_dtype, b_dtype = ctx.dtypes
        return (grad_h * scale).to(grad_h.dtype), (grad_w * scale).to(w_dtype), (grad_b * scale).to(b_dtype), None, None


class LanguageModel(nn.Module):
    """AWD-LSTM encoder with a tied linear decoder over the vocabulary."""

    def __init__(self, vocab_size, cfg: ModelConfig, pad_idx=1, drop_mult=1.0):
        super().__init__()
        self.encoder = AWDLSTM(vocab_size, cfg, pad_idx, drop_mult)
        self.output_dropout = LockedDropout(dropouts(cfg, drop_mult)["output_p"])
        self.decoder = nn.Linear(cfg.emb_size, vocab_size)
        self.decoder.weight = self.encoder.embedding.weight  # tied
        nn.init.zeros_(self.decoder.bias)

    def features(self, ids, state=None):
        """The last layer's raw output, the same after the output dropout, and the new state."""
        raw, _, state = self.encoder(ids, state=state)
        return raw[-1], self.output_dropout(raw[-1]), state

    def forward(self, ids, state=None):
        """Returns logits [batch, time, vocab], the last layer's raw and dropped outputs, state."""
        raw, dropped, state = self.features(ids, state)
        return self.decoder(dropped), raw, dropped, state

    def loss(self, ids, targets, state=None):
        """Mean next-token cross-entropy of `targets` [batch, time], without whole logits.

        Returns (loss, raw, dropped, state) like forward, the loss in place of the logits.
        """
        raw, dropped, state = self.features(ids, state)
        h = dropped.reshape(-1, dropped.size(-1))
        loss = SoftmaxCrossEntropy.apply(h, self.decoder.weight, self.decoder.bias, targets.reshape(-1),
                                         torch.is_grad_enabled())
        return loss, raw, dropped, state

    def groups(self):
        """Layer groups from the bottom: each LSTM layer, then the head: the decoder, whose weight is
        the tied embedding (as fastai splits a language model)."""
        return [list(rnn.parameters()) for rnn in self.encoder.rnns] + [[self.decoder.weight, self.decoder.bias]]


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

    def __init__(self, vocab_size, n_classes, cfg: ModelConfig, bptt=70, max_len=1400, pad_idx=1, drop_mult=1.0):
        super().__init__()
        self.encoder = AWDLSTM(vocab_size, cfg, pad_idx, drop_mult)
        self.bptt, self.max_len = bptt, max_len
        pooled, p = 3 * cfg.emb_size, dropouts(cfg, drop_mult)
        self.head = nn.Sequential(
            nn.BatchNorm1d(pooled),
            nn.Dropout(p["output_p"]),
            nn.Linear(pooled, cfg.head_hidden),
            nn.ReLU(),
            nn.BatchNorm1d(cfg.head_hidden),
            nn.Dropout(p["head_p"]),
            nn.Linear(cfg.head_hidden, n_classes),
        )

    def encode(self, ids, lengths):
        """BPT3C: pooled features [B, 3 * emb_size] of right-padded ids [B, T] with `lengths`.

        Each document's prefix (all but its last max_len tokens) runs without gradients: first
        its ragged start (prefix mod bptt tokens, packed), then its whole bptt chunks, aligned
        across documents at the end of their prefixes so that every call holds only whole chunks
        and runs the fused LSTM kernel (consecutive chunks read by the same documents go in one
        call). The last max_len tokens then run with gradients from the carried state; padding
        after a document's end never reaches its outputs, and pooling masks it out.
        """
        order = torch.argsort(lengths, descending=True, stable=True)
        ids, lengths = ids[order], lengths[order].to(ids.device)
        prefix = (lengths - self.max_len).clamp(min=0)
        head, chunks = prefix % self.bptt, prefix // self.bptt  # chunks is non-increasing down the batch
        state, fresh = None, True  # `fresh`: the first call of a batch draws the weight-drop masks
        with torch.no_grad():
            rows = torch.nonzero(head).squeeze(1)
            if len(rows):
                _, _, part = self.encoder(ids[rows, : int(head.max())], head[rows], None, fresh)
                state = self.encoder.zero_state(ids.size(0), ids.device)
                state = [tuple(z.index_copy(1, rows, t) for z, t in zip(zs, ts)) for zs, ts in zip(state, part)]
                fresh = False
            j = int(chunks.max())  # chunk j counts back from the end of the prefix
            while j > 0:
                n = int((chunks >= j).sum())  # documents reading chunk j: a leading block of the batch
                low = int(chunks[n]) if n < len(chunks) else 0  # chunks j .. low + 1 have the same readers
                index = (head[:n] + (chunks[:n] - j) * self.bptt)[:, None] + torch.arange((j - low) * self.bptt,
                                                                                         device=ids.device)
                old = state or self.encoder.zero_state(ids.size(0), ids.device)
                _, _, part = self.encoder(ids[:n].gather(1, index), None, [tuple(t[:, :n] for t in s) for s in old], fresh)
                state = [tuple(torch.cat([a, b[:, n:]], dim=1) for a, b in zip(ps, os)) for ps, os in zip(part, old)]
                fresh, j = False, low
        tail = lengths - prefix
        steps = torch.arange(int(tail.max()), device=ids.device)
        index = (prefix[:, None] + steps[None, :]).clamp(max=ids.size(1) - 1)
        tail_ids = ids.gather(1, index).masked_fill(steps[None, :] >= tail[:, None], self.encoder.pad_idx)
        raw, _, _ = self.encoder(tail_ids, None, state, fresh)
        pooled = concat_pool(raw[-1].float(), tail)
        return pooled[torch.argsort(order)]

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
