"""Stage report: python experiments/report.py

Reads every run's metrics and writes reports/: index.md (every table), figures/ (Figure 3 per
dataset and combined, the language models' loss curves), metrics.json (`dvc metrics show`),
curve.csv (`dvc plots show`), runs.csv (one row per classifier run) and, when params has a compute-scaling study,
scaling.csv (one row per level and seed) and figures/scaling.png. Every number comes from the runs, except the columns
labelled "paper", which come from experiments/paper.yaml.
"""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import yaml
from common import ROOT, listed, load_params, load_variants

from ulmfit.awd_lstm import lm_flops
from ulmfit.io import atomic_path, write_json, write_text
from ulmfit.stats import fmt, mean_ci, paired_diff, trend

NAMES = {"imdb": "IMDb", "trec": "TREC-6", "ag_news": "AG", "dbpedia_14": "DBpedia", "yelp_polarity": "Yelp-bi",
         "yelp_review_full": "Yelp-full"}


def read(path):
    return json.loads(Path(path).read_text())


def name(dataset):
    return NAMES.get(dataset, dataset)


def load_runs(root):
    """One row per classifier run: ablation runs (runs/ablation/<dataset>/<variant>/<seed>) and
    Figure 3 runs (runs/curve/<dataset>/<variant>-<budget>/<seed>)."""
    rows = []
    for kind in ("ablation", "curve"):
        for path in sorted((root / "runs" / kind).glob("*/*/*/metrics.json")):
            m = read(path)
            variant = path.parent.parent.name if kind == "ablation" else path.parent.parent.name.rsplit("-", 1)[0]
            rows.append({"dataset": path.parents[2].name, "kind": kind, "variant": variant, "seed": int(path.parent.name),
                         "n_train": m["n_train"], "n_select": m.get("n_select", 0), "valid_error": m["valid_error"], "train_loss": m["train_loss"],
                         "loss_flatness": m["loss_flatness"], "best_epoch": m["best_epoch"], "epochs": len(m["history"]),
                         "wall_s": m["wall_s"], "peak_mem_mb": m["peak_mem_mb"], "started": m["started"],
                         "finished": m["finished"], "own_lm": m.get("own_lm"), "precision": m.get("precision"),
                         "device_name": m.get("device_name")})
    return pd.DataFrame(rows)


def load_bow(root):
    """One row per bag-of-words run (runs/bow/<dataset>.json): dataset, seed, n_train, ablation, valid_error, test_error."""
    return pd.DataFrame([{"dataset": path.stem, **r} for path in sorted((root / "runs" / "bow").glob("*.json"))
                         for r in read(path)["runs"]])


def by_seed(df, column="valid_error", **where):
    for key, value in where.items():
        df = df[df[key] == value]
    return dict(zip(df.seed, df[column]))


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def paper_cell(value):
    return "–" if value is None else f"{value:.2f}"


def ablation_table(spec, runs, bow, datasets, paper, metrics):
    header = ["Variant"]
    for d in datasets:
        header += [f"{name(d)} (ours)", f"{name(d)} Δ vs ULMFiT (ours)", f"{name(d)} (paper)"]
    rows = []
    for label, variant in spec["rows"]:
        row = [label]
        for d in datasets:
            errors = by_seed(runs, kind="ablation", dataset=d, variant=variant)
            reference = by_seed(runs, kind="ablation", dataset=d, variant="ulmfit")
            mean, half, _ = mean_ci(errors.values())
            row += [fmt(mean, half), "(reference)" if variant == "ulmfit" else fmt(*paired_diff(errors, reference)[:2], signed=True),
                    paper_cell(paper["validation_error"].get(variant, {}).get(d))]
            metrics.setdefault(d, {})[f"valid_error_{variant}"] = None if math.isnan(mean) else round(mean, 5)
        rows.append(row)
    row = ["Bag of words (TF-IDF + logistic regression)"]
    for d in datasets:
        errors = by_seed(bow, dataset=d, ablation=True)
        reference = by_seed(runs, kind="ablation", dataset=d, variant="ulmfit")
        row += [fmt(*mean_ci(errors.values())[:2]), fmt(*paired_diff(errors, reference)[:2], signed=True), "–"]
    return md_table(header, rows + [row])


def figure3(curve, out):
    """One PNG per dataset and a combined one; bands are the 95% confidence intervals."""
    sns.set_theme(style="whitegrid")
    datasets = list(dict.fromkeys(curve.dataset))
    combined, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    files = []
    for ax_all, dataset in zip(axes[0], datasets):
        fig, ax = plt.subplots(figsize=(5.5, 4))
        sub = curve[curve.dataset == dataset]
        for target in (ax, ax_all):
            sns.lineplot(data=sub, x="examples", y="error", hue="method", marker="o", ax=target, errorbar=None)
            for (_, g), color in zip(sub.groupby("method", sort=False), sns.color_palette()):
                g = g.sort_values("examples")
                target.fill_between(g.examples, g.error - g.ci.fillna(0), g.error + g.ci.fillna(0), alpha=0.2, color=color)
            target.set(xscale="log", xlabel="labelled training examples", ylabel="validation error (%)", title=dataset)
        fig.tight_layout()
        file = f"figures/figure3_{dataset.lower().replace('-', '')}.png"
        with atomic_path(out / file) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        plt.close(fig)
        files.append(file)
    combined.tight_layout()
    with atomic_path(out / "figures" / "figure3.png") as tmp:
        combined.savefig(tmp, dpi=110, format="png")
    plt.close(combined)
    return ["figures/figure3.png"] + files


SIGN_TABLES = ("table6", "table7")  # the paper's ablations whose directions the report counts


def header(p):
    text = ("# ULMFiT reproduction report\n\n"
            f"Seeds: {', '.join(map(str, p['seeds']))}. Every number of ours is the mean over the seeds with the "
            "half-width of its 95% Student-t confidence interval, in percent error. Columns marked *paper* are "
            "Howard & Ruder (2018)'s published numbers, shown for comparison; they come from the full datasets, "
            "WikiText-103 and the paper's model sizes.\n")
    return [text] + (["## This profile\n\n" + p["notes"].strip() + "\n"] if p.get("notes") else [])


def data_section(p, infos, datasets):
    corpus = infos["corpus"]
    notes = [f"- Pretraining corpus: `{p['corpus']['name']}`"
             + (" (English Wikipedia articles laid out like WikiText, standing in for WikiText-103, whose train split "
                "is not available offline)" if p["corpus"]["name"] == "wikipedia_en" else "")
             + f": {corpus['train']['docs']:,} articles, {corpus['train']['tokens']:,} tokens, vocabulary {corpus['vocab_size']:,}."]
    for d in datasets:
        i = infos[d]
        budget = p[d]["budget"] or i["train"]["docs"]
        notes.append(f"- {name(d)}: a labelled pool of {i['train']['docs']:,} training examples; the ablations use "
                     f"{budget:,} of them per seed; {i['valid']['docs']:,} validation and {i['test']['docs']:,} test "
                     "examples" + (f"; {i['unlabelled']['docs']:,} unlabelled texts for LM fine-tuning" if "unlabelled" in i else "")
                     + f"; vocabulary {i['vocab_size']:,}." + (f" **AG News: {i['repartitioned']}.**" if "repartitioned" in i else ""))
    return "## Data\n\n" + "\n".join(notes) + "\n"


def main_results(root, datasets, bow, paper, metrics):
    """Test error of ULMFiT forward, backward, their ensemble and bag of words, per dataset."""
    rows = []
    for d in datasets:
        path = root / "runs" / "evaluate" / d / "summary.json"
        ev = read(path) if path.exists() else {}
        errors = {"fwd": {s: r["models"]["ulmfit"]["test_error"] for s, r in ev.items() if "ulmfit" in r["models"]},
                  "bwd": {s: r["models"]["bwd"]["test_error"] for s, r in ev.items() if "bwd" in r["models"]},
                  "ensemble": {s: r["ensemble_test_error"] for s, r in ev.items() if "ensemble_test_error" in r},
                  "bow": by_seed(bow, "test_error", dataset=d, ablation=True) if len(bow) else {}}
        rows.append([name(d)] + [fmt(*mean_ci(e.values())[:2]) for e in errors.values()]
                    + [paper_cell(paper["test_error"].get(d)), paper_cell(paper["best_prior_test_error"].get(d))])
        metrics.setdefault(d, {}).update({f"test_error_{k}": mean_ci(e.values())[0] for k, e in errors.items()})
    return ("## Main results: test error (%)\n\nULMFiT forward, backward, and the ensemble that averages the two "
            "classifiers' probabilities, beside the bag-of-words baseline trained on the same labelled examples "
            "(TF-IDF over the same tokens, logistic regression).\n\n"
            + md_table(["Dataset", "ULMFiT fwd (ours)", "ULMFiT bwd (ours)", "fwd + bwd (ours)", "Bag of words (ours)",
                        "ULMFiT (paper)", "best prior (paper)"], rows)
            + "\n\nThe paper's bidirectional result (section 5): IMDb test error 5.30 forward, 4.58 forward + backward.\n")


SCORING = ("Every row is scored on the validation split held out from train. Variants that stop early (every one but "
           "ULMFiT's recipe and the LM variants) choose their epoch on a separate selection split: labelled training "
           "examples outside the seed's budget, as many as the validation split holds, never on the split that scores "
           "them. Δ: the variant minus ULMFiT on the same seed and examples (negative: better than ULMFiT).")


def ablation_sections(p, variants, runs, bow, paper, metrics):
    sections = []
    for key in ("table4", "table5", "table6", "table7"):
        spec = variants["tables"][key]
        missing = [v for _, v in spec["rows"] if v not in listed(p, "clf_variants")]
        if missing:
            sections.append(f"## {spec['title']}\n\nNot run in this profile: {', '.join(missing)} not in clf_variants.\n")
            continue
        sections.append(f"## {spec['title']}\n\nValidation error (%). {SCORING}\n\n"
                        + ablation_table(spec, runs, bow, p["datasets"], paper, metrics) + "\n")
    return sections


def directions(p, variants, runs, paper):
    """One row per (table, variant, dataset) of SIGN_TABLES: our paired difference to ULMFiT beside
    the paper's difference, whether the signs agree and whether our interval excludes zero."""
    rows = []
    for key in SIGN_TABLES:
        for label, variant in variants["tables"][key]["rows"]:
            if variant == "ulmfit" or variant not in listed(p, "clf_variants"):
                continue
            for d in p["datasets"]:
                ours = by_seed(runs, "valid_error", kind="ablation", dataset=d, variant=variant)
                mean, half, _ = paired_diff(ours, by_seed(runs, "valid_error", kind="ablation", dataset=d, variant="ulmfit"))
                theirs = paper["validation_error"].get(variant, {}).get(d)
                ref = paper["validation_error"]["ulmfit"].get(d)
                paper_diff = None if theirs is None or ref is None else theirs - ref
                rows.append({"table": key, "label": label, "dataset": d, "diff": mean, "half": half, "paper_diff": paper_diff,
                             "agrees": paper_diff is not None and not math.isnan(mean) and (mean > 0) == (paper_diff > 0),
                             "significant": not math.isnan(half) and abs(mean) > half})
    return rows


def directions_section(rows, metrics):
    agree = [r for r in rows if r["agrees"]]
    sig = [r for r in agree if r["significant"]]
    against = [r for r in rows if not r["agrees"] and r["significant"]]
    metrics["directions"] = {"cells": len(rows), "agree": len(agree), "agree_significant": len(sig),
                             "opposite_significant": len(against)}
    table = md_table(["Table", "Variant", "Dataset", "Δ vs ULMFiT (ours)", "Δ (paper)", "Same sign", "CI excludes 0"],
                     [[r["table"][-1], r["label"], name(r["dataset"]), fmt(r["diff"], r["half"], signed=True),
                       "–" if r["paper_diff"] is None else f"{r['paper_diff']:+.2f}", "yes" if r["agrees"] else "no",
                       "yes" if r["significant"] else "no"] for r in rows])
    return (f"## Directions: do Tables 6 and 7 point the paper's way?\n\n**{len(agree)} of the {len(rows)} cells** of "
            f"Tables 6 and 7 (every row but ULMFiT's, every dataset) have the sign of the paper's difference to ULMFiT; "
            f"{len(sig)} of them with a 95% interval that excludes zero. {len(against)} cells differ from the paper with an "
            "interval that excludes zero.\n\n" + table + "\n")


def curve_frame(datasets, variants, runs, bow):
    rows = []
    for d in datasets:
        for label, variant in variants["curve"]:
            sel = runs[(runs.dataset == d) & (runs.variant == variant)]
            for n, g in sel.groupby("n_train"):
                mean, half, k = mean_ci(g.valid_error)
                rows.append({"dataset": name(d), "method": label, "variant": variant, "examples": n, "error": 100 * mean,
                             "ci": 100 * half, "seeds": k})
        sel = bow[bow.dataset == d] if len(bow) else bow
        for n, g in (sel.groupby("n_train") if len(sel) else []):
            mean, half, k = mean_ci(g.valid_error)
            rows.append({"dataset": name(d), "method": "Bag of words", "variant": "bow", "examples": n, "error": 100 * mean,
                         "ci": 100 * half, "seeds": k})
    return pd.DataFrame(rows)


def figure3_section(curve, out):
    files = figure3(curve, out)
    cells = curve.assign(cell=[fmt(e / 100, c / 100) for e, c in zip(curve.error, curve.ci)])
    wide = cells.pivot_table(index=["dataset", "method"], columns="examples", values="cell", aggfunc="first").reset_index()
    return ("## Figure 3: validation error against the number of labelled examples\n\n"
            "Shaded bands: 95% confidence intervals over seeds (each seed draws its own labelled examples). "
            "Supervised: the LM is fine-tuned on the labelled examples only; semi-supervised: on all of the "
            "task's training text, labelled and unlabelled. From scratch stops early on a selection split (see Table 7). "
            "The point at the ablation budget is the ablation run itself.\n\n"
            + "\n".join(f"![{f}]({f})" for f in files) + "\n\n"
            + md_table([str(c) for c in wide.columns], wide.fillna("–").values.tolist()) + "\n")


def findings_section(p, metrics, rows, curve):
    """The paper's main findings, checked one by one on this run's numbers."""
    checks = []
    for d in p["datasets"]:
        m, n = metrics.get(d, {}), name(d)
        bow_err = m.get("test_error_bow")
        for key, what in (("fwd", "ULMFiT forward"), ("ensemble", "the fwd + bwd ensemble")):
            err = m.get(f"test_error_{key}")
            if err is not None and bow_err is not None and not (math.isnan(err) or math.isnan(bow_err)):
                checks.append((n, f"{what} beats bag of words (test)", err < bow_err, f"{100 * err:.2f} vs {100 * bow_err:.2f}"))
        for r in rows:
            if r["dataset"] == d and r["label"] in ("From scratch", "No LM fine-tuning", "Last"):
                checks.append((n, f"ULMFiT beats {r['label'].lower()}, interval excluding 0", r["diff"] > 0 and r["significant"],
                               fmt(r["diff"], r["half"], signed=True)))
        sub = curve[(curve.dataset == n)] if len(curve) else curve
        semi = sub[sub.variant == "ulmfit"].sort_values("examples") if len(sub) else sub
        if len(semi) > 1:
            checks.append((n, "semi-supervised ULMFiT's error falls with more labels", bool((semi.error.diff().dropna() < 0).all()),
                           " → ".join(f"{e:.1f}" for e in semi.error)))
        scratch = sub[(sub.variant == "scratch") & (sub.examples == 500)] if len(sub) else sub
        if len(semi) and len(scratch) and (semi.examples == 100).any():
            e100 = float(semi[semi.examples == 100].error.iloc[0])
            checks.append((n, "ULMFiT with 100 labels at least as good as scratch with 500", e100 <= float(scratch.error.iloc[0]),
                           f"{e100:.1f} vs {float(scratch.error.iloc[0]):.1f}"))
    metrics["findings"] = {"checked": len(checks), "hold": sum(c[2] for c in checks)}
    return ("## Findings: what this run reproduces\n\nThe paper's claims checked on this run's numbers (a check holds or "
            "does not; nothing here is tuned on the test split).\n\n"
            + md_table(["Dataset", "Claim", "Holds", "Ours (%)"], [[a, b, "yes" if c else "**no**", e] for a, b, c, e in checks])
            + f"\n\n{sum(c[2] for c in checks)} of {len(checks)} checks hold.\n" + scaling_findings(metrics.get("scaling")))


def scaling_findings(s):
    """What the compute-scaling study shows at this scale and what it cannot ('' without a study)."""
    if not s:
        return ""
    levels, fit = s["levels"], s["log_flops_fit"]
    lo, hi = (100 * v for v in fit["slope_ci"])
    one = levels["1"]
    trend = (f"test error falls by {-100 * fit['slope']:.2g} points per 10x LM compute (95% interval {-hi:.2g} to "
             f"{-lo:.2g})" if hi < 0 else f"no trend is resolved: the slope's 95% interval ({lo:+.2g} to {hi:+.2g} points "
             "per 10x LM compute) includes 0 or is positive")
    flops = [v["lm_flops"] for v in levels.values()]
    cross, (c_lo, c_hi) = fit["crossing_flops"], fit["crossing_flops_ci"]
    where = ("the fitted line does not reach bag of words" if cross is None else
             f"the fitted line reaches bag of words at about {cross / one['lm_flops']:.3g}x the default LM compute "
             f"({cross:.2g} FLOPs, 95% interval {sci(c_lo)} to {sci(c_hi)}; about {fit['crossing_gpu_hours']:.2g} GPU "
             "hours at the stated rate)" + ("" if min(flops) <= cross <= max(flops) else
                                            ", an **extrapolation** beyond the measured levels"))
    return (f"\nFrom the compute-scaling study ({name(s['dataset'])}, ULMFiT forward, section \"Compute scaling\"):\n\n"
            f"- What it shows: over {len(levels)} levels spanning {max(flops) / min(flops):.0f}x of LM compute, {trend}; at the default "
            f"level ULMFiT's {fmt(one['test_error'], one['test_error_ci'])}% stands against "
            f"bag of words' {fmt(s['bow_test_error'], s['bow_test_error_ci'])}%, and {where}.\n"
            "- What it cannot show: whether the line stays straight beyond the measured levels (a fit in log compute "
            "says nothing about flattening or steepening); anything about width, vocabulary or the classifier, which "
            "stay at the profile's (only tokens vary); other datasets or label budgets. The paper's own IMDb language "
            f"model ({PAPER_IMDB_LM_FLOPS:.2g} training FLOPs, {PAPER_IMDB_LM_FLOPS / one['lm_flops']:,.0f}x the default "
            "level) is both wider (400/1150, 60k vocabulary) and trained on more text, so this study cannot say "
            "which of the two its result needs.\n")


def lm_section(root, p, metrics):
    rows = []
    for path in sorted((root / "models" / "pretrained").glob("*/metrics.json")):
        m = read(path)
        rows.append([f"pretrained `{path.parent.name}`", p["corpus"]["name"], f"{m['valid_ppl']:.1f}", f"{m['wall_s']:.0f}"])
        metrics.setdefault("lm", {})[f"pretrained_{path.parent.name}_ppl"] = m["valid_ppl"]
    for path in sorted((root / "models" / "lm").glob("*/*/metrics.json")):
        m = read(path)
        rows.append([f"fine-tuned `{path.parent.name}`", name(path.parent.parent.name), f"{m['valid_ppl']:.1f}",
                     f"{m['wall_s']:.0f}"])
        metrics.setdefault("lm", {})[f"{path.parent.parent.name}_{path.parent.name}_ppl"] = m["valid_ppl"]
    return ("## Language models: validation perplexity\n\nEach over its own vocabulary: pretrained models on the "
            "corpus's validation articles, fine-tuned ones on the dataset's validation texts.\n\n"
            + md_table(["Model", "Data", "Perplexity", "Wall time (s)"], rows) + "\n")


PAPER_IMDB_LM_FLOPS = 3 * lm_flops(400, 1150, 60_000) * (10 * 120e6 + 10 * 29.7e6)  # the paper profile's forward
# IMDb LM: 10 epochs of WikiText-103 (120M tokens) and 10 of IMDb's 29.7M (README "Paper profile: expected GPU hours")
GPU_FLOPS = 40_000 * 3 * lm_flops(400, 1150, 60_000)  # model FLOP/s on one GPU, stated, not measured: README's
# assumed 40,000 LM-training tokens/s at the paper's sizes (one H100-class card) x 3 (forward and backward) x the
# forward FLOPs a token there (88.4 MFLOP)


def scaling_levels(p):
    """The compute-scaling study's levels (multiples of the profile's LM training tokens), the default 1 included;
    [] when params has no study."""
    levels = (p.get("scaling") or {}).get("levels") or []
    return sorted({1, *levels}) if levels else []


def scaling_paths(root, dataset, level, seeds):
    """A level's pretrained and fine-tuned LM metrics and its test results by seed: level 1 is the profile's
    default run; the others are under models/scaling/<level> and runs/scaling/<level>/<seed>."""
    if level == 1:
        return (root / "models" / "pretrained" / "fwd" / "metrics.json", root / "models" / "lm" / dataset / "fwd" / "metrics.json",
                {s: root / "runs" / "evaluate" / dataset / f"{s}.json" for s in seeds})
    models, runs = root / "models" / "scaling" / str(level), root / "runs" / "scaling" / str(level)
    return (models / "pretrained" / "metrics.json", models / "lm" / "metrics.json",
            {s: runs / str(s) / "test.json" for s in seeds})


def scaling_frame(root, p, bow):
    """One row per level and seed of the compute-scaling study (level, seed, pretrain_flops, finetune_flops, lm_flops,
    ppl: the fine-tuned LM's validation perplexity, test_error of ULMFiT fwd), and bag of words' test errors by seed
    at the ablation budget. An empty frame without a study."""
    rows, dataset = [], (p.get("scaling") or {}).get("dataset")
    for level in scaling_levels(p):
        pretrained, lm, tests = scaling_paths(root, dataset, level, p["seeds"])
        pretrained, lm = read(pretrained), read(lm)
        rows += [{"level": level, "seed": seed, "pretrain_flops": pretrained["train_flops"],
                  "finetune_flops": lm["train_flops"], "lm_flops": pretrained["train_flops"] + lm["train_flops"],
                  "ppl": lm["valid_ppl"], "test_error": read(path)["models"]["ulmfit"]["test_error"]}
                 for seed, path in tests.items()]
    bow_errors = by_seed(bow, "test_error", dataset=dataset, ablation=True) if rows and len(bow) else {}
    return pd.DataFrame(rows), bow_errors


def level_means(frame):
    """One row per level: its FLOPs and perplexity, and the mean test error over seeds with its 95% interval."""
    rows = []
    for _, g in frame.groupby("level"):
        mean, half, n = mean_ci(g.test_error)
        rows.append({**g.iloc[0][["level", "pretrain_flops", "finetune_flops", "lm_flops", "ppl"]].to_dict(),
                     "error": mean, "ci": half, "seeds": n})
    return pd.DataFrame(rows)


def scaling_figure(frame, levels, fit, bow, dataset, out):
    """Left: test error against LM FLOPs (seeds, level means with 95% intervals, the fitted line, bag of words with
    its 95% band); right: the fine-tuned LM's validation perplexity against LM FLOPs."""
    sns.set_theme(style="whitegrid")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.scatter(frame.lm_flops, 100 * frame.test_error, s=12, alpha=0.4, color="C0", label="ULMFiT fwd, each seed")
    left.errorbar(levels.lm_flops, 100 * levels.error, yerr=100 * levels.ci.fillna(0), fmt="o", color="C0", capsize=3,
                  label="mean over seeds, 95% CI")
    if not math.isnan(fit["slope"]):
        xs = np.linspace(np.log10(levels.lm_flops.min()), np.log10(levels.lm_flops.max()), 50)
        left.plot(10**xs, 100 * (fit["intercept"] + fit["slope"] * xs), "--", color="C0", label="fit: error ~ log10 FLOPs")
    mean, half = bow
    if not math.isnan(mean):
        left.axhline(100 * mean, color="C1", label="bag of words, 95% CI")
        if not math.isnan(half):
            left.axhspan(100 * (mean - half), 100 * (mean + half), color="C1", alpha=0.2)
    left.set(xscale="log", xlabel="LM training FLOPs (pretraining + fine-tuning)", ylabel=f"{name(dataset)} test error (%)")
    left.legend(fontsize=8)
    right.plot(levels.lm_flops, levels.ppl, "o-", color="C2")
    right.set(xscale="log", xlabel="LM training FLOPs (pretraining + fine-tuning)", ylabel=f"{name(dataset)} LM validation perplexity")
    fig.tight_layout()
    with atomic_path(out / "figures" / "scaling.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return "figures/scaling.png"


def num(value):
    """A float for metrics.json: None for None, nan or infinity."""
    return None if value is None or not math.isfinite(value) else float(value)


def pow10(value):
    """10 ** value (inf past the float range); None for None, an unbounded end."""
    with np.errstate(over="ignore"):
        return None if value is None else float(np.power(10.0, value))


def sci(value):
    return "unbounded" if value is None else f"{value:.3g}"


def where(fit, x):
    """Whether the crossing lies outside the measured range of x."""
    return "**extrapolation**" if not min(x) <= fit["crossing"] <= max(x) else "within the measured range"


def compute_text(fit, log_flops, default_flops, bow_text):
    """The log-compute fit's crossing in FLOPs, in multiples of the default level's and in GPU hours."""
    if fit["crossing"] is None:
        return (f"Against log compute the trend does not reach bag of words ({bow_text}) within the data's resolution: "
                "the slope's 95% interval includes 0 or has error rising with compute.")
    flops, (lo, hi) = pow10(fit["crossing"]), (pow10(e) for e in fit["crossing_ci"])
    hours = [None if v is None else v / GPU_FLOPS / 3600 for v in (flops, lo, hi)]
    return (f"Against log compute, {where(fit, log_flops)}: ULMFiT's fitted line reaches bag of words ({bow_text}) at "
            f"**{sci(flops)} LM FLOPs** (95% interval {sci(lo)} to {sci(hi)}), {flops / default_flops:.3g}x the default "
            f"level's {default_flops:.3g}; that is **{sci(hours[0])} GPU hours** ({sci(hours[1])} to {sci(hours[2])}) at "
            f"{GPU_FLOPS:.3g} model FLOP/s, a stated rate, not measured (README's assumed 40,000 LM-training tokens/s "
            "on one H100-class GPU at the paper's sizes x 3 x 88.4 MFLOP a token).")


def ppl_text(fit, ppl, bow_text):
    if fit["crossing"] is None:
        return (f"Against perplexity the trend does not reach bag of words ({bow_text}) within the data's resolution: "
                "the slope's 95% interval includes 0 or has error falling as perplexity rises.")
    lo, hi = fit["crossing_ci"]
    below = " (below 1, which no language model reaches)" if fit["crossing"] < 1 else ""
    return (f"Against perplexity, {where(fit, ppl)}: the fitted line reaches bag of words at a fine-tuned LM "
            f"perplexity of **{fit['crossing']:.3g}**{below} (95% interval {sci(lo)} to {sci(hi)}).")


def slope_cell(fit, unit):
    lo, hi = fit["slope_ci"]
    return "–" if math.isnan(fit["slope"]) else f"{100 * fit['slope']:+.3g} ({100 * lo:+.3g} to {100 * hi:+.3g}) {unit}"


def scaling_metrics(dataset, levels, bow, compute, ppl):
    flops = pow10(compute["crossing"])
    default = float(levels.lm_flops[levels.level == 1].iloc[0])
    return {"dataset": dataset, "gpu_flops": GPU_FLOPS, "bow_test_error": num(bow[0]), "bow_test_error_ci": num(bow[1]),
            "levels": {f"{r.level:g}": {"lm_flops": r.lm_flops, "ppl": r.ppl, "test_error": num(r.error),
                                        "test_error_ci": num(r.ci), "seeds": int(r.seeds)} for r in levels.itertuples()},
            "log_flops_fit": {"slope": num(compute["slope"]), "slope_ci": [num(v) for v in compute["slope_ci"]],
                              "crossing_log10_flops": num(compute["crossing"]), "crossing_flops": num(flops),
                              "crossing_flops_ci": [num(pow10(e)) for e in compute["crossing_ci"]],
                              "crossing_multiple_of_default": None if flops is None else num(flops / default),
                              "crossing_gpu_hours": None if flops is None else num(flops / GPU_FLOPS / 3600),
                              "crossing_gpu_hours_ci": [None if e is None else num(pow10(e) / GPU_FLOPS / 3600)
                                                        for e in compute["crossing_ci"]]},
            "ppl_fit": {"slope": num(ppl["slope"]), "slope_ci": [num(v) for v in ppl["slope_ci"]],
                        "crossing_ppl": num(ppl["crossing"]), "crossing_ppl_ci": [num(v) for v in ppl["crossing_ci"]]}}


def scaling_section(p, frame, bow_errors, out, metrics):
    """The compute-scaling study: figure, table, the two fits and where they reach bag of words; reports/scaling.csv
    and metrics["scaling"]. Nothing (an empty list) without a study."""
    if frame.empty:
        return []
    dataset, levels = p["scaling"]["dataset"], level_means(frame)
    bow = mean_ci(bow_errors.values())[:2]
    log_flops = np.log10(frame.lm_flops)
    compute = trend(log_flops, frame.test_error, list(bow_errors.values()), sign=-1)
    ppl = trend(frame.ppl, frame.test_error, list(bow_errors.values()), sign=1)
    figure = scaling_figure(frame, levels, compute, bow, dataset, out)
    with atomic_path(out / "scaling.csv") as tmp:
        frame.to_csv(tmp, index=False)
    metrics["scaling"] = scaling_metrics(dataset, levels, bow, compute, ppl)
    budget = p[dataset]["budget"]
    table = md_table(["Level (x default tokens)", "Pretraining FLOPs", "LM fine-tuning FLOPs", "LM FLOPs (sum)",
                      f"{name(dataset)} LM perplexity", "Test error (%)", "Seeds"],
                     [[f"{r.level:g}" + (" (default)" if r.level == 1 else ""), f"{r.pretrain_flops:.3g}",
                       f"{r.finetune_flops:.3g}", f"{r.lm_flops:.3g}", f"{r.ppl:.1f}", fmt(r.error, r.ci), r.seeds]
                      for r in levels.itertuples()])
    fits = md_table(["Fit (test error over every seed's point)", "Slope (95% CI)"],
                    [["error (%) against log10 LM FLOPs", slope_cell(compute, "points per 10x FLOPs")],
                     [f"error (%) against {name(dataset)} LM perplexity", slope_cell(ppl, "points per unit of perplexity")]])
    bow_text = f"{fmt(*bow)}%"
    default = float(levels.lm_flops[levels.level == 1].iloc[0])
    return [f"## Compute scaling: where ULMFiT overtakes bag of words ({name(dataset)}, "
            f"{f'{budget:,}' if budget else 'all'} labels)\n\n"
            "ULMFiT forward at several LM-compute levels: pretraining and LM fine-tuning tokens scaled together, a "
            "level being the multiple of the profile's own (level 1, the default run). LM FLOPs are those the two "
            "stages counted while training. Test error: mean over seeds with its 95% Student-t interval; bag of "
            "words on the same labelled examples. Fits: least squares over every seed's point; where a fit reaches "
            "bag of words, its 95% interval is Fieller's (the line's and bag of words' uncertainty together).\n\n"
            f"![Compute scaling]({figure})\n\n{table}\n\n{fits}\n\n"
            f"- {compute_text(compute, log_flops, default, bow_text)}\n- {ppl_text(ppl, frame.ppl, bow_text)}\n"]


ULMFIT_LMS = ("fwd", "bwd")  # the language models ULMFiT's classifiers start from, pretrained and fine-tuned
CURVES = {"train_loss": "training", "valid_loss": "validation"}  # DVCLive metric -> curve label


def read_curves(directory):
    """A language model's DVCLive loss curves: one row per point (step, loss, which)."""
    frames = []
    for metric, which in CURVES.items():
        path = directory / "dvclive" / "plots" / "metrics" / f"{metric}.tsv"
        if path.exists():
            frames.append(pd.read_csv(path, sep="\t")[["step", metric]].rename(columns={metric: "loss"}).assign(which=which))
    return pd.concat(frames) if frames else pd.DataFrame(columns=["step", "loss", "which"])


def lm_curves(root, datasets):
    """The loss curves of the pretrained and of each dataset's fine-tuned fwd and bwd language models."""
    frames = []
    for direction in ULMFIT_LMS:
        frames.append(read_curves(root / "models" / "pretrained" / direction).assign(run="pretraining", direction=direction))
        frames += [read_curves(root / "models" / "lm" / d / direction).assign(run=name(d), direction=direction)
                   for d in datasets]
    return pd.concat(frames, ignore_index=True)


def loss_figure(curves, file, out):
    """One panel per run: training loss as lines, validation loss as points, fwd and bwd in two colours."""
    sns.set_theme(style="whitegrid")
    runs = list(dict.fromkeys(curves.run))
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs):
        sub = curves[curves.run == run]
        sns.lineplot(data=sub[sub.which == "training"], x="step", y="loss", hue="direction", ax=ax, errorbar=None)
        valid = sub[sub.which == "validation"]
        if len(valid):
            sns.scatterplot(data=valid, x="step", y="loss", hue="direction", marker="s", s=60, ax=ax, legend=False)
        ax.set(xlabel="optimizer step", ylabel="cross-entropy (nats)", title=run)
    fig.tight_layout()
    with atomic_path(out / file) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return file


def lm_curves_section(root, datasets, out):
    """Figures of the pretraining and the fine-tuning loss curves (an empty list when no run logged any)."""
    curves = lm_curves(root, datasets)
    pretraining, finetuning = curves[curves.run == "pretraining"], curves[curves.run != "pretraining"]
    text = ("### Loss curves\n\nTraining loss (lines, about 100 points per run, each the mean over its steps) and "
            "validation loss (squares, at each evaluation) of ULMFiT's fwd and bwd language models.\n")
    figures = [(title, loss_figure(frame, f"figures/{file}.png", out)) for title, file, frame in
               (("Pretraining", "lm_pretraining", pretraining), ("LM fine-tuning", "lm_finetuning", finetuning))
               if len(frame)]
    return [text + "".join(f"\n![{title} loss curves]({file})\n" for title, file in figures)] if figures else []


def convergence_section(runs):
    conv = runs[runs.kind == "ablation"].groupby(["dataset", "variant"]).agg(
        train_loss=("train_loss", "mean"), flatness=("loss_flatness", "mean"), epochs=("epochs", "max"),
        best_epoch=("best_epoch", "mean")).reset_index()
    return ("## Convergence of the ablation classifiers\n\nFlatness: relative fall of the training loss over the "
            "last 20% of epochs (near 0: flattened; large: still falling when training stopped). Best epoch: "
            "the epoch kept by early stopping (the last one for ULMFiT's variants, which do not stop early).\n\n"
            + md_table(["Dataset", "Variant", "Final train loss", "Flatness", "Epochs", "Best epoch"],
                       [[name(r.dataset), r.variant, f"{r.train_loss:.3f}",
                         "–" if pd.isna(r.flatness) else f"{r.flatness:+.3f}", r.epochs, f"{r.best_epoch:.1f}"]
                        for r in conv.itertuples()]) + "\n")


def cost_frame(root, infos, runs):
    """One row per stage instance or training: wall time, peak memory, start and end."""
    stages = [("prepare", d, i) for d, i in infos.items()]
    stages += [("pretrain", path.parent.name, read(path)) for path in sorted((root / "models" / "pretrained").glob("*/metrics.json"))]
    stages += [("finetune_lm", f"{path.parent.parent.name}/{path.parent.name}", read(path))
               for path in sorted((root / "models" / "lm").glob("*/*/metrics.json"))]
    stages += [("bow", path.stem, read(path)) for path in sorted((root / "runs" / "bow").glob("*.json"))]
    study = root / "models" / "scaling"  # the compute-scaling study: its LMs, then each seed's classifier and test
    stages += [(f"scaling_{kind}", path.parents[1].name, read(path)) for kind, model in (("pretrain", "pretrained"),
               ("finetune_lm", "lm")) for path in sorted(study.glob(f"*/{model}/metrics.json"))]
    stages += [("scaling_clf", f"{path.parents[1].name}/{path.parent.name}", read(path))
               for path in sorted((root / "runs" / "scaling").glob("*/*/*.json"))]
    stages += [("evaluate", path.parent.name, read(path)) for path in sorted((root / "runs" / "evaluate").glob("*/*.json"))
               if path.name != "summary.json"]
    rows = [(stage, inst, m["wall_s"], m["peak_mem_mb"], m["started"], m["finished"], m.get("precision"),
             m.get("device_name")) for stage, inst, m in stages]
    rows += [("train_clf" if r.kind == "ablation" else "curve", f"{r.dataset}/{r.variant}/{r.seed}", r.wall_s, r.peak_mem_mb,
              r.started, r.finished, r.precision, r.device_name) for r in runs.itertuples()]
    rows += [("finetune_lm (own LM of a supervised run)", f"{r.dataset}/{r.variant}/{r.seed}", r.own_lm["wall_s"],
              r.own_lm["peak_mem_mb"], r.own_lm["started"], r.own_lm["finished"], r.precision, r.device_name)
             for r in runs.itertuples() if r.own_lm]
    return pd.DataFrame(rows, columns=["stage", "instance", "wall_s", "peak_mem_mb", "started", "finished", "precision",
                                       "device_name"])


def precision_text(cost, calib):
    """Which precision and device the runs computed in (ulmfit/precision.py), and metrics' record of it."""
    used = cost.dropna(subset=["precision"]).groupby(["precision", "device_name"]).size()
    if used.empty:
        return "Precision: not recorded by these runs (they predate `precision: auto`; the default then was bf16).", {}
    parts = [f"{p} on {d} ({n} runs)" for (p, d), n in used.items()]
    record = {"precision": "/".join(sorted({p for p, _ in used.index})), "device_name": "/".join(sorted({d for _, d in used.index}))}
    where = f"; calibration: {calib['precision']} on {calib['device_name']}" if calib and "precision" in calib else ""
    return f"Precision (`auto` unless params set it): {', '.join(parts)}{where}.", record


def cost_section(root, cost, metrics):
    calib_path = root / "runs" / "calibration.json"
    calib = read(calib_path) if calib_path.exists() else None
    if calib:
        cost = pd.concat([cost, pd.DataFrame([("calibrate", "cpu-profile", calib["finished"] - calib["started"], float("nan"),
                                               calib["started"], calib["finished"], None, None)], columns=cost.columns)])
    summary = cost.groupby("stage", sort=False).agg(runs=("instance", "count"), wall_s=("wall_s", "sum"),
                                                    peak=("peak_mem_mb", "max")).reset_index()
    elapsed = (cost.finished.max() - cost.started.min()) / 60
    used, record = precision_text(cost, calib)
    metrics["cost"] = {"work_minutes": round(cost.wall_s.sum() / 60, 2), "elapsed_minutes": round(elapsed, 2),
                       "peak_mem_mb": float(cost.peak_mem_mb.max()), **record}
    text = ("## Cost: wall time and peak memory\n\nWork inside each stage (runs: model trainings, several per "
            "stage process), summed per stage; peak: the largest resident memory of any one process. Elapsed: from "
            "the first stage's start to the last training's end, which adds process start-up and DVC's own time.\n\n"
            + md_table(["Stage", "Runs", "Wall time (min)", "Peak memory (MB)"],
                       [[r.stage, r.runs, f"{r.wall_s / 60:.1f}", "–" if pd.isna(r.peak) else f"{r.peak:.0f}"]
                        for r in summary.itertuples()])
            + f"\n\nSum of stage work: {cost.wall_s.sum() / 60:.1f} min. Elapsed: {elapsed:.1f} min. Outside the stages' "
            f"own work (process start-up, imports, DVC): {max(0.0, elapsed - cost.wall_s.sum() / 60):.1f} min.\n\n{used}\n")
    study = cost[cost.stage.str.startswith("scaling_")].wall_s.sum() / 60
    if study:
        metrics["cost"]["scaling_minutes"] = round(study, 2)
        text += (f"\nOf the elapsed time, the compute-scaling study's stages (scaling_*) worked {study:.1f} min; the "
                 f"run without them: about {elapsed - study:.1f} min.\n")
    if calib:
        rate, ref = calib["tokens_per_s"], calib["reference_tokens_per_s"]
        normalized = elapsed * rate / ref
        metrics["cost"].update(calibration_tokens_per_s=round(rate, 1), normalized_minutes=round(normalized, 2))
        if study:
            metrics["cost"].update(normalized_scaling_minutes=round(study * rate / ref, 2),
                                   normalized_minutes_without_scaling=round((elapsed - study) * rate / ref, 2))
        text += (f"\nCalibration (stage `calibrate`, measured on this machine in this run, {calib['measured']}): "
                 f"{rate:,.0f} LM-training tokens/s (median of {calib['steps']} timed steps, 10-90% of steps "
                 f"{calib['slow_tokens_per_s']:,.0f}-{calib['fast_tokens_per_s']:,.0f}) on benchmarks/calibrate.py's fixed case (torch's own LSTM LM at the cpu-profile sizes 128/192/10k, {calib.get('precision', 'bf16')}: none of this suite's engine); the "
                 f"reference machine runs it at {ref:,} (in bf16). Normalized minutes = elapsed x calibration / {ref:,} = "
                 f"{elapsed:.1f} x {rate:,.0f} / {ref:,} = **{normalized:.1f}**"
                 + (f": {(elapsed - study) * rate / ref:.1f} for the run without the study and {study * rate / ref:.1f} "
                    "for the study." if study else ".") + "\n")
    return text


def main(root=ROOT):
    p = load_params()
    variants = load_variants()
    paper = yaml.safe_load((root / "experiments" / "paper.yaml").read_text())
    datasets, main_datasets = p["datasets"], p["datasets"] + p["extra_datasets"]
    runs = load_runs(root)
    if runs.empty:
        raise SystemExit("report: no classifier runs under runs/; run the pipeline (dvc repro) first")
    bow = load_bow(root)
    infos = {d: read(root / "data" / "prepared" / d / "info.json") for d in ["corpus"] + main_datasets}
    out, metrics = root / "reports", {}
    sections = header(p) + [data_section(p, infos, main_datasets), main_results(root, main_datasets, bow, paper, metrics)]
    sections += ablation_sections(p, variants, runs, bow, paper, metrics)
    rows = directions(p, variants, runs, paper)
    sections.append(directions_section(rows, metrics))
    curve = curve_frame(datasets, variants, runs, bow)
    with atomic_path(out / "curve.csv") as tmp:
        curve.drop(columns=["variant"], errors="ignore").to_csv(tmp, index=False)
    if len(curve):
        sections.append(figure3_section(curve, out))
    sections += [lm_section(root, p, metrics)] + lm_curves_section(root, datasets, out)
    sections += scaling_section(p, *scaling_frame(root, p, bow), out, metrics)
    sections.insert(2, findings_section(p, metrics, rows, curve))
    sections += [convergence_section(runs), cost_section(root, cost_frame(root, infos, runs), metrics)]
    with atomic_path(out / "runs.csv") as tmp:
        runs.drop(columns=["started", "finished"]).to_csv(tmp, index=False)
    clean = json.loads(json.dumps(metrics), parse_constant=lambda c: None)  # NaN -> null
    write_json(out / "metrics.json", clean)
    write_text(out / "index.md", "\n".join(sections))


if __name__ == "__main__":
    main()
