"""Language-model training and inference (tokens/s): ours (ulmfit/awd_lstm.py, with or without its regularisers),
a plain torch model of the same shapes (calibrate.py's plain_lm) and fastai's AWD_LSTM; and the loss after a fixed
number of steps in bf16 against fp32."""

import time

import numpy as np
from harness import (
    CONFIGS,
    DROPOUTS,
    cell,
    configs_of,
    fastai_config,
    find,
    imdb_docs,
    peak_mb,
    ratio,
    spread,
    step_times,
    steps_for,
    stop_after,
    synchronize,
)


def lm_batches(vocab, bs, bptt):
    """(input, target) batches of real IMDb text, consecutive slices of one token stream."""
    import torch

    docs, _ = imdb_docs(vocab)
    stream = torch.from_numpy(docs.ids.astype(np.int64))
    return [(stream[i : i + bs * bptt].view(bs, bptt), stream[i + 1 : i + 1 + bs * bptt].view(bs, bptt))
            for i in range(0, len(stream) - bs * bptt - 1, bs * bptt)]


def lm_case(config, impl, train=True, device="cpu"):
    import torch

    from ulmfit.awd_lstm import LanguageModel, ar_tar
    from ulmfit.config import ModelConfig
    from ulmfit.optim import AdamW

    emb, hidden, vocab, bs, bptt, *_ = CONFIGS[config]
    warmup, timed = steps_for(config, device)
    torch.manual_seed(0)
    batches = [(x.to(device), y.to(device)) for x, y in lm_batches(vocab, bs, bptt)]
    bf16 = impl.endswith("bf16")
    state = {"i": 0, "losses": []}
    if impl.startswith("fastai"):
        return fastai_lm_case(config, batches, train, device)
    if impl.startswith("plain"):
        from calibrate import plain_lm

        model = plain_lm(vocab, emb, hidden)
        loss_fn = model.loss
    else:
        drop = DROPOUTS if "noreg" not in impl else {k: 0.0 for k in DROPOUTS}
        model = LanguageModel(vocab, ModelConfig(emb_size=emb, hidden_size=hidden, **drop))
        alpha, beta = (0.0, 0.0) if "noreg" in impl else (2.0, 1.0)

        def loss_fn(x, y):
            loss, raw, dropped, _ = model.loss(x, y)
            return loss + ar_tar(raw, dropped, alpha, beta)
    model.to(device)
    opt = AdamW([{"params": list(model.parameters()), "lr": 1e-3}], betas=(0.7, 0.99), weight_decay=0.01)
    model.train(train)

    def step():
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        opt.zero_grad()  # before the forward pass, as ulmfit/train.py does
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16), torch.set_grad_enabled(train):
            loss = loss_fn(x, y)
        if train:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            opt.step()
        state["losses"].append(loss.item())

    times = step_times(step, warmup, timed, device)
    return {**spread("tokens_per_s", [bs * bptt] * timed, times), "peak_mem_mb": peak_mb(device)}


def fastai_lm_case(config, batches, train, device):
    import torch
    from fastai.text.all import AWD_LSTM, DataLoaders, LMDataLoader, TensorText, language_model_learner

    emb, hidden, vocab, bs, bptt, *_ = CONFIGS[config]
    warmup, timed = steps_for(config, device)
    stream = torch.cat([x.reshape(-1).cpu() for x, _ in batches])
    items = [TensorText(stream[i : i + 5000]) for i in range(0, len(stream), 5000)]
    dl = LMDataLoader(items, bs=bs, seq_len=bptt, shuffle=False)
    dls = DataLoaders(dl, dl, device=torch.device(device))
    dls.vocab = [f"w{i}" for i in range(vocab)]
    learn = language_model_learner(dls, AWD_LSTM, config=fastai_config(emb, hidden), pretrained=False, drop_mult=1.0)
    times, sizes = [], []
    if train:
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, 1e-3, cbs=stop_after(warmup + timed, times, sizes, device))
    else:
        model = learn.model.eval()
        with torch.no_grad():
            for x, _ in batches[: warmup + timed]:
                model.reset()
                synchronize(device)
                start = time.perf_counter()
                model(x)
                synchronize(device)
                times.append(time.perf_counter() - start)
    times = times[warmup:]
    return {**spread("tokens_per_s", [bs * bptt] * len(times), times), "peak_mem_mb": peak_mb(device)}


def lm_loss_check(steps=40):
    """Loss after a fixed number of steps, bf16 against fp32, same weights and batches."""
    import torch

    from ulmfit.awd_lstm import LanguageModel
    from ulmfit.config import ModelConfig
    from ulmfit.optim import AdamW

    emb, hidden, vocab, bs, bptt, _, _ = CONFIGS["cpu-profile"]
    batches = lm_batches(vocab, bs, bptt)
    out = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = LanguageModel(vocab, ModelConfig(emb_size=emb, hidden_size=hidden, **DROPOUTS))
        opt = AdamW([{"params": list(model.parameters()), "lr": 3e-3}], betas=(0.7, 0.99), weight_decay=0.01)
        losses = []
        for x, y in batches[:steps]:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = model.loss(x, y)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        out[precision] = float(np.mean(losses[-5:]))
    out["relative_difference"] = abs(out["bf16"] - out["fp32"]) / out["fp32"]
    out["steps"] = steps
    return out


def lm_train_section(r):
    lines = ["## Language-model training (tokens/s)", "",
             "Headline ratios compare the same dtype: ours fp32 / fastai fp32 and ours bf16 / plain bf16. The last ratio, "
             "ours bf16 / fastai fp32, is what each user gets by default on a CPU (fastai's MixedPrecision autocasts only "
             "on CUDA), not a measure of the engine.", "",
             "| Config | ours bf16 | ours fp32 | ours bf16 without regularisation | plain bf16 | plain fp32 | fastai fp32 "
             "| **ours fp32 / fastai fp32** | **ours bf16 / plain bf16** | ours bf16 / fastai fp32 (defaults) "
             "| regularisation overhead (bf16) | peak MB (ours bf16, else fp32) |",
             "|---|" + "---:|" * 11]
    for c in configs_of(r, "lm_train"):
        g = {i: find(r, "lm_train", c, i, "tokens_per_s") for i in ("ours_bf16", "ours_fp32", "ours_noreg_bf16", "plain_bf16",
                                                                  "plain_fp32", "fastai_fp32")}
        over = "–" if not (g["ours_bf16"] and g["ours_noreg_bf16"]) else f"{(g['ours_noreg_bf16'] / g['ours_bf16'] - 1) * 100:+.1f}%"
        lines.append(f"| {c} {CONFIGS[c][:3]} | " + " | ".join(cell(r, "lm_train", c, i, "tokens_per_s") for i in g)
                     + f" | {ratio(g['ours_fp32'], g['fastai_fp32'])} | {ratio(g['ours_bf16'], g['plain_bf16'])} | "
                     f"{ratio(g['ours_bf16'], g['fastai_fp32'])} | {over} | "
                     f"{find(r, 'lm_train', c, 'ours_bf16', 'peak_mem_mb') or find(r, 'lm_train', c, 'ours_fp32', 'peak_mem_mb') or 0:,.0f} |")
    check = find(r, "lm_loss_check", "cpu-profile", "ours", "relative_difference")
    if check is not None:
        row = next(x for x in r["cases"] if x["case"] == "lm_loss_check")
        lines += ["", f"Loss after {row['steps']} steps from the same weights and batches: fp32 {row['fp32']:.4f}, "
                      f"bf16 {row['bf16']:.4f} (relative difference {check * 100:.2f}%)."]
    return lines


def lm_infer_section(r):
    lines = ["", "## Language-model inference (tokens/s)", "", "| Config | ours bf16 | ours fp32 | plain fp32 | fastai fp32 "
             "| **ours fp32 / fastai fp32** | ours fp32 / plain fp32 | ours bf16 / fastai fp32 (defaults) |", "|---|" + "---:|" * 7]
    for c in configs_of(r, "lm_infer"):
        g = {i: find(r, "lm_infer", c, i, "tokens_per_s") for i in ("ours_bf16", "ours_fp32", "plain_fp32", "fastai_fp32")}
        lines.append(f"| {c} | " + " | ".join(cell(r, "lm_infer", c, i, "tokens_per_s") for i in g)
                     + f" | {ratio(g['ours_fp32'], g['fastai_fp32'])} | {ratio(g['ours_fp32'], g['plain_fp32'])} | "
                     f"{ratio(g['ours_bf16'], g['fastai_fp32'])} |")
    return lines
