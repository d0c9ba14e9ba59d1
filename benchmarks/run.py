"""Speed and memory of this implementation beside baselines measured in the same run.

    python benchmarks/run.py            # writes benchmarks/results.json and benchmarks/results.md
    python benchmarks/run.py --calibrate  # this machine's calibration figure, in about a minute
    python benchmarks/run.py --render     # rewrite results.md from results.json
    python benchmarks/run.py --device cuda  # peak, LM, classifier and predict cases on a GPU: results-gpu.json/.md
    python benchmarks/run.py --smoke --device cuda  # paper-profile tokens/s: smoke-cuda.json
    python benchmarks/run.py --case softmax --config paper --impl chunked_bf16  # one case, printed
    python benchmarks/run.py --case peak --config - --impl fp32  # this machine's fp32 matmul peak, printed
    python benchmarks/run.py --overhead   # the pipeline's own share of a finished run (reports/metrics.json),
                                          # and each stage script's start-up + import seconds

Baselines: (a) a plain torch model of the same shapes (nn.Embedding, stacked nn.LSTM, tied
Linear, F.cross_entropy, no regularisation) and (b) fastai 2.8.12's AWD_LSTM, classifier,
tokenizer and predict loop (`pip install -e '.[bench]'`; without fastai its rows are skipped).
Every case runs in a fresh subprocess, so its peak memory is its own; rates are medians over
repeated steps after warm-up. The run first measures the machine's matmul peak in each precision,
and reports each LM, softmax and classifier case's model FLOP/s as a fraction of it. Nothing here is
asserted by the tests: the figures are read, not checked, because this machine's timings are noisy.

One module per case, each with its section of results.md: lm.py, softmax.py, clf.py, tokenization.py,
predict.py, peak.py (and smoke.py, overhead.py for their flags); harness.py times, runs each case in a
process of its own and assembles results.md. This file holds the plan of a run and the command line.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import clf
import harness
import lm
import overhead
import peak
import predict
import smoke
import softmax
import tokenization
from harness import MAIN_CONFIGS, RESULT, ROOT

CASES = {
    "peak": peak.peak_case,
    "lm_train": lambda config, impl, device: lm.lm_case(config, impl, train=True, device=device),
    "lm_infer": lambda config, impl, device: lm.lm_case(config, impl, train=False, device=device),
    "lm_loss_check": lambda config, impl, device: lm.lm_loss_check(),
    "clf_train": clf.clf_case,
    "tokenize": lambda config, impl, device: tokenization.tokenize_case(impl),
    "predict": predict.predict_case,
    "softmax": softmax.softmax_case,
}
SECTIONS = {  # results.md's section of each case a run holds, in this order
    "lm_train": lm.lm_train_section,
    "lm_infer": lm.lm_infer_section,
    "softmax": softmax.softmax_section,
    "clf_train": clf.clf_section,
    "tokenize": tokenization.tokenize_section,
    "predict": predict.predict_section,
    "peak": peak.peak_section,
}
PLAN = (
    [("peak", "-", i) for i in ("fp32", "bf16")]
    + [("lm_train", c, i) for c in MAIN_CONFIGS for i in ("ours_bf16", "ours_fp32", "ours_noreg_bf16", "plain_bf16", "plain_fp32", "fastai_fp32")]
    + [("lm_infer", c, i) for c in ("cpu-profile", "fastai-reference") for i in ("ours_bf16", "ours_fp32", "plain_fp32", "fastai_fp32")]
    + [("lm_loss_check", "cpu-profile", "ours")]
    + [("softmax", c, i) for c in MAIN_CONFIGS for i in softmax.IMPLS]
    + [("clf_train", "cpu-profile", i) for i in ("ours_bf16", "ours_fp32", "fastai_fp32")]
    + [("tokenize", "-", i) for i in ("ours", "fastai")]
    + [("predict", "cpu-profile", i) for i in ("ours", "fastai_get_preds", "fastai")]
)


def device_plan(configs=MAIN_CONFIGS):
    """The cases that run on an accelerator (`--device cuda`): the peak, LM training, the softmax, classifier,
    prediction. configs ("tiny",): the tests' sizes, the peak's too."""
    return ([("peak", "tiny" if configs == ("tiny",) else "-", i) for i in ("fp32", "bf16")]
            + [("lm_train", c, i) for c in configs for i in ("ours_bf16", "ours_fp32", "plain_bf16", "plain_fp32", "fastai_fp32")]
            + [("softmax", c, i) for c in configs for i in ("chunked_bf16", "full_bf16")]
            + [("clf_train", configs[0], i) for i in ("ours_bf16", "ours_fp32", "fastai_fp32")]
            + [("predict", configs[0], i) for i in ("ours", "fastai_get_preds")])


def markdown(r):
    return harness.markdown(r, SECTIONS)


def run_all(out, device="cpu", plan=PLAN, name="results"):
    """Every case of `plan` in its own process on `device`; writes out/<name>.json and out/<name>.md."""
    results = harness.run_cases(plan, device)
    results["tokens_compared"] = tokenization.compare_tokens()
    peak.add_model_flops(results)
    harness.write(out, name, results, markdown(results))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case")
    parser.add_argument("--config")
    parser.add_argument("--impl")
    parser.add_argument("--device", default="cpu", help="cpu (every case: results.md) or cuda (the peak, LM, "
                        "softmax, classifier and predict cases: results-gpu.md)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks"))
    parser.add_argument("--render", action="store_true", help="only rewrite results.md from results.json in --out")
    parser.add_argument("--calibrate", action="store_true", help="only print this machine's calibration figure "
                        "(LM-training tokens/s of the cpu-profile case, about a minute; see calibrate.py)")
    parser.add_argument("--smoke", action="store_true", help="only measure LM and classifier tokens/s at a profile's "
                        "sizes (--profile, --steps, --docs); writes smoke-<device>.json in --out")
    parser.add_argument("--profile", default=str(ROOT / "profiles" / "paper.yaml"))
    parser.add_argument("--steps", type=int, default=300, help="--smoke: LM-training steps")
    parser.add_argument("--docs", type=int, default=1000, help="--smoke: IMDb reviews of the classifier epoch")
    parser.add_argument("--overhead", action="store_true", help="only print the share of a finished run spent outside "
                        "the stages' own work, from --metrics")
    parser.add_argument("--metrics", default=str(ROOT / "reports" / "metrics.json"))
    args = parser.parse_args()
    if args.device != "cpu" and not __import__("torch").cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no GPU here (torch.cuda.is_available() is False); "
                     "install a CUDA build of torch or use --device cpu")
    if args.render:
        out = Path(args.out)
        (out / "results.md").write_text(markdown(json.loads((out / "results.json").read_text())))
    elif args.calibrate:
        sys.argv = [sys.argv[0]]
        from calibrate import main as calibrate

        calibrate()
    elif args.case:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        print("\n" + RESULT + json.dumps(CASES[args.case](args.config, args.impl, args.device)))
    elif args.overhead:
        overhead.report(args.metrics)
    elif args.smoke:
        smoke.report(args.out, args.device, args.profile, args.steps, args.docs)
    elif args.device == "cpu":
        run_all(Path(args.out))
    else:
        run_all(Path(args.out), args.device, device_plan(), "results-gpu")


if __name__ == "__main__":
    main()
