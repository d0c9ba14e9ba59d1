"""dvc.yaml's deps list every project module a stage's script imports, directly or through ulmfit, so that a code
change reruns every stage it can change."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path):
    """Project files (relative to ROOT) that the file at `path` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (path.parent.name if node.level else "") + "." * bool(node.level) + (node.module or "")
            base = base.strip(".").replace("experiments.", "")
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            for candidate in (f"{name.replace('.', '/')}.py", f"experiments/{name}.py"):
                if (ROOT / candidate).is_file() and candidate != "ulmfit/__init__.py":
                    found.add(candidate)
    return found


def closure(script):
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += imported_modules(ROOT / path)
    return seen


def stages():
    """(name, cmd, deps) of every stage of dvc.yaml; foreach and matrix stages share one definition."""
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        stage = stage.get("do", stage)
        yield name, stage["cmd"], [d for d in stage.get("deps", []) if isinstance(d, str)]


def test_the_closure_follows_relative_and_stage_imports():
    assert {"experiments/common.py", "ulmfit/steps.py", "ulmfit/optim.py", "ulmfit/text.py"} <= \
        closure("experiments/prepare.py")
    assert closure("ulmfit/stats.py") == {"ulmfit/stats.py"}


def test_every_stage_depends_on_exactly_the_modules_its_script_imports():
    missing, extra = {}, {}
    for name, cmd, deps in stages():
        script = re.search(r"python (\S+\.py)", cmd).group(1)
        code = {d for d in deps if re.fullmatch(r"(experiments|ulmfit|benchmarks)/\S+\.py", d)}
        if closure(script) - code:
            missing[name] = sorted(closure(script) - code)
        if code - closure(script):
            extra[name] = sorted(code - closure(script))
    assert not missing, f"dvc.yaml deps lack the modules these stages import: {missing}"
    assert not extra, f"dvc.yaml deps list modules these stages do not import: {extra}"


def test_dvc_status_works_on_a_fresh_clone(tmp_path):
    """README: `dvc status` shows what would run on a fresh clone, where `dvc repro --dry` can fail (dvc#9021)."""
    dvc = Path(sys.executable).with_name("dvc")
    if not dvc.exists() or not shutil.which("git"):
        pytest.skip("needs git and dvc")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(tmp_path / "clone")], check=True)
    result = subprocess.run([str(dvc), "status", "prepare_corpus"], cwd=tmp_path / "clone", capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "prepare_corpus" in result.stdout and "ERROR" not in result.stderr, result.stderr
    assert "dvc status [stage]" in (ROOT / "README.md").read_text()


def test_every_stage_depends_on_exactly_the_models_it_reads():
    """A fine-tuned LM depends on its pretrained LM only, a classifier on its own LM only (variants.yaml says which)."""
    common = pytest.importorskip("common")  # experiments/ is on sys.path through conftest
    variants, checked = common.load_variants(), 0
    for stage in pytest.importorskip("dvc.repo").Repo(ROOT).index.stages:
        script, *args = stage.cmd.split()[1:]
        models = {str(Path(d.def_path)) for d in stage.deps if d.def_path.startswith("models/")}
        if script.endswith(("finetune_lm.py", "train_clf.py")):
            kind = "lm" if script.endswith("finetune_lm.py") else "clf"
            source, group = common.start_of(kind, args[1], variants)
            place = f"lm/{args[0]}" if kind == "clf" and group != "from_pretrained_fwd" else "pretrained"
            assert models == ({f"models/{place}/{source}"} if source else set()), stage.addressing
            checked += 1
    assert checked > 50


def test_a_one_cell_repro_runs_only_that_cells_chain():
    networkx = pytest.importorskip("networkx")
    graph = pytest.importorskip("dvc.repo").Repo(ROOT).index.graph

    def chain(address):
        cell = next(s for s in graph if s.addressing == address)
        return {s.addressing for s in networkx.dfs_postorder_nodes(graph, cell)}

    # every chain starts with the check of the whole params.yaml
    assert chain("train_clf@trec-ulmfit") == {"check_params", "prepare_corpus", "pretrain@fwd", "prepare@trec",
                                              "finetune_lm@trec-fwd", "train_clf@trec-ulmfit"}
    assert chain("train_clf_from_same_name@trec-lm_none") == {
        "check_params", "prepare_corpus", "pretrain@fwd", "prepare@trec", "finetune_lm_from_fwd@trec-lm_none",
        "train_clf_from_same_name@trec-lm_none"}
    assert chain("curve_scratch@trec-100") == {"check_params", "prepare@trec", "curve_scratch@trec-100"}
