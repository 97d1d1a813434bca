"""Every built-in component, registered through the same hooks a third-party plugin implements.

Imports inside the hooks stay light: heavy modules (torch, transformers) load when a component is built.
"""

from __future__ import annotations

from alignzoo.hookspecs import hookimpl


@hookimpl
def alignzoo_register_algos(register):
    from alignzoo.algos import dpo, sft
    from alignzoo.algos import ilql

    for name, preset in dpo.PRESETS.items():
        register(name, dpo.train, preset, description=f"DPO family ({preset.variant}"
                 + (f", label_smoothing={preset.label_smoothing}" if preset.label_smoothing else "") + ")")
    register("sft", sft.train, sft.SFTConfig, description="the SFT reference row: no optimization")

    from alignzoo.algos import a2c, best_of_n, ppo

    register("ppo", ppo.train, ppo.PPOConfig, description="PPO with a KL penalty against a reward model")
    register("a2c", a2c.train, a2c.A2CConfig, description="advantage actor-critic, one step per batch")
    register("best_of_n", best_of_n.train, best_of_n.BestOfNConfig, description="best of N reference samples")
    register("best_of_16", best_of_n.train, best_of_n.BestOfNConfig(name="best_of_16", n=16),
             description="best of 16 reference samples")
    register("ilql", ilql.train, ilql.ILQLConfig, description="ILQL: offline Q-learning, decoding with beta (Q - V)")

    from alignzoo.algos import rlaif

    register("rlaif", rlaif.train, rlaif.RLAIFConfig,
             description="RLAIF: a constitutional critic labels the feedback, then DPO or reward model + PPO")


@hookimpl
def alignzoo_register_tasks(register):
    from alignzoo.tasks import hf_preferences, sentiment

    register("sentiment", sentiment.build_sentiment, sentiment.SentimentConfig)
    register("hf_preferences", hf_preferences.build_hf_preferences, hf_preferences.HFPreferencesConfig)


@hookimpl
def alignzoo_register_models(register):
    from alignzoo.models import hf, tiny

    register("tiny", tiny.build_tiny, tiny.TinyModelConfig, description="a small GPT-2 built from a config")
    register("hf", hf.build_hf, hf.HFModelConfig, description="any Hugging Face causal LM directory or Hub name")


@hookimpl
def alignzoo_register_rewards(register):
    from alignzoo.rewards import rule

    from alignzoo.tasks import sentiment

    register("vader", rule.VaderReward, rule.VaderConfig, description="VADER compound sentiment (gameable proxy)")
    register("gold", sentiment.build_gold, sentiment.GoldConfig, description="the sentiment task's gold reward")
    register("length", rule.LengthReward, rule.LengthRewardConfig, description="target-length shaping")
    register("harmless", rule.HarmlessReward, rule.HarmlessConfig, description="1 - P(offensive) (alt-profanity-check)")
    register("weighted", rule.WeightedReward, rule.WeightedRewardConfig, description="weighted sum of named rewards")

    from alignzoo.critics import rule as critic_rules

    register("fluency", critic_rules.FluencyReward, critic_rules.FluencyConfig,
             description="1 - repeated-word share - missing-EOS penalty (the rule critic's fluency principle)")

    from alignzoo.rewards import learned

    register("learned", learned.build_learned, learned.LearnedRewardConfig,
             description="a learned reward model (Bradley-Terry / Plackett-Luce), trained once and cached")
    register("ensemble", learned.build_ensemble, learned.EnsembleConfig,
             description="an ensemble of learned reward models: mean - k * std")


@hookimpl
def alignzoo_register_critics(register):
    from alignzoo.critics import lm_judge, rule

    register("rule", rule.build_rule_critic, rule.RuleCriticConfig,
             description="principles mapped to rule-based scorers (Bradley-Terry on scores)")
    register("lm_judge", lm_judge.build_lm_judge, lm_judge.LMJudgeConfig,
             description="a causal LM judge: log-probs of (A) vs (B), both orders (default: SmolLM2-135M)")


@hookimpl
def alignzoo_register_evaluators(register):
    from alignzoo.evaluators import basic, gold

    register("gold_reward", gold.GoldRewardEvaluator, gold.GoldRewardConfig)
    register("win_rate", gold.WinRateEvaluator, gold.WinRateConfig)

    from alignzoo.evaluators import reward_model

    register("rm_accuracy", reward_model.RMAccuracyEvaluator, reward_model.RMAccuracyConfig)
    register("rm_gold_correlation", reward_model.RMGoldCorrelationEvaluator, reward_model.RMGoldCorrelationConfig)
    register("kl", basic.KLEvaluator, basic.KLConfig)
    register("length", basic.LengthEvaluator, basic.LengthConfig)
    register("distinct", basic.DistinctEvaluator, basic.DistinctConfig)
    register("reward", basic.RewardEvaluator, basic.RewardEvalConfig)

    from alignzoo.evaluators import judge

    register("judge_win_rate", judge.JudgeWinRateEvaluator, judge.JudgeWinRateConfig,
             description="win rate against the reference under a critic and constitution (both orders judged)")


@hookimpl
def alignzoo_register_labelers(register):
    from alignzoo.pipeline import labelers

    for name, (factory, config, description) in labelers.BUILTIN.items():
        register(name, factory, config, description=description)


@hookimpl
def alignzoo_register_loggers(register):
    from alignzoo.loggers import basic

    register("console", basic.ConsoleLogger, basic.ConsoleConfig)
    register("jsonl", basic.JsonlLogger, basic.JsonlConfig)
    register("wandb", basic.WandbLogger, basic.WandbConfig)
