"""Stage report: python experiments/report.py

Reads every run's metrics and writes reports/: index.md (all tables), one PNG per dataset for
Figure 3 plus a combined one, metrics.json (for `dvc metrics show`), curve.csv (for `dvc plots
show`) and runs.csv (every classifier run). Every number comes from the runs, except the
columns labelled "paper", which come from experiments/paper.yaml.
"""

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import yaml  # noqa: E402
from common import ROOT, load_params, load_variants  # noqa: E402

from ulmfit.io import atomic_path, write_json, write_text  # noqa: E402
from ulmfit.stats import fmt, mean_ci, paired_diff  # noqa: E402

NAMES = {"imdb": "IMDb", "trec": "TREC-6", "ag_news": "AG", "dbpedia_14": "DBpedia", "yelp_polarity": "Yelp-bi",
         "yelp_review_full": "Yelp-full"}


def read(path):
    return json.loads(Path(path).read_text())


def clf_runs(root):
    rows = []
    for path in sorted((root / "runs" / "clf").glob("*/*/metrics.json")):
        variant, budget, seed = path.parent.name.rsplit("-", 2)
        m = read(path)
        rows.append({"dataset": path.parent.parent.name, "variant": variant, "budget": budget, "seed": int(seed),
                     "n_train": m["n_train"], "valid_error": m["valid_error"], "train_loss": m["train_loss"],
                     "loss_flatness": m["loss_flatness"], "best_epoch": m["best_epoch"], "epochs": len(m["history"]),
                     "wall_s": m["wall_s"], "peak_mem_mb": m["peak_mem_mb"]})
    return pd.DataFrame(rows)


def bow_runs(root):
    rows = []
    for path in sorted((root / "runs" / "bow").glob("*.json")):
        for r in read(path)["runs"]:
            rows.append({"dataset": path.stem, **r, "budget": str(r["budget"])})
    return pd.DataFrame(rows)


def errors_by_seed(df, dataset, variant, budget="max", column="valid_error"):
    sel = df[(df.dataset == dataset) & (df.variant == variant) & (df.budget == budget)]
    return dict(zip(sel.seed, sel[column]))


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def paper_cell(value):
    return "–" if value is None else f"{value:.2f}"


def ablation_table(spec, runs, bow, datasets, paper, metrics):
    header = ["Variant"]
    for d in datasets:
        header += [f"{NAMES.get(d, d)} (ours)", f"{NAMES.get(d, d)} Δ vs ULMFiT (ours)", f"{NAMES.get(d, d)} (paper)"]
    rows = []
    for label, variant in spec["rows"]:
        row = [label]
        for d in datasets:
            errs = errors_by_seed(runs, d, variant)
            ref = errors_by_seed(runs, d, "ulmfit")
            mean, half, n = mean_ci(errs.values())
            row.append(fmt(mean, half) + (f" (n={n})" if n and n < 3 else ""))
            row.append("(reference)" if variant == "ulmfit" else fmt(*paired_diff(errs, ref)[:2], signed=True))
            row.append(paper_cell(paper["validation_error"].get(variant, {}).get(d)))
            metrics.setdefault(d, {})[f"valid_error_{variant}"] = None if math.isnan(mean) else round(mean, 5)
        rows.append(row)
    row = ["Bag of words (TF-IDF + LR), same examples"]
    for d in datasets:
        sel = bow[(bow.dataset == d) & (bow.budget == "max")] if len(bow) else bow
        errs = dict(zip(sel.seed, sel.valid_error)) if len(sel) else {}
        row += [fmt(*mean_ci(errs.values())[:2]), fmt(*paired_diff(errs, errors_by_seed(runs, d, "ulmfit"))[:2], signed=True), "–"]
    rows.append(row)
    return md_table(header, rows)


def main(root=ROOT):
    p = load_params()
    variants = load_variants()
    paper = yaml.safe_load((root / "experiments" / "paper.yaml").read_text())
    datasets = p["datasets"]
    runs, bow = clf_runs(root), bow_runs(root)
    if runs.empty:
        sys.exit("report: no classifier runs found under runs/clf; run the pipeline (dvc repro) first")
    out = root / "reports"
    out.mkdir(exist_ok=True)
    metrics, sections = {}, []
    infos = {d: read(root / "data" / "prepared" / d / "info.json") for d in datasets}

    sections.append("# ULMFiT reproduction report\n")
    sections.append(
        f"Profile: `{p.get('profile', 'cpu')}`. Seeds: {', '.join(map(str, p['seeds']))}. Every number of ours is "
        "the mean over seeds with its 95% Student-t confidence interval (± half-width), in percent error. "
        "Columns marked *paper* are Howard & Ruder (2018)'s published numbers, shown for comparison only.\n")
    notes = [f"- Pretraining corpus: `{p['corpus']['name']}`"
             + (" (English Wikipedia articles laid out like WikiText; WikiText-103 train is not available offline)"
                if p["corpus"]["name"] == "wikipedia_en" else "")
             + f", {read(root / 'data' / 'prepared' / 'corpus' / 'info.json')['train']['tokens']:,} training tokens."]
    for d in datasets:
        i = infos[d]
        notes.append(f"- {NAMES.get(d, d)}: {i['train']['docs']:,} labelled training examples (the ablations' pool), "
                     f"{i['valid']['docs']:,} validation, {i['test']['docs']:,} test"
                     + (f", {i['unlabelled']['docs']:,} unlabelled" if "unlabelled" in i else "")
                     + f"; vocabulary {i['vocab_size']:,}." + (f" **{i['repartitioned']}.**" if "repartitioned" in i else ""))
    sections.append("## Data\n\n" + "\n".join(notes) + "\n")

    # main results: test error
    rows = []
    for d in datasets:
        ev_path = root / "runs" / "evaluate" / d / "summary.json"
        ev = read(ev_path) if ev_path.exists() else {}
        fwd = {s: r["models"]["ulmfit"]["test_error"] for s, r in ev.items() if "ulmfit" in r["models"]}
        bwd = {s: r["models"]["backward"]["test_error"] for s, r in ev.items() if "backward" in r["models"]}
        ens = {s: r["ensemble_test_error"] for s, r in ev.items() if "ensemble_test_error" in r}
        sel = bow[(bow.dataset == d) & (bow.budget == "max")] if len(bow) else bow
        bow_test = mean_ci(sel.test_error) if len(sel) else (math.nan, math.nan, 0)
        rows.append([NAMES.get(d, d), fmt(*mean_ci(fwd.values())[:2]), fmt(*mean_ci(bwd.values())[:2]),
                     fmt(*mean_ci(ens.values())[:2]), fmt(*bow_test[:2]), paper_cell(paper["test_error"].get(d)),
                     paper_cell(paper["best_prior_test_error"].get(d))])
        metrics.setdefault(d, {}).update(test_error_fwd=mean_ci(fwd.values())[0], test_error_bwd=mean_ci(bwd.values())[0],
                                         test_error_ensemble=mean_ci(ens.values())[0])
    sections.append("## Main results: test error (%)\n\n" + md_table(
        ["Dataset", "ULMFiT fwd (ours)", "ULMFiT bwd (ours)", "fwd+bwd ensemble (ours)", "Bag of words (ours)",
         "ULMFiT (paper)", "best prior (paper)"], rows)
        + "\n\nThe paper's bidirectional result (section 5): IMDb test error 5.30 forward, 4.58 forward + backward ensemble.\n")

    for key in ("table4", "table5", "table6", "table7"):
        spec = variants["tables"][key]
        if not all(v in p["clf_variants"] for _, v in spec["rows"]):
            sections.append(f"## {spec['title']}\n\nNot run in this profile (variants "
                            f"{', '.join(v for _, v in spec['rows'] if v not in p['clf_variants'])} are not listed in clf_variants).\n")
            continue
        sections.append(f"## {spec['title']}\n\nValidation error (%) on the held-out 10% of train. "
                        "Δ: the variant minus ULMFiT on the same seed (negative = better than ULMFiT).\n\n"
                        + ablation_table(spec, runs, bow, datasets, paper, metrics) + "\n")

    # Figure 3
    curve_rows = []
    budgets = [str(b) for b in p["curve_budgets"]]
    for d in datasets:
        pool = infos[d]["train"]["docs"]
        for label, variant in variants["curve"]:
            for b in budgets + ["max"]:
                errs = errors_by_seed(runs, d, variant, b)
                mean, half, n = mean_ci(errs.values())
                if n:
                    curve_rows.append({"dataset": NAMES.get(d, d), "method": label, "examples": pool if b == "max" else int(b),
                                       "error": 100 * mean, "ci": 100 * half if n > 1 else 0.0, "n": n})
        sel = bow[bow.dataset == d] if len(bow) else bow
        for b in budgets + ["max"]:
            s = sel[sel.budget == b] if len(sel) else sel
            if len(s):
                mean, half, n = mean_ci(s.valid_error)
                curve_rows.append({"dataset": NAMES.get(d, d), "method": "Bag of words", "examples": pool if b == "max" else int(b),
                                   "error": 100 * mean, "ci": 100 * half if n > 1 else 0.0, "n": n})
    curve = pd.DataFrame(curve_rows)
    with atomic_path(out / "curve.csv") as tmp:
        curve.to_csv(tmp, index=False)
    figs = []
    if len(curve):
        sns.set_theme(style="whitegrid")
        names = list(dict.fromkeys(curve.dataset))
        fig_all, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
        for ax_all, name in zip(axes[0], names):
            fig, ax = plt.subplots(figsize=(5.5, 4))
            for target in (ax, ax_all):
                sub = curve[curve.dataset == name]
                sns.lineplot(data=sub, x="examples", y="error", hue="method", marker="o", ax=target, errorbar=None)
                for (_, g), color in zip(sub.groupby("method", sort=False), sns.color_palette()):
                    g = g.sort_values("examples")
                    target.fill_between(g.examples, g.error - g.ci, g.error + g.ci, alpha=0.2, color=color)
                target.set(xscale="log", xlabel="labelled training examples", ylabel="validation error (%)", title=name)
            fig.tight_layout()
            file = f"figures/figure3_{name.lower().replace('-', '')}.png"
            with atomic_path(out / file) as tmp:
                fig.savefig(tmp, dpi=120, format="png")
            plt.close(fig)
            figs.append(file)
        fig_all.tight_layout()
        with atomic_path(out / "figures" / "figure3.png") as tmp:
            fig_all.savefig(tmp, dpi=110, format="png")
        plt.close(fig_all)
        table = curve.assign(cell=[fmt(e / 100, c / 100 if n > 1 else math.nan) for e, c, n in zip(curve.error, curve.ci, curve.n)])
        wide = table.pivot_table(index=["dataset", "method"], columns="examples", values="cell", aggfunc="first").reset_index()
        sections.append("## Figure 3: validation error against the number of labelled examples\n\n"
                        "Shaded bands: 95% confidence intervals over seeds. The largest point is the whole labelled pool "
                        "of the profile. Supervised: the LM is fine-tuned on the labelled examples only; "
                        "semi-supervised: on all of the task's training text (for IMDb including unlabelled reviews).\n\n"
                        + "\n".join(f"![{f}]({f})" for f in ["figures/figure3.png"] + figs) + "\n\n"
                        + md_table([str(c) for c in wide.columns], wide.fillna("–").values.tolist()) + "\n")

    # language models
    rows = []
    for path in sorted((root / "models" / "pretrained").glob("*/metrics.json")):
        m = read(path)
        rows.append([f"pretrained `{path.parent.name}`", p["corpus"]["name"], f"{m['valid_ppl']:.1f}" if m.get("valid_ppl") else "–",
                     f"{m['wall_s']:.0f}"])
        metrics.setdefault("lm", {})[f"pretrained_{path.parent.name}_ppl"] = m.get("valid_ppl")
    for path in sorted((root / "models" / "lm").glob("*/*/metrics.json")):
        m = read(path)
        rows.append([f"fine-tuned `{path.parent.name}`", path.parent.parent.name, f"{m['valid_ppl']:.1f}", f"{m['wall_s']:.0f}"])
    sections.append("## Language models: validation perplexity\n\nPerplexity over each model's own vocabulary "
                    "(pretrained: the corpus's validation articles; fine-tuned: the dataset's validation texts).\n\n"
                    + md_table(["Model", "Data", "Perplexity", "Wall time (s)"], rows) + "\n")

    # convergence
    conv = runs[runs.budget == "max"].groupby(["dataset", "variant"]).agg(
        train_loss=("train_loss", "mean"), flatness=("loss_flatness", "mean"), epochs=("epochs", "max"),
        best_epoch=("best_epoch", "mean")).reset_index()
    sections.append("## Convergence of the classifiers (whole pool)\n\nFlatness: relative fall of the training loss over "
                    "the last 20% of epochs (near 0 = flattened; large = still improving when training stopped).\n\n"
                    + md_table(["Dataset", "Variant", "Final train loss", "Flatness", "Epochs", "Best epoch (early stopping)"],
                               [[NAMES.get(r.dataset, r.dataset), r.variant, f"{r.train_loss:.3f}",
                                 "–" if pd.isna(r.flatness) else f"{r.flatness:+.3f}", r.epochs, f"{r.best_epoch:.1f}"]
                                for r in conv.itertuples()]) + "\n")

    # cost
    cost = [("prepare", d, infos[d]) for d in datasets] + [("prepare", "corpus", read(root / "data" / "prepared" / "corpus" / "info.json"))]
    cost += [("pretrain", path.parent.name, read(path)) for path in sorted((root / "models" / "pretrained").glob("*/metrics.json"))]
    cost += [("finetune_lm", f"{path.parent.parent.name}/{path.parent.name}", read(path))
             for path in sorted((root / "models").glob("lm*/*/*/metrics.json"))]
    cost += [("bow", path.stem, read(path)) for path in sorted((root / "runs" / "bow").glob("*.json"))]
    cost += [("evaluate", path.parent.name, read(path)) for path in sorted((root / "runs" / "evaluate").glob("*/0.json"))]
    stage_rows = [(stage, name, m.get("wall_s", math.nan), m.get("peak_mem_mb", math.nan)) for stage, name, m in cost]
    stage_rows += [("train_clf", f"{r.dataset}/{r.variant}-{r.budget}-{r.seed}", r.wall_s, r.peak_mem_mb) for r in runs.itertuples()]
    stages = pd.DataFrame(stage_rows, columns=["stage", "instance", "wall_s", "peak_mem_mb"])
    summary = stages.groupby("stage", sort=False).agg(instances=("instance", "count"), wall_s=("wall_s", "sum"),
                                                      max_peak_mem_mb=("peak_mem_mb", "max")).reset_index()
    sections.append("## Cost: wall time and peak memory per stage\n\nSums over each stage's instances (the work inside "
                    "each stage process; process start-up and DVC's own time are not included).\n\n"
                    + md_table(["Stage", "Instances", "Wall time (s)", "Max peak memory (MB)"],
                               [[r.stage, r.instances, f"{r.wall_s:.0f}", f"{r.max_peak_mem_mb:.0f}"] for r in summary.itertuples()])
                    + f"\n\nTotal: {stages.wall_s.sum() / 60:.1f} minutes.\n")
    metrics["cost"] = {"total_stage_minutes": round(stages.wall_s.sum() / 60, 2), "max_peak_mem_mb": float(stages.peak_mem_mb.max())}

    with atomic_path(out / "runs.csv") as tmp:
        runs.to_csv(tmp, index=False)
    write_json(out / "metrics.json", json.loads(json.dumps(metrics, default=float).replace("NaN", "null")))
    write_text(out / "index.md", "\n".join(sections))


if __name__ == "__main__":
    main()
