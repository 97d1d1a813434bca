"""task=arithmetic (alignzoo/tasks/arithmetic): disjoint seeded splits, the length-generalisation split, the
per-digit tokenizer, worked solutions the verifier accepts, labeler=verifier's pairs, and tiny end-to-end runs
(PPO on the verifier, DPO on verified pairs) that write the verifiable track's metrics."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from alignzoo.pipeline.verifier_labeler import verified_rows
from alignzoo.tasks.arithmetic import ArithmeticConfig, ArithmeticTask
from alignzoo.tasks.arithmetic.problems import Problem, operands_with, space_size
from alignzoo.tasks.arithmetic.tokenizer import char_tokenizer
from alignzoo.tasks.arithmetic.verifier import verify
from alignzoo.testing import run_tiny

SIZES = dict(corpus_size=3000, feedback_prompts=300, sft_size=400, rl_size=200, eval_size=100, length_size=50,
             val_size=50)
PROMPT_SPLITS = ("eval", "rl", "sft", "feedback", "length")


def _task(**kw) -> ArithmeticTask:
    return ArithmeticTask(ArithmeticConfig(**{**SIZES, **kw}), SimpleNamespace())


@pytest.fixture(scope="module")
def task() -> ArithmeticTask:
    return _task(ops="+-*")


def test_the_splits_are_disjoint_and_sized(task):
    splits = task.splits
    assert {k: len(v) for k, v in splits.items()} == {"eval": 100, "rl": 200, "sft": 400, "val": 50,
                                                      "feedback": 300, "train": 3000, "length": 50}
    for name, part in splits.items():
        assert len(set(part)) == len(part), name
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not set(splits[a]) & set(splits[b]), (a, b)
    # prompts too: no prompt of a held-out split is a pretraining or SFT text's prompt
    trained = {p.prompt for p in splits["train"] + splits["sft"]}
    assert not trained & {p.prompt for name in ("eval", "rl", "feedback", "length") for p in splits[name]}


def test_the_splits_are_seeded(task):
    assert _task(ops="+-*").splits == task.splits
    other = _task(ops="+-*", seed=1).splits
    assert other["eval"] != task.splits["eval"]


def test_the_length_split_has_more_digits_than_training(task):
    digits = lambda p: max(len(str(p.a)), len(str(p.b)))  # noqa: E731
    assert max(digits(p) for name, part in task.splits.items() if name != "length" for p in part) == 2
    assert {len(str(p.a)) for p in task.splits["length"]} == {3} == {len(str(p.b)) for p in task.splits["length"]}
    assert task.length_prompts(5) == [p.prompt for p in task.splits["length"][:5]]


def test_every_worked_solution_ends_with_its_verified_answer(task):
    assert Problem(47, "*", 85).solution == "47*5=235, 47*80=3760, 235+3760=3995 #### 3995"
    assert Problem(47, "+", 85).text == "47+85=231 #### 132"  # the digits least significant first, then the answer
    assert Problem(3, "-", 85).solution == "-28 #### -82"
    assert Problem(90, "-", 5).solution == "58 #### 85"
    assert Problem(50, "+", 50).solution == "001 #### 100"
    assert Problem(12, "*", 3).solution == "36 #### 36"
    for part in task.splits.values():
        for p in part:
            assert verify(p.solution, p.answer) == 1.0 and verify(p.solution, p.answer + 1) == 0.0


def test_the_task_answers_its_own_prompts_and_names_a_foreign_one(task):
    from alignzoo.errors import AlignzooError

    p = task.splits["rl"][0]
    assert task.answer_for(p.prompt) == str(p.answer)
    assert task.gold.score([p.prompt], [p.solution], [True]).tolist() == [1.0]
    with pytest.raises(AlignzooError, match="has no answer for the prompt 'the movie was'"):
        task.answer_for("the movie was")


def test_the_space_size_counts_operands():
    assert [len(operands_with(d)) for d in (1, 2, 3)] == [10, 90, 900]
    assert space_size("+-", 1, 2) == 2 * 100 ** 2
    assert space_size("*", 2, 2) == 90 ** 2


def test_the_config_names_bad_settings():
    assert ArithmeticConfig(**SIZES, ops="+/").problems() == [
        "ops must be one or more of + - *, each once (got '+/'); e.g. task.ops='+-*'"]
    assert ArithmeticConfig(**SIZES, min_digits=3, max_digits=2).problems() == [
        "min_digits=3 and max_digits=2 must satisfy 1 <= min_digits <= max_digits <= 40"]
    (problem,) = ArithmeticConfig(**SIZES, max_digits=1).problems()
    assert problem.startswith("max_digits=1 with ops='+-' allows only 200 distinct problems, but the held-out "
                              "splits need 1050")


def test_the_tokenizer_splits_every_digit():
    tok = char_tokenizer()
    ids = tok("12345+678=")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<|endoftext|>", *"12345+678="]
    assert len(tok("9" * 300, add_special_tokens=False)["input_ids"]) == 300
    text = "47*5=235, 47*80=3760, 235+3760=3995 #### 3995"
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text
    assert tok.eos_token_id == 0 and tok.pad_token_id == 1 and tok.padding_side == "left"


def test_verified_rows_pair_correct_with_incorrect_and_count_ties():
    prompts = ["a", "b", "c"]
    texts = ["a0", "a1", "b0", "b1", "c0", "c1"]
    scores = [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    rows, counts = verified_rows(prompts, texts, [True] * 6, scores, 2)
    assert counts == {"pairs": 1, "all_correct": 1, "all_wrong": 1}
    assert (rows[0]["prompt"], rows[0]["chosen"], rows[0]["rejected"], rows[0]["ranking"]) == ("a", "a1", "a0", [1, 0])


EVALUATORS = "evaluator=[accuracy,pass_at_k,format_rate,format_hack_rate,length_generalisation,gold_reward,kl,length]"
KEYS = {"eval/accuracy", "eval/pass_at_8", "eval/format_rate", "eval/format_hack_rate", "eval/length_gen_accuracy",
        "eval/gold_reward", "eval/kl", "eval/length"}
#: one-digit problems (300 of them): even the tiny model, pretrained for seconds, gets some right, so the verifier
#: finds correct-vs-incorrect pairs
SMALL = ["task=arithmetic", "task.ops=+-*", "task.max_digits=1", "pipeline.feedback_prompts=64",
         "pipeline.completions_per_prompt=8", "task.sft_size=40", "task.rl_size=20", "task.eval_size=20",
         "task.length_size=20", "task.val_size=10", "evaluator.pass_at_k.prompts=4",
         "evaluator.length_generalisation.prompts=8", EVALUATORS]


def _metrics_on_disk(job):
    return json.loads((job / "record.json").read_text())


def test_ppo_on_the_verifier_writes_the_verifiable_metrics(tmp_path, stage_cache):
    record = run_tiny([*SMALL, "algo=ppo", f"run.cache_dir={stage_cache}"], tmp_path / "ppo")
    assert record.status == "ok", record.error
    on_disk = _metrics_on_disk(tmp_path / "ppo")
    assert KEYS <= set(on_disk["metrics"])
    assert all(0.0 <= on_disk["metrics"][k] <= 1.0 for k in KEYS - {"eval/kl", "eval/length"})
    assert on_disk["metrics"]["eval/gold_reward"] == on_disk["metrics"]["eval/accuracy"]  # the gold is the verifier
    assert "no reward configured: task=arithmetic checks its answers, so reward=verifier scores them" in record.notes
    assert not any("reward=learned" in n for n in record.notes)


def test_dpo_on_verified_pairs_writes_the_metrics_and_counts_the_pairs(tmp_path, stage_cache):
    record = run_tiny([*SMALL, "algo=dpo", "labeler=verifier", f"run.cache_dir={stage_cache}"], tmp_path / "dpo")
    assert record.status == "ok", record.error
    assert KEYS <= set(_metrics_on_disk(tmp_path / "dpo")["metrics"])
    (note,) = [n for n in record.notes if n.startswith("feedback (labeler=verifier): ")]
    assert " correct-vs-incorrect pairs from 64 prompts x 8; dropped as ties: " in note


def test_the_verifiable_experiment_composes_with_the_verifier_everywhere():
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from alignzoo import plugins
    from alignzoo.config import store_schema

    names = plugins.load().registries["algo"].names()
    store_schema()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="alignzoo.conf", version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=verifiable"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    algos = cfg.hydra.sweeper.params.algo.split(",")
    assert (cfg.task.name, cfg.labeler.name, cfg.hydra.sweeper.params.seed) == ("arithmetic", "verifier", "0,1,2")
    presets = {f"{a}_rlvr" for a in ("ppo", "a2c", "grpo", "dr_grpo", "dapo", "gspo", "cispo", "rloo", "reinforce_pp",
                                      "dpo", "ipo", "kto", "ilql")}
    assert {"sft", "best_of_n", *presets} == set(algos)
    assert {"sft", "best_of_n"} <= set(names)
    assert list(cfg.evaluator) == ["accuracy", "pass_at_k", "format_rate", "format_hack_rate",
                                   "length_generalisation", "gold_reward", "kl", "length"]


#: the lr each *_rlvr preset sets, picked from {3e-5, 1e-4} on seed 0's val/accuracy (docs/tasks.md)
RLVR_LR = {"ppo": 3e-5, "a2c": 1e-4, "grpo": 3e-5, "dr_grpo": 3e-5, "dapo": 3e-5, "gspo": 3e-5, "cispo": 3e-5,
           "rloo": 1e-4, "reinforce_pp": 3e-5, "dpo": 3e-5, "ipo": 3e-5, "kto": 3e-5, "ilql": 3e-5}


@pytest.mark.parametrize("algo", sorted(RLVR_LR))
def test_the_rlvr_presets_are_their_algorithm_at_a_small_step(algo, monkeypatch):
    from alignzoo import plugins
    from alignzoo.config import validate
    from alignzoo.testing import compose_config

    monkeypatch.setenv("ALIGNZOO_PLUGINS", "kto")  # kto_rlvr is the KTO plugin's preset
    try:
        registries = plugins.load(reload=True).registries
        built, problems = validate(compose_config(["+experiment=verifiable", f"algo={algo}_rlvr"]), registries)
    finally:
        monkeypatch.setenv("ALIGNZOO_PLUGINS", "")
        plugins.load(reload=True)
    assert not problems and built["algo"].name == algo and built["algo"].lr == RLVR_LR[algo]
