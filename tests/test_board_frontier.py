"""The matched-KL board: envelopes of hand-made histories (exact values), checkpoints picked on the validation
prompts, the area under the frontier by hand, the n/a rule, each track ranked by its own headline, the Pareto front
through the seeds' own points, best-of-N's KL as a bound, the columns in every board file, and the validation pass
of a real run."""

import json
from types import SimpleNamespace

import pytest

from alignzoo.board import build_board
from alignzoo.board import frontier as fr
from alignzoo.board.aggregate import group_records
from alignzoo.board.headline import HEADLINES, headline_of
from alignzoo.evaluators.validation import validation_metrics

GOLD, ACC = "eval/gold_reward", "eval/accuracy"


def entry(step, kl, test, val=None, metric=GOLD):
    out = {"step": step, "eval/kl": kl, metric: test}
    if val is not None:
        out[fr.val_key(metric)] = val
    return out


#: kl 0 / 1.5 / 3 / 7 / 12; the kl-7 checkpoint scores best on test (0.9) but worse on validation (0.45 < 0.5)
HISTORY = [entry(0, 0.0, 0.1, 0.1), entry(10, 1.5, 0.4, 0.35), entry(20, 3.0, 0.6, 0.5), entry(30, 7.0, 0.9, 0.45),
           entry(40, 12.0, 1.2, 1.1)]


def test_envelope_of_a_hand_made_history():
    seed = fr.seed_frontier(HISTORY, GOLD)
    assert (seed["at_kl_2"], seed["at_kl_5"], seed["at_kl_10"]) == (0.4, 0.6, 0.6)
    assert seed["steps"] == {"at_kl_2": 10, "at_kl_5": 20, "at_kl_10": 20}
    assert seed["selected_by"] == "val"
    points = fr.checkpoints(HISTORY, GOLD)
    assert [fr.at_budget(points, b) for b in (-1.0, 0.0, 1.49, 1.5, 12.0, 100.0)] == [None, 0.1, 0.1, 0.4, 1.2, 1.2]


def test_a_checkpoint_with_higher_test_but_lower_validation_headline_is_not_picked():
    best, by = fr.pick(fr.checkpoints(HISTORY, GOLD), 10.0)
    assert (best.step, best.test, by) == (20, 0.6, "val")  # not step 30 (test 0.9, val 0.45)


def test_without_validation_metrics_the_pick_falls_back_to_the_test_headline_and_says_so():
    no_val = [{k: v for k, v in e.items() if not k.startswith("val/")} for e in HISTORY]
    seed = fr.seed_frontier(no_val, GOLD)
    assert (seed["at_kl_10"], seed["selected_by"]) == (0.9, "test")
    mixed = HISTORY[:3] + no_val[3:]  # one candidate without val: that budget picks on test
    points = fr.checkpoints(mixed, GOLD)
    assert (fr.pick(points, 5.0)[1], fr.pick(points, 10.0)[1]) == ("val", "test")


def test_area_under_the_step_function_by_hand():
    # E = 0.1 on [0, 1.5), 0.4 on [1.5, 3), 0.6 on [3, 10] (the kl-7 checkpoint loses on validation)
    assert fr.seed_frontier(HISTORY, GOLD)["area"] == pytest.approx((1.5 * 0.1 + 1.5 * 0.4 + 7 * 0.6) / 10)
    assert fr.area(fr.checkpoints([entry(0, 0.0, 0.2), entry(5, 4.0, 0.7)], GOLD), 8.0) == pytest.approx(0.45)
    assert fr.area(fr.checkpoints([entry(0, -0.2, 0.3)], GOLD)) == pytest.approx(0.3)  # a negative k1 estimate counts


def test_a_budget_below_the_seeds_smallest_kl_is_na_and_so_is_the_area():
    seed = fr.seed_frontier([entry(10, 3.0, 0.6, 0.5), entry(20, 6.0, 0.8, 0.7)], GOLD)
    assert (seed["at_kl_2"], seed["at_kl_5"], seed["at_kl_10"], seed["area"]) == (None, 0.6, 0.8, None)
    assert fr.seed_frontier([], GOLD) == {"steps": {"at_kl_2": None, "at_kl_5": None, "at_kl_10": None},
                                          "selected_by": None, "at_kl_2": None, "at_kl_5": None,
                                          "at_kl_10": None, "area": None}
    with_start = fr.seed_frontier([entry(0, 0.0, 0.1, 0.1), entry(10, 3.0, 0.6, 0.5)], GOLD)
    rows = fr.row_values([seed, with_start])  # a row is n/a where any seed is
    assert rows == {"at_kl_5": [0.6, 0.6], "at_kl_10": [0.8, 0.6]}


def test_nan_and_non_numeric_history_entries_are_not_checkpoints():
    history = [entry(0, float("nan"), 0.1), entry(1, 1.0, None), "junk", {"step": "x", "eval/kl": 1, GOLD: 1},
               entry(2, 1.0, 0.3, float("inf"))]
    assert fr.checkpoints(history, GOLD) == [fr.Checkpoint(2, 1.0, 0.3, None)]


def test_pareto_front_is_through_points_not_averages():
    assert fr.pareto_front([(1.0, 0.5), (9.0, 0.9), (4.0, 0.75), (5.0, 0.6), (4.0, 0.75)]) == [
        True, True, True, False, True]  # equal points do not dominate each other


# -- boards built from records ----------------------------------------------------------------------------------

def rec(run_id, algo, seed, task="sentiment", history=None, **metrics):
    return {"run_id": run_id, "status": "ok", "algo": algo, "task": task, "model": "tiny", "budget": "smoke",
            "seed": seed, "config": {"seed": seed, "algo": {"name": algo}, "task": {"name": task}},
            "overrides": [f"task={task}", f"algo={algo}", f"seed={seed}"], "metrics": metrics,
            "history": history or [], "wall_time_s": 1.0, "tokens": 10, "started_at": "2026-01-01T00:00:00+00:00",
            "schema_version": 1}


def arithmetic(run_id, algo, seed, acc, gold, kl=1.0):
    history = [entry(0, 0.0, 0.05, 0.05, ACC), entry(10, kl, acc, acc, ACC)]
    return rec(run_id, algo, seed, "arithmetic", history, **{ACC: acc, GOLD: gold, "eval/kl": kl,
                                                             "eval/pass_at_8": 0.5, "eval/format_rate": 0.9})


def sentiment(run_id, algo, seed, gold, acc, kl=1.0, **extra):
    history = [entry(0, 0.0, -0.5, -0.5), entry(10, kl, gold, gold)]
    return rec(run_id, algo, seed, "sentiment", history, **{GOLD: gold, ACC: acc, "eval/kl": kl, **extra})


# accuracy and gold disagree on purpose: each track must rank by its own headline
RECORDS = ([arithmetic(f"ga{s}", "grpo", s, 0.90 + 0.01 * s, gold=-1.0) for s in range(3)]
           + [arithmetic(f"da{s}", "dpo", s, 0.20 + 0.01 * s, gold=5.0) for s in range(3)]
           + [sentiment(f"ps{s}", "ppo", s, 0.80 + 0.01 * s, acc=0.0, kl=11.4) for s in range(3)]
           + [sentiment(f"bs{s}", "best_of_n", s, 0.30 + 0.01 * s, acc=1.0, kl=1.84, **{"train/analytic_kl": 1.84})
              for s in range(3)])


def by_label(groups, task):
    return {g.label: g for g in groups if g.track[0] == task}


def test_each_track_ranks_by_its_own_headline():
    groups = group_records(RECORDS)
    arith, sent = by_label(groups, "arithmetic"), by_label(groups, "sentiment")
    assert (arith["grpo"].rank, arith["dpo"].rank) == (1, 2)  # by accuracy, though dpo's gold is higher
    assert (sent["ppo"].rank, sent["best_of_n"].rank) == (1, 2)  # by gold, though best_of_n's accuracy is higher
    assert arith["grpo"].vs_above is None and arith["dpo"].vs_above["ref"] == arith["grpo"].id
    assert arith["dpo"].vs_above["diff"] == pytest.approx(-0.7)  # accuracy 0.21 - 0.91, not gold
    assert arith["grpo"].headline is HEADLINES["arithmetic"] and sent["ppo"].headline.metric == GOLD
    assert arith["grpo"].frontier["at_kl_2"]["mean"] == pytest.approx(0.91)
    assert sent["best_of_n"].frontier["at_kl_10"]["mean"] == pytest.approx(0.31)
    assert sent["ppo"].frontier["at_kl_10"]["mean"] == pytest.approx(-0.5)  # 11.4 nats is past every budget
    assert sent["ppo"].frontier["area"]["mean"] == pytest.approx(-0.5)


def test_a_task_outside_the_table_falls_back_to_a_metric_its_records_report():
    assert headline_of("mytask", [{"metrics": {"eval/pref_accuracy": 0.6}}]).metric == "eval/pref_accuracy"
    assert headline_of("mytask", [{"metrics": {"eval/kl": 0.6}}]).metric == GOLD
    assert headline_of("arithmetic", [{"metrics": {GOLD: 1.0}}]).metric == ACC  # the table wins


def test_pareto_marks_rows_by_their_seeds_own_points():
    # row means: wide (5, 0.7) is dominated by mid (4, 0.75); its seeds (1, 0.5) and (9, 0.9) are not
    recs = [sentiment("w0", "wide", 0, 0.5, 0.0, kl=1.0), sentiment("w1", "wide", 1, 0.9, 0.0, kl=9.0),
            sentiment("m0", "mid", 0, 0.75, 0.0, kl=4.0), sentiment("l0", "low", 0, 0.6, 0.0, kl=5.0)]
    pareto = {g.label: g.pareto for g in group_records(recs)}
    assert pareto == {"wide": True, "mid": True, "low": False}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    no_val = sentiment("nv0", "sft", 0, -0.4, 0.0, kl=0.0)
    no_val["history"] = [{k: v for k, v in e.items() if not k.startswith("val/")} for e in no_val["history"]]
    late = sentiment("late0", "late", 0, 0.2, 0.0, kl=3.0)
    late["history"] = late["history"][1:]  # no evaluation before training: n/a at KL 2 and for the area
    for i, r in enumerate(RECORDS + [no_val, late]):
        (root / f"{i:03d}").mkdir()
        (root / f"{i:03d}" / "record.json").write_text(json.dumps(r))
    out = tmp_path_factory.mktemp("board")
    build_board([root], out)
    return {"json": json.loads((out / "leaderboard.json").read_text()), "md": (out / "LEADERBOARD.md").read_text(),
            "html": (out / "index.html").read_text()}


def test_frontier_columns_are_in_leaderboard_json(built):
    data = built["json"]
    assert data["schema_version"] == 2 and data["rank_by"] == {"arithmetic": ACC, "sentiment": GOLD}
    assert data["frontier"]["kl_budgets"] == [2.0, 5.0, 10.0] and data["frontier"]["area_kl"] == 10.0
    assert "validation prompts" in data["frontier"]["rule"]
    groups = {(g["task"], g["label"]): g for g in data["groups"]}
    grpo = groups[("arithmetic", "grpo")]["frontier"]
    assert grpo["selected_by"] == "val/accuracy" and grpo["headline"] == ACC
    assert [grpo[c]["mean"] for c in ("at_kl_2", "at_kl_5", "at_kl_10")] == pytest.approx([0.91] * 3)
    assert grpo["area"]["mean"] == pytest.approx((1.0 * 0.05 + 9.0 * 0.91) / 10)
    assert [s["steps"]["at_kl_2"] for s in grpo["per_seed"]] == [10, 10, 10]
    assert groups[("sentiment", "sft")]["frontier"]["selected_by"] == "test"
    late = groups[("sentiment", "late")]["frontier"]
    assert (late["at_kl_2"]["mean"], late["at_kl_5"]["mean"], late["area"]["mean"]) == (None, 0.2, None)
    assert groups[("sentiment", "best_of_n")]["kl_bound"] is True and groups[("sentiment", "ppo")]["kl_bound"] is False
    assert groups[("sentiment", "ppo")]["headline"] == GOLD


def section(text, task, heading):
    """The part of a board file from the heading of ``task``'s track to the next heading (``## `` or ``<h2>``)."""
    start = text.index(f"{heading}task={task}")
    end = text.find(heading, start + len(heading))
    return text[start:end if end >= 0 else len(text)]


def test_markdown_shows_each_tracks_own_columns_and_marks(built):
    md = built["md"]
    arith, sent = section(md, "arithmetic", "## "), section(md, "sentiment", "## ")
    head = ("| Accuracy @ KL ≤ 2 | Accuracy @ KL ≤ 5 | Accuracy @ KL ≤ 10 | Accuracy area, KL 0–10 | Accuracy | "
            "pass@8 |")
    assert head in arith and "Format-hack rate" in arith and "Gold reward" not in arith
    assert "| Gold reward @ KL ≤ 2 |" in sent and "pass@8" not in sent and "Gold reward vs SFT row" in sent
    grpo = next(line for line in arith.splitlines() if "| grpo" in line)
    assert "| 0.910 [0.885, 0.935] |" in grpo  # the kl-2 column: mean and t-interval over the three seeds
    bon = next(line for line in sent.splitlines() if "| best\\_of\\_n" in line)
    assert "| ≤ 1.84 [1.84, 1.84] |" in bon
    sft = next(line for line in sent.splitlines() if "| sft" in line)
    assert "| -0.400 (n=1)† |" in sft  # picked on the test prompts (the best test score): marked
    late = next(line for line in sent.splitlines() if "| late" in line)
    assert [c.strip() for c in late.split("|")[4:8]] == ["n/a", "0.200 (n=1)", "0.200 (n=1)", "n/a"]
    assert "Matched KL (@ KL ≤ b, for b = 2, 5, 10 nats)" in md and "upper bound on its true KL" in md


def test_page_shows_each_tracks_own_columns_and_marks(built):
    html = built["html"]
    arith, sent = section(html, "arithmetic", "<h2>"), section(html, "sentiment", "<h2>")
    assert "<th>Accuracy @ KL ≤ 5</th>" in arith and "<th>pass@8</th>" in arith
    assert "<th>Gold reward</th>" not in arith
    assert "<th>Gold reward area, KL 0–10</th>" in sent and "<th>pass@8</th>" not in sent
    assert "Headline: <code>eval/accuracy</code>" in arith and "Headline: <code>eval/gold_reward</code>" in sent
    assert "≤ 1.84" in sent and "-0.400†" in sent
    assert "Matched KL" in html


# -- the validation pass of a run --------------------------------------------------------------------------------

def test_validation_pass_needs_a_task_that_offers_prompts_and_an_evaluator_that_asks():
    asks = SimpleNamespace(validation_metrics=("gold_reward",))
    assert validation_metrics(SimpleNamespace(evaluators={"g": asks}, task=SimpleNamespace()), None, 0) == {}
    task = SimpleNamespace(validation_prompts=lambda policy, n: pytest.fail("no evaluator asked"))
    assert validation_metrics(SimpleNamespace(evaluators={"k": SimpleNamespace()}, task=task), None, 0) == {}


def test_sentiment_validation_prompts_come_from_sentences_disjoint_from_eval():
    from alignzoo.tasks.sentiment import SentimentConfig, SentimentTask

    task = SentimentTask(SentimentConfig(corpus_size=20000, feedback_prompts=100), ctx=None)
    val = task.validation_prompts(None, 500)
    assert len(val) == 500 and task.validation_prompts(None, 500) == val  # the same prompts every evaluation
    assert all(sentence.startswith(p + " ") for p, sentence in zip(val, task.splits["val"]))
    assert not set(task.splits["val"]) & set(task.splits["eval"])
    assert val != task.eval_prompts(None, 500)


def test_a_smoke_run_on_sentiment_writes_validation_gold_in_every_history_entry(tmp_path, stage_cache):
    from alignzoo.testing import run_tiny

    record = run_tiny(["algo=dpo", f"run.cache_dir={stage_cache}", "train.eval_every=2"], tmp_path / "job")
    assert record.status == "ok", record.error
    assert [e["step"] for e in record.history] == [0, 2, 4]
    for e in record.history:
        assert sorted(k for k in e if k.startswith("val/")) == ["val/gold_reward"]  # gold only: no judge, no KL
        assert isinstance(e["val/gold_reward"], float) and -10 < e["val/gold_reward"] < 10
    on_disk = json.loads((tmp_path / "job" / "record.json").read_text())
    assert on_disk["history"][-1]["val/gold_reward"] == record.history[-1]["val/gold_reward"]
    assert fr.seed_frontier(on_disk["history"], GOLD)["selected_by"] == "val"
