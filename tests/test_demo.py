"""``alignzoo demo`` prints the board's own table: the same rows as LEADERBOARD.md, on synthetic records, and the
whole command on a faked sweep (no training)."""

import json
import subprocess
from pathlib import Path

import pytest

from alignzoo import demo
from alignzoo.board import build_board

GOLD = {"dpo": [0.30, 0.20, 0.25], "ppo": [0.10, 0.30], "sft": [-0.05]}


def _record(algo, seed, gold, status="ok", task="sentiment", budget="quick"):
    ok = status == "ok"
    return {"schema_version": 1, "run_id": f"{algo}-{seed}", "status": status, "algo": algo, "task": task,
            "model": "tiny", "budget": budget, "seed": seed,
            "config": {"seed": seed, "algo": {"name": algo}, "task": {"name": task}},
            "overrides": [f"algo={algo}", f"seed={seed}"],
            "metrics": {"eval/gold_reward": gold, "eval/kl": 2.0 * seed, "eval/win_rate": 0.5} if ok else {},
            "history": [], "wall_time_s": 10.0, "tokens": 100, "started_at": "2026-01-01T00:00:00+00:00",
            "error": None if ok else {"type": "RuntimeError", "message": "loss is NaN at step 3"}}


def _write_sweep(root: Path) -> Path:
    records = [_record(a, s, g) for a, golds in GOLD.items() for s, g in enumerate(golds)]
    records.append(_record("ppo", 2, None, status="failed"))
    for i, rec in enumerate(records):
        (root / f"{i}_{rec['algo']}_s{rec['seed']}").mkdir(parents=True)
        (root / f"{i}_{rec['algo']}_s{rec['seed']}" / "record.json").write_text(json.dumps(rec))
    return root


def _table_lines(text):
    return [line for line in text.splitlines() if line.startswith("|")]


def test_demo_table_is_the_boards_markdown_table(tmp_path):
    sweep = _write_sweep(tmp_path / "sweep")
    board = build_board([sweep], tmp_path / "board", figures=False)
    table = demo.results_table(board.records)
    board_md = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert _table_lines(table) == _table_lines(board_md.split("## Reproduce")[0])
    lines = _table_lines(table)
    assert lines[0] == ("| Rank | Algorithm | n | Gold reward @ KL ≤ 2 | Gold reward @ KL ≤ 5 | "
                        "Gold reward @ KL ≤ 10 | Gold reward area, KL 0–10 | Gold reward | Gain over SFT | KL (nats) | Win rate | Length | "
                        "Wall time (s) | Gold reward vs SFT row [CI], p_holm | Gold reward vs row above [CI], p_holm | "
                        "Collapsed | Failed |")
    # by mean gold reward; the Pareto front joins the seeds' own points: dpo's seed 0 (KL 0, 0.30) dominates the rest
    assert [line.split(" | ")[1] for line in lines[2:]] == ["dpo ★", "ppo", "sft"]
    # no history: no checkpoints, so the matched-KL cells are n/a; then the mean of 0.30, 0.20, 0.25 with its
    # Student-t interval (0.25 -+ 4.303 * 0.05 / sqrt 3)
    assert lines[2].startswith("| 1 | dpo ★ | 3 | n/a | n/a | n/a | n/a | 0.250 [0.126, 0.374] |")
    # ppo (seeds 0, 1) against dpo (seeds 0, 1, 2): the seeds differ, so Welch; no test separates them: rank 1 too
    assert lines[3].startswith("| 1 | ppo | 2 |")
    assert lines[3].endswith(" | – | -0.050 [-0.995, +0.895] p_holm=0.705 Welch | – | 1 |")  # ppo's failed seed
    # one seed: the mean alone, marked n=1 and never tested (so no row is shown to be better: rank 1 as well)
    assert lines[4].startswith("| 1 | sft | 1 | n/a | n/a | n/a | n/a | -0.050 (n=1) | n/a | 0.00 (n=1) |")
    assert lines[4].endswith(" | ref | – | – | 0 |")
    assert table.splitlines()[0] == "task=sentiment · model=tiny · budget=quick"


ACCURACY = {"ppo": [0.5, 0.6], "dpo": [0.4, 0.45], "sft": [0.3, 0.3]}


def _write_verifiable(root: Path) -> None:
    for algo, accs in ACCURACY.items():
        for seed, acc in enumerate(accs):
            rec = _record(algo, seed, acc, task="arithmetic", budget="smoke")
            rec["metrics"].update({"eval/accuracy": acc, "eval/pass_at_8": min(1.0, 2 * acc)})
            (root / f"{algo}_s{seed}").mkdir(parents=True)
            (root / f"{algo}_s{seed}" / "record.json").write_text(json.dumps(rec))


def test_demo_prints_the_table_of_its_sweep(tmp_path, monkeypatch, capsys):
    out = tmp_path / "demo"
    commands = []

    def fake_sweep(cmd, env):  # the multirun: write the records a sweep would have written
        commands.append(cmd)
        if f"hydra.sweep.dir={out}" in cmd:
            assert "budget=smoke" in cmd and "task=sentiment" in cmd
            _write_sweep(out)
        else:  # the verifiable track's sweep, in a folder of its own inside the demo's
            assert f"hydra.sweep.dir={out / 'verifiable'}" in cmd
            _write_verifiable(out / "verifiable")
        return 0

    monkeypatch.setattr(subprocess, "call", fake_sweep)
    monkeypatch.setenv("ALIGNZOO_PLUGINS", "")
    assert demo.main(["--budget", "smoke", "--out", str(out), "--no-wandb", "--jobs", "1"]) == 0
    assert len(commands) == 2
    verifiable = commands[1]
    # built-ins only here (no plugins): grpo is built in now, so every one of VERIFIABLE_ALGOS runs
    assert verifiable[3:6] == ["run", "-m", "algo=ppo_rlvr,grpo_rlvr,dpo_rlvr,sft"]
    assert {"task=arithmetic", "labeler=verifier", "budget=smoke", "seed=0,1"} <= set(verifiable)
    assert not any(a.startswith("launcher=") for a in verifiable)  # --jobs 1
    printed = capsys.readouterr().out
    expected = demo.results_table([json.loads(p.read_text()) for p in sorted(out.rglob("record.json"))])
    assert _table_lines(printed) == _table_lines(expected)
    assert "task=arithmetic · model=tiny · budget=smoke" in printed and "task=sentiment · model=tiny" in printed
    assert "\nalignzoo demo: the verifiable track, 4 algorithms on task=arithmetic\n" in printed
    assert ("Results at budget=smoke.\nMean over seeds with a 95% Student-t interval (n < 10) or BCa bootstrap "
            "interval (n ≥ 10; 2000 resamples, seed 0)") in printed
    assert "(two-sided Welch t-tests over seeds between every pair of rows of the track, Holm-corrected" in printed
    assert f"Records: {out}/*/record.json" in printed
    assert "W&B" not in printed


def test_demo_without_records_says_so_and_fails(tmp_path, monkeypatch, capsys):
    out = tmp_path / "demo"
    monkeypatch.setattr(subprocess, "call", lambda cmd, env: 2)
    monkeypatch.setenv("ALIGNZOO_PLUGINS", "")
    assert demo.main(["--out", str(out), "--no-wandb"]) == 2
    err = capsys.readouterr().err
    assert f"alignzoo demo: no results to show: run directory not found: {out}" in err


@pytest.mark.parametrize("algos", [["dpo", "sft", "ppo"], ["sft"], ["grpo", "sft", "gspo", "ilql_light", "ilql"]])
def test_demo_algos_puts_the_sft_row_last_and_leaves_the_variants_out(algos):
    class Registry:
        def names(self):
            return algos

    assert demo.demo_algos({"algo": Registry()}) == [a for a in algos if a not in ("sft", "gspo", "ilql_light")] + [
        "sft"]


def test_demo_without_the_verifiable_track_runs_one_sweep(tmp_path, monkeypatch, capsys):
    out = tmp_path / "demo"
    commands = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, env: (commands.append(cmd), _write_sweep(out), 0)[-1])
    monkeypatch.setenv("ALIGNZOO_PLUGINS", "")
    assert demo.main(["--out", str(out), "--no-wandb", "--no-verifiable"]) == 0
    assert len(commands) == 1 and "task=sentiment" in commands[0]
    assert "verifiable track" not in capsys.readouterr().out


def test_verifiable_algos_keeps_the_registered_ones_in_order_as_their_presets():
    class Registry:
        def names(self):
            return ["sft", "dpo", "ppo", "ilql"]

    assert demo.verifiable_algos({"algo": Registry()}) == ["ppo_rlvr", "dpo_rlvr", "sft"]
