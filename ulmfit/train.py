"""Training loops: language models over contiguous BPTT streams (Adam or NT-ASGD) and
classifiers over length-sorted batches (BPT3C), plus prediction and evaluation.

Both loops are deterministic for a seed on CPU: the data order of epoch e comes from the
generator (seed, e), and a resumable checkpoint (model, optimizer, RNG, position) is written
atomically every `ckpt_every` steps and at each epoch end, so an interrupted run continues
where it stopped and ends with the same weights as an uninterrupted one.
"""

import hashlib
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import distributed
from .awd_lstm import ar_tar, detach_state
from .io import save_torch
from .optim import SGD, AdamW
from .precision import autocast, resolve
from .progress import Progress
from .schedules import group_rates, learning_rate, trainable_groups


def deterministic_mode():
    """With ULMFIT_DETERMINISTIC=1, ask PyTorch for deterministic algorithms wherever it has them.

    CPU runs are deterministic anyway. On a GPU, cuDNN's LSTM and the embedding's backward pass
    (atomic adds) are not, unless this is set; it costs speed.
    """
    if os.environ.get("ULMFIT_DETERMINISTIC", "0") not in ("", "0"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def make_optimizer(cfg, groups, rates):
    params = [{"params": g, "lr": r, "base_lr": r} for g, r in zip(groups, rates)]
    if getattr(cfg, "optimizer", "adam") == "asgd":
        return SGD(params, weight_decay=cfg.weight_decay)
    return AdamW(params, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)


def set_rates(opt, factor):
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * factor


class Averager:
    """Running mean of parameters since averaging started (AWD-LSTM's averaged SGD).

    After start(w_T) and update(w_T+1) ... update(w_K), `mean` holds 1/(K-T+1) * sum(w_i).
    """

    def __init__(self, params):
        self.params = list(params)
        self.count = 1
        self.mean = [p.detach().clone() for p in self.params]

    def update(self):
        self.count += 1
        for m, p in zip(self.mean, self.params):
            m.add_(p.detach() - m, alpha=1.0 / self.count)

    def swap(self):
        """Exchange the live parameters and the average (call twice to undo)."""
        for m, p in zip(self.mean, self.params):
            tmp = p.detach().clone()
            p.data.copy_(m)
            m.copy_(tmp)

    def state_dict(self):
        return {"count": self.count, "mean": self.mean}

    def load_state_dict(self, state):
        self.count = state["count"]
        for m, s in zip(self.mean, state["mean"]):
            m.copy_(s)


def fingerprint(cfg, seed, device, model, *docs):
    """What a run is made from: its config and resolved precision, seed, starting weights, data and this package's
    code. A resumable checkpoint made from anything else is not resumed."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((sorted(asdict(cfg).items()), seed, resolve(cfg.precision, device))).encode())
    for tensor in model.state_dict().values():
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    for d in docs:
        for array in (d.ids, d.offsets, d.labels) if d is not None else ():
            if array is not None:
                h.update(np.ascontiguousarray(array))
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


class Resume:
    """A resumable training state at `path`, written atomically; None disables it. It records what the run is made
    from (`made_from`, see fingerprint) and is discarded, with one log line, when loaded by a run made otherwise."""

    def __init__(self, path, every, made_from=None):
        self.path, self.every, self.made_from = path, every, made_from

    def load(self):
        if not (self.path and os.path.exists(self.path)):
            return None
        state = torch.load(self.path, weights_only=False)
        if state.get("made_from") != self.made_from:
            print(f"resume: {self.path} was made from other params, data, starting weights or code; this run starts "
                  "over", file=sys.stderr)
            return None
        return state

    def save(self, state):
        if self.path and distributed.is_main():
            save_torch(self.path, {**state, "made_from": self.made_from})

    def clear(self):
        distributed.barrier()  # every rank has finished with the file
        if self.path and distributed.is_main() and os.path.exists(self.path):
            os.remove(self.path)


def rng_state():
    return torch.get_rng_state()


# ---------------------------------------------------------------- language models


def cap_tokens(docs, max_tokens, seed):
    """A seeded subset of whole documents holding about `max_tokens` tokens (0 = all)."""
    if not max_tokens or docs.n_tokens <= max_tokens:
        return docs
    order = np.random.default_rng(seed).permutation(len(docs))
    keep = order[: int(np.searchsorted(np.cumsum(docs.lengths[order]), max_tokens)) + 1]
    return docs.subset(np.sort(keep))


def bptt_lengths(n, bptt, variable, rng):
    """Sequence lengths covering a stream of n columns (n - 1 prediction steps).

    AWD-LSTM's variable BPTT: the base is bptt with probability 0.95, else bptt / 2, and the
    length is drawn from N(base, 5), at least 5.
    """
    lens, i = [], 0
    while i < n - 1:
        length = bptt
        if variable:
            base = bptt if rng.random() < 0.95 else bptt / 2
            length = max(5, int(rng.normal(base, 5)))
        length = min(length, n - 1 - i)
        lens.append(length)
        i += length
    return lens


def lm_epoch(docs, batch_size, bptt, variable, seed, epoch):
    """One epoch's data: documents shuffled and concatenated, cut into batch_size rows [bs, n],
    and the BPTT lengths that cover it."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(docs))
    stream = np.concatenate([docs[i] for i in order]) if len(docs) else np.zeros(0, np.int32)
    n = len(stream) // batch_size
    if n < 2:
        raise ValueError(
            f"the language-model corpus has {len(stream)} tokens, too few for batch size {batch_size}; "
            "use more text or a smaller batch size"
        )
    data = torch.from_numpy(stream[: n * batch_size].astype(np.int64).reshape(batch_size, n))
    return data, bptt_lengths(n, bptt, variable, rng)


@torch.no_grad()
def lm_loss(model, docs, cfg, device="cpu", seed=0):
    """Mean next-token cross-entropy over a document stream (documents in order, fixed BPTT)."""
    was_training = model.training
    model.eval()
    stream = np.concatenate([docs[i] for i in range(len(docs))]).astype(np.int64)
    bs = max(1, min(cfg.batch_size, (len(stream) - 1) // cfg.bptt))
    n = len(stream) // bs
    data = torch.from_numpy(stream[: n * bs].reshape(bs, n)).to(device)
    total, count, state = 0.0, 0, None
    for i in range(0, n - 1, cfg.bptt):
        length = min(cfg.bptt, n - 1 - i)
        x, y = data[:, i : i + length], data[:, i + 1 : i + 1 + length]
        with autocast(cfg.precision, device):
            loss, _, _, state = model.loss(x, y, state)
        total += loss.item() * y.numel()
        count += y.numel()
    model.train(was_training)
    return total / max(count, 1)


CURVE_POINTS = 100  # about this many training-loss points per language-model run (the DVCLive curve)


class LossCurve:
    """The training loss averaged over every `every` steps, and the validation losses, each passed to
    on_step(metrics, step) as it is measured; the points are part of a checkpoint and replayed on resume."""

    def __init__(self, total_steps, on_step):
        self.every = max(1, round(total_steps / CURVE_POINTS))
        self.on_step = on_step
        self.sum, self.n, self.points = 0.0, 0, []

    def log(self, metrics, step):
        self.points.append((metrics, step))
        if self.on_step:
            self.on_step(metrics, step)

    def add(self, loss, step):
        self.sum, self.n = self.sum + loss, self.n + 1
        if step % self.every == 0:
            self.log({"train_loss": self.sum / self.n}, step)
            self.sum, self.n = 0.0, 0

    def state_dict(self):
        return {"sum": self.sum, "n": self.n, "points": self.points}

    def load_state_dict(self, state):
        self.sum, self.n = state["sum"], state["n"]
        for metrics, step in state["points"]:
            self.log(metrics, step)


def lm_position(epoch, step, tokens=0):
    """Where a language-model run stands: the next batch of `epoch`, the tokens trained on so far (every rank's),
    this rank's hidden state and loss sum."""
    return {"epoch": epoch, "batch": 0, "step": step, "tokens": tokens, "state": None, "loss_sum": 0.0, "loss_n": 0}


class LMRun:
    """A language-model run's state (optimizer, position, history, validation losses, NT-ASGD averager,
    loss curve) and its steps; checkpoint() and restore() save and load all of it."""

    def __init__(self, model, cfg, total_steps, resume, device, on_step):
        self.model, self.cfg, self.total_steps, self.resume, self.device = model, cfg, total_steps, resume, device
        groups = model.groups()
        self.opt = make_optimizer(cfg, groups, group_rates(len(groups), cfg.lr, cfg.discr))
        self.params = [p for g in groups for p in g]
        self.step_loss = distributed.data_parallel_loss(model, device)  # model.loss; under torchrun through DDP
        self.pos, self.history, self.valid_losses, self.averager = lm_position(0, 0), [], [], None
        self.curve = LossCurve(total_steps, on_step)

    def restore(self, on_epoch):
        saved = self.resume.load()
        if not saved:
            return
        if len(saved["ranks"]) != distributed.world_size():
            raise ValueError(f"{self.resume.path} was written by {len(saved['ranks'])} process(es) and this run has "
                             f"{distributed.world_size()}; resume with the same number, or delete it to start over")
        self.model.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["opt"])
        self.pos, self.history, self.valid_losses = saved["pos"], saved["history"], saved["valid_losses"]
        mine = saved["ranks"][distributed.rank()]  # each rank's own random state, hidden state and loss sum
        torch.set_rng_state(mine["rng"])
        self.pos.update(state=mine["state"], loss_sum=mine["loss_sum"])
        if saved["averager"] is not None:
            self.averager = Averager(self.params)
            self.averager.load_state_dict(saved["averager"])
        for record in self.history if on_epoch else []:  # replay the finished epochs into the log
            on_epoch(record)
        self.curve.load_state_dict(saved.get("curve", {"sum": 0.0, "n": 0, "points": []}))

    def checkpoint(self):  # called on every rank: it gathers what differs between ranks
        ranks = distributed.all_gather({"rng": rng_state(), "state": self.pos["state"], "loss_sum": self.pos["loss_sum"]})
        self.resume.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "ranks": ranks,
                          "pos": self.pos, "history": self.history, "valid_losses": self.valid_losses,
                          "averager": self.averager.state_dict() if self.averager else None,
                          "curve": self.curve.state_dict()})

    def validate(self, valid_docs):
        """The validation loss (with the averaged weights once averaging started); starts NT-ASGD's averaging
        when it has not improved for `nonmono` evaluations."""
        cfg = self.cfg
        if valid_docs is None:
            return None
        if self.averager:
            self.averager.swap()
        loss = lm_loss(self.model, valid_docs, cfg, self.device)
        if self.averager:
            self.averager.swap()
        trigger = len(self.valid_losses) > cfg.nonmono and loss > min(self.valid_losses[: -cfg.nonmono])
        self.valid_losses.append(loss)
        if cfg.optimizer == "asgd" and self.averager is None and trigger:
            self.averager = Averager(self.params)
        self.curve.log({"valid_loss": loss}, self.pos["step"])
        return loss

    def step(self, x, y, state):
        """One optimizer step on inputs x and targets y [rows, length]; returns the loss and the next hidden state."""
        cfg, length = self.cfg, x.shape[1]
        factor = learning_rate(cfg.schedule, self.pos["step"], self.total_steps, 1.0, cfg.cut_frac, cfg.ratio)
        set_rates(self.opt, factor * (length / cfg.bptt if cfg.variable_bptt else 1.0))
        self.opt.zero_grad()  # before the forward pass: the last step's gradients are not held beside its activations
        with autocast(cfg.precision, self.device):
            loss, raw, dropped, state = self.step_loss(x, y, state)
            total = loss + ar_tar(raw, dropped, cfg.alpha, cfg.beta)
        total.backward()  # under torchrun DDP averages the gradients across ranks here
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.clip)
        self.opt.step()
        if self.averager:
            self.averager.update()
        return loss.item(), detach_state(state)

    def train_epoch(self, data, lens, valid_docs, bar):
        """The rest of an epoch over `data` [rows, n] cut into `lens`; returns the last validation loss."""
        cfg, pos, valid_loss = self.cfg, self.pos, None
        state, start = pos["state"], sum(lens[: pos["batch"]])
        for b in range(pos["batch"], len(lens)):
            x, y = data[:, start : start + lens[b]], data[:, start + 1 : start + 1 + lens[b]]
            start += lens[b]
            loss, state = self.step(x, y, state)
            pos.update(batch=b + 1, step=pos["step"] + 1, tokens=pos["tokens"] + lens[b] * cfg.batch_size, state=state,
                       loss_sum=pos["loss_sum"] + loss, loss_n=pos["loss_n"] + 1)
            self.curve.add(loss, pos["step"])
            bar.update(1, lens[b] * cfg.batch_size, pos["loss_sum"] / pos["loss_n"])
            if cfg.eval_every and pos["step"] % cfg.eval_every == 0:
                valid_loss = self.validate(valid_docs)
                self.model.train()
            if pos["step"] % cfg.ckpt_every == 0:
                self.checkpoint()
        return valid_loss

    def end_epoch(self, valid_loss):
        """The epoch's record (mean training loss over every rank, validation loss), appended to the history."""
        pos = self.pos
        record = {"epoch": pos["epoch"] + 1, "step": pos["step"], "tokens": pos["tokens"],
                  "train_loss": distributed.mean(pos["loss_sum"] / max(pos["loss_n"], 1))}
        if valid_loss is not None:
            record.update(valid_loss=valid_loss, valid_ppl=math.exp(min(valid_loss, 50)))
        record["averaging"] = self.averager is not None
        self.history.append(record)
        self.pos = lm_position(pos["epoch"] + 1, pos["step"], pos["tokens"])
        return record


def train_lm(model, train_docs, valid_docs, cfg, seed=0, device="cpu", on_epoch=None, resume_path=None,
             progress=None, on_step=None):
    """Train a LanguageModel; returns the per-epoch history (train loss, validation loss/perplexity).

    Adam: AdamW(beta1, beta2) with the schedule and discriminative rates of `cfg`. ASGD: SGD at
    the scheduled rate until the validation loss has not improved for `nonmono` evaluations, then
    the weights are averaged over every iterate since that switch (NT-ASGD, Merity et al. 2017).
    Under torchrun each process trains on its share of the batch rows (see distributed.py).
    on_epoch(record) gets each epoch's record; on_step(metrics, step) the training loss about
    CURVE_POINTS times per run and the validation loss at each evaluation (see LossCurve).
    """
    deterministic_mode()
    torch.manual_seed(seed + distributed.rank())  # the same weights everywhere, other dropout masks per rank
    model.to(device)
    train_docs = cap_tokens(train_docs, cfg.max_tokens, seed)
    valid_docs = cap_tokens(valid_docs, cfg.max_valid_tokens, seed) if valid_docs is not None else None
    plans = [lm_epoch(train_docs, cfg.batch_size, cfg.bptt, cfg.variable_bptt, seed, e)[1] for e in range(cfg.epochs)]
    made_from = fingerprint(cfg, seed, device, model, train_docs, valid_docs)
    run = LMRun(model, cfg, sum(len(p) for p in plans), Resume(resume_path, cfg.ckpt_every, made_from), device, on_step)
    run.restore(on_epoch)
    model.train()
    for epoch in range(run.pos["epoch"], cfg.epochs):
        data, lens = lm_epoch(train_docs, cfg.batch_size, cfg.bptt, cfg.variable_bptt, seed, epoch)
        data = data[distributed.shard_rows(cfg.batch_size)].to(device)
        show = progress if distributed.is_main() else False  # under torchrun, progress from rank 0 only
        with Progress(len(lens), f"LM epoch {epoch + 1}/{cfg.epochs}", show, done=run.pos["batch"]) as bar:
            valid_loss = run.train_epoch(data, lens, valid_docs, bar)
        if not cfg.eval_every:
            valid_loss = run.validate(valid_docs)
        record = run.end_epoch(valid_loss)
        if on_epoch:
            on_epoch(record)
        model.train()
        run.checkpoint()
    if run.averager:
        run.averager.swap()  # the averaged weights are the result
    run.resume.clear()
    model.eval()
    return run.history


# ---------------------------------------------------------------- classifiers


SORTISH_POOL = 50  # sortish_batches sorts pools of this many batches by length


def sortish_batches(lengths, batch_size, rng, pool=SORTISH_POOL):
    """Batches of similar length: shuffle, sort pools of pool * batch_size by length, cut into
    batches, shuffle the batches. Batches of one document are dropped (BatchNorm needs two)."""
    order = rng.permutation(len(lengths))
    batches = []
    for i in range(0, len(order), batch_size * pool):
        chunk = order[i : i + batch_size * pool]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    batches = [b for b in batches if len(b) > 1]
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(docs, index, pad_idx=1, device="cpu"):
    """Right-padded ids [B, T], lengths and labels for documents `index`, longest first."""
    index = np.asarray(index)
    index = index[np.argsort(-docs.lengths[index], kind="stable")]
    lengths = docs.lengths[index]
    ids = np.full((len(index), int(lengths.max())), pad_idx, dtype=np.int64)
    for row, i in enumerate(index):
        ids[row, : lengths[row]] = docs[i]
    labels = None if docs.labels is None else torch.from_numpy(docs.labels[index]).to(device)
    return torch.from_numpy(ids).to(device), torch.from_numpy(lengths.astype(np.int64)), labels, index


@torch.no_grad()
def predict_probs(model, docs, batch_size=64, device="cpu", precision="auto"):
    """Class probabilities [N, C] for every document, in the documents' order."""
    was_training = model.training
    model.eval()
    order = np.argsort(-docs.lengths, kind="stable")
    out = np.zeros((len(docs), model.head[-1].out_features), dtype=np.float32)
    for i in range(0, len(order), batch_size):
        ids, lengths, _, index = collate(docs, order[i : i + batch_size], model.encoder.pad_idx, device)
        with autocast(precision, device):
            logits = model(ids, lengths)
        out[index] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    model.train(was_training)
    return out


def error_rate(probs, labels):
    return float((np.asarray(probs).argmax(1) != np.asarray(labels)).mean())


def confusion(probs, labels, n_classes):
    """Counts [true class, predicted class]."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels), np.asarray(probs).argmax(1)), 1)
    return m


def classifier_plans(lengths, cfg, seed):
    """Each epoch's batches; min_steps adds epochs for small label budgets."""
    first = sortish_batches(lengths, cfg.batch_size, np.random.default_rng([seed, 0]))
    if not first:
        raise ValueError(f"the training set has {len(lengths)} document(s); a classifier needs at least 2")
    epochs = max(cfg.epochs, math.ceil(cfg.min_steps / len(first)))
    return [sortish_batches(lengths, cfg.batch_size, np.random.default_rng([seed, e])) for e in range(epochs)]


def unfreeze(groups, mask):
    """Let the groups `mask` selects train, freeze the others; returns the trainable parameters."""
    for group, on in zip(groups, mask):
        for p in group:
            p.requires_grad_(on)
    return [p for group, on in zip(groups, mask) if on for p in group]


class ClassifierRun:
    """A classifier run's state (optimizer, position, history, best epoch so far) and its steps;
    checkpoint() and restore() save and load all of it."""

    def __init__(self, model, cfg, total_steps, resume, device):
        self.model, self.cfg, self.total_steps, self.resume, self.device = model, cfg, total_steps, resume, device
        self.groups = model.groups()
        self.opt = make_optimizer(cfg, self.groups, group_rates(len(self.groups), cfg.lr, cfg.discr, cfg.body_lr))
        self.pos = {"epoch": 0, "batch": 0, "step": 0, "loss_sum": 0.0, "loss_n": 0}
        self.history, self.best = [], {"error": math.inf, "epoch": 0, "state": None, "since": 0}

    def restore(self, on_epoch):
        saved = self.resume.load()
        if not saved:
            return
        self.model.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["opt"])
        torch.set_rng_state(saved["rng"])
        self.pos, self.history, self.best = saved["pos"], saved["history"], saved["best"]
        for record in self.history if on_epoch else []:
            on_epoch(record)

    def checkpoint(self):
        self.resume.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "rng": rng_state(),
                          "pos": self.pos, "history": self.history, "best": self.best})

    def step(self, docs, batch, live):
        """One optimizer step on the documents `batch`, clipping the gradients of `live`; returns the loss."""
        cfg = self.cfg
        ids, lengths, labels, _ = collate(docs, batch, self.model.encoder.pad_idx, self.device)
        set_rates(self.opt, learning_rate(cfg.schedule, self.pos["step"], self.total_steps, 1.0, cfg.cut_frac, cfg.ratio))
        self.opt.zero_grad()
        with autocast(cfg.precision, self.device):
            logits = self.model(ids, lengths)
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(live, cfg.clip)
        self.opt.step()
        return loss.item()

    def train_epoch(self, docs, batches, live, bar):
        pos = self.pos
        for b in range(pos["batch"], len(batches)):
            loss = self.step(docs, batches[b], live)
            pos.update(batch=b + 1, step=pos["step"] + 1, loss_sum=pos["loss_sum"] + loss, loss_n=pos["loss_n"] + 1)
            bar.update(1, len(batches[b]), pos["loss_sum"] / pos["loss_n"])
            if pos["step"] % self.cfg.ckpt_every == 0:
                self.checkpoint()

    def end_epoch(self, trainable, check_docs, check_key):
        """The epoch's record, with the error on `check_docs` (None: not checked this epoch) under `check_key`,
        which early stopping compares with the best so far; appended to the history."""
        pos, cfg = self.pos, self.cfg
        record = {"epoch": pos["epoch"] + 1, "step": pos["step"], "train_loss": pos["loss_sum"] / max(pos["loss_n"], 1),
                  "trainable_groups": trainable}
        if check_docs is not None:
            probs = predict_probs(self.model, check_docs, cfg.batch_size, self.device, cfg.precision)
            record[check_key] = error_rate(probs, check_docs.labels)
            if cfg.early_stop and record[check_key] < self.best["error"]:
                self.best = {"error": record[check_key], "epoch": pos["epoch"] + 1, "since": 0,
                             "state": {k: v.detach().clone() for k, v in self.model.state_dict().items()}}
            elif cfg.early_stop:
                self.best["since"] += 1
        self.history.append(record)
        self.pos = {"epoch": pos["epoch"] + 1, "batch": 0, "step": pos["step"], "loss_sum": 0.0, "loss_n": 0}
        return record


def train_classifier(model, train_docs, valid_docs, cfg, seed=0, device="cpu", on_epoch=None, resume_path=None,
                     progress=None, check_key="valid_error"):
    """Fine-tune a Classifier with `cfg`'s unfreezing strategy, schedule and discriminative rates.

    One schedule spans all T iterations of all epochs. With early_stop the weights of the epoch
    with the lowest error on `valid_docs` are kept. The history records that error under `check_key`
    (at the last epoch, and at each early-stopping check). Returns the per-epoch history.
    """
    deterministic_mode()
    torch.manual_seed(seed)
    model.to(device)
    plans = classifier_plans(train_docs.lengths, cfg, seed)
    epochs = len(plans)
    check_every = max(1, round(epochs / 10))  # validation passes for early stopping: about 10 per run
    made_from = fingerprint(cfg, seed, device, model, train_docs, valid_docs)
    run = ClassifierRun(model, cfg, sum(len(p) for p in plans), Resume(resume_path, cfg.ckpt_every, made_from), device)
    run.restore(on_epoch)
    for epoch in range(run.pos["epoch"], epochs):
        mask = trainable_groups(cfg.unfreeze, epoch, len(run.groups))
        live = unfreeze(run.groups, mask)
        model.train()
        desc = f"classifier epoch {epoch + 1}/{epochs}"
        with Progress(len(plans[epoch]), desc, progress, done=run.pos["batch"], unit="docs") as bar:
            run.train_epoch(train_docs, plans[epoch], live, bar)
        check = valid_docs is not None and (epoch == epochs - 1 or cfg.early_stop and (epoch + 1) % check_every == 0)
        record = run.end_epoch(sum(mask), valid_docs if check else None, check_key)
        if on_epoch:
            on_epoch(record)
        stop = cfg.early_stop and cfg.patience and run.best["since"] >= cfg.patience
        if stop:
            run.pos["epoch"] = epochs
        run.checkpoint()
        if stop:
            break
    if cfg.early_stop and run.best["state"] is not None:
        model.load_state_dict(run.best["state"])
    for p in model.parameters():
        p.requires_grad_(True)
    run.resume.clear()
    model.eval()
    return run.history
