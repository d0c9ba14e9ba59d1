"""Memory of one training step of each stage kind, computed from tensor sizes (not measured on a GPU).

python benchmarks/memory.py [--profile profiles/paper.yaml]   prints the table README's "Accelerator memory" shows.

What a step holds at its peak, the start of the backward pass, counted as an upper bound:
- the fp32 weights, their gradients and Adam's two moments (16 bytes a parameter), and in bf16 a bf16 copy of the
  LSTM weights and of the embedding (autocast's casts);
- the embedding dropout's masked copy of the embedding and its dense gradient (fp32);
- per token trained through (LM: batch x bptt; classifier, BPT3C: batch x max_len, the tokens before them run
  without gradients and are freed before these start), in the compute precision: each LSTM layer's input and
  LSTM_VALUES values per output unit (its gates before and after their nonlinearities, cell state and output: the
  number the CPU's LSTM kernel keeps, fitted to the peaks tests/test_memory.py measures; cuDNN's reserve space for
  the backward pass holds the gates and the cell state, about as much or less);
- the LM's head: the output dropout's copy, the loss's gradient for it, AR and TAR's fp32 inputs, and
  SoftmaxCrossEntropy's buffers (ulmfit/awd_lstm.py): one row block of logits, one fp32 softmax pass, and the fp32
  gradient of the tied embedding it saves for the backward pass;
- the classifier's concat pooling (three fp32 copies of the last layer's output) and, for the variants that stop
  early, the best weights so far.
Not counted: the CUDA context and cuDNN's workspace (about 0.5-1 GB on a current card) and the caching allocator's
fragmentation (allow 10-20%).
"""

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ulmfit.awd_lstm import SOFTMAX_ROWS, softmax_block  # noqa: E402
from ulmfit.config import ClfConfig, LMConfig, ModelConfig, from_dict  # noqa: E402

GB = 1e9
CARDS = (16, 24, 40, 80)  # GB
LSTM_VALUES = 10  # kept per output unit of an LSTM layer and token, beside the layer's input (see above)


def layers(m):
    """(inputs, outputs) of each LSTM layer of ModelConfig `m`."""
    sizes = [m.emb_size] + [m.hidden_size] * (m.n_layers - 1) + [m.emb_size]
    return list(zip(sizes[:-1], sizes[1:]))


def lstm_params(m):
    return sum(4 * n_out * (n_in + n_out) + 8 * n_out for n_in, n_out in layers(m))


def lm_params(m, vocab):
    """Parameters of the language model: the embedding (tied to the decoder), the decoder's bias, the LSTM."""
    return vocab * m.emb_size + vocab + lstm_params(m)


def clf_params(m, vocab, n_classes):
    """Parameters of the classifier: embedding, LSTM, and the head (two BatchNorm and linear blocks)."""
    pooled = 3 * m.emb_size
    return vocab * m.emb_size + lstm_params(m) + 2 * (pooled + m.head_hidden) + (pooled + 1) * m.head_hidden \
        + (m.head_hidden + 1) * n_classes


def common(m, vocab, tokens, size, params):
    """The parts every training step holds: `tokens` trained through in `size`-byte values, `params` parameters."""
    parts = {"weights, gradients, Adam": 16 * params,
             "embedding dropout copy and gradient": 2 * 4 * vocab * m.emb_size,
             "LSTM activations": tokens * size * sum(n_in + LSTM_VALUES * n_out for n_in, n_out in layers(m))}
    if size == 2:
        parts["bf16 weight copies"] = 2 * (lstm_params(m) + vocab * m.emb_size)
    return parts


def lm_memory(m, vocab, batch, bptt, size=2, device="cuda"):
    """{part: bytes} of one language-model training step (pretrain, finetune_lm) with ModelConfig `m`."""
    tokens, params = batch * bptt, lm_params(m, vocab)
    block = min(softmax_block(vocab, size, device), tokens)
    parts = common(m, vocab, tokens, size, params)
    parts["head: dropout, AR/TAR, loss gradient"] = tokens * m.emb_size * (2 * size + 2 * 4)
    parts["softmax row block and pass"] = block * vocab * size + min(SOFTMAX_ROWS, block) * vocab * 4
    parts["softmax's saved embedding gradient"] = 4 * vocab * (m.emb_size + 1)
    return parts


def clf_memory(m, vocab, batch, max_len, n_classes=2, size=2, early_stop=True):
    """{part: bytes} of one classifier training step (train_clf, curve) with ModelConfig `m`, documents of at least
    `max_len` tokens."""
    tokens, params = batch * max_len, clf_params(m, vocab, n_classes)
    parts = common(m, vocab, tokens, size, params)
    parts["concat pooling"] = tokens * m.emb_size * 3 * 4
    if early_stop:
        parts["best weights (early stopping)"] = 4 * params
    return parts


def profile_sizes(profile):
    """(ModelConfig, vocabulary, LMConfig, ClfConfig) of a profile's params file."""
    p = yaml.safe_load(Path(profile).read_text())
    model = from_dict(ModelConfig, p.get("model") or {}, "model")
    return (model, p["data"]["max_vocab"], from_dict(LMConfig, p["pretrain"], "pretrain"),
            from_dict(ClfConfig, p["clf"], "clf"))


def table(profile=ROOT / "profiles" / "paper.yaml"):
    """README's rows: each stage kind in bf16 and fp32, its total in GB and the cards it fits."""
    m, vocab, lm, clf = profile_sizes(profile)
    rows = []
    for size, precision in ((2, "bf16"), (4, "fp32")):
        for kind, parts in ((f"LM (batch {lm.batch_size} x bptt {lm.bptt})", lm_memory(m, vocab, lm.batch_size, lm.bptt, size)),
                            (f"classifier (batch {clf.batch_size} x max_len {clf.max_len})",
                             clf_memory(m, vocab, clf.batch_size, clf.max_len, size=size))):
            total = sum(parts.values()) / GB
            fits = [f"{card} GB" for card in CARDS if total + 1 < card * 0.9]  # CUDA context; 10% for fragmentation
            rows.append((kind, precision, parts, total, fits))
    return rows


def measure(kind, vocab, emb, hidden, batch, length):
    """Peak resident memory (bytes) that building a 3-layer `kind` ("lm" or "clf") model and two fp32 training steps
    on one CPU thread add to this process. Run it in a process of its own with MALLOC_MMAP_THRESHOLD_=65536, so that
    every large tensor is mapped alone and returned when freed: the resident peak then follows the live tensors."""
    import os

    import torch
    import torch.nn.functional as F

    from ulmfit.awd_lstm import Classifier, LanguageModel, ar_tar
    from ulmfit.optim import AdamW

    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = ModelConfig(emb_size=emb, hidden_size=hidden, n_layers=3)
    x, y = torch.randint(9, vocab, (batch, length)), torch.randint(9, vocab, (batch, length))
    lengths, labels = torch.full((batch,), length), torch.arange(batch) % 2
    Path("/proc/self/clear_refs").write_text("5")  # the peak so far (imports) no longer counts: it restarts here
    base = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    model = LanguageModel(vocab, m) if kind == "lm" else Classifier(vocab, 2, m, 70, length)
    opt = AdamW([{"params": list(model.parameters()), "lr": 1e-3}])
    for _ in range(2):  # the second step holds Adam's moments too
        opt.zero_grad()
        if kind == "lm":
            loss, raw, dropped, _ = model.loss(x, y)
            loss = loss + ar_tar(raw[-1], dropped[-1], 2.0, 1.0)
        else:
            loss = F.cross_entropy(model(x, lengths), labels)
        loss.backward()
        opt.step()
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status["VmHWM"].split()[0]) * 1024 - base  # the peak resident memory since clear_refs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=ROOT / "profiles" / "paper.yaml")
    parser.add_argument("--measure", nargs=6, metavar=("KIND", "VOCAB", "EMB", "HIDDEN", "BATCH", "LENGTH"),
                        help="print the measured peak of `measure` instead (tests/test_memory.py)")
    args = parser.parse_args()
    if args.measure:
        print(measure(args.measure[0], *map(int, args.measure[1:])))
        return
    for kind, precision, parts, total, fits in table(args.profile):
        detail = ", ".join(f"{name} {value / GB:.2f}" for name, value in parts.items())
        print(f"{kind}, {precision}: {total:.1f} GB ({detail}); fits {', '.join(fits) or 'no card listed'}")


if __name__ == "__main__":
    main()
