"""The whole extension surface of alignzoo: pluggy hook specifications.

Built-in components register through these same hooks, each module next to its code (the end of
``alignzoo/algos/ppo.py`` registers ``algo=ppo``; ``alignzoo.plugins`` finds such modules). A third-party package
implements any of them in a module named by an entry point in the ``alignzoo`` group::

    [project.entry-points.alignzoo]
    my_plugin = "my_plugin_module"

Every ``alignzoo_register_*`` hook receives a ``register`` callable::

    register(name, factory, config, *, description="")

- ``name``: the component's name, used on the command line (``algo=<name>``);
- ``factory``: what the registry calls to build the component (its signature depends on the kind; see the
  kind's docs in docs/plugins.md);
- ``config``: the component's config dataclass (a class, or an instance for a preset with other defaults);
  it is stored in Hydra's ConfigStore under the kind's group, so ``algo=<name>`` composes with no YAML file.
  The dataclass must have a ``name: str`` field whose default is the registered name.
"""

from __future__ import annotations

import pluggy

PROJECT = "alignzoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class AlignzooSpecs:
    """Hook specifications. Every hook is called with keyword arguments only."""

    @hookspec
    def alignzoo_register_algos(self, register):
        """Register optimizers (``algo=<name>``).

        factory: ``train(config, ctx) -> Policy``, where ``ctx`` is an ``alignzoo.run.RunContext`` that gives
        the policy, reference, task, reward, stages, loggers and the evaluation callback.
        """

    @hookspec
    def alignzoo_register_tasks(self, register):
        """Register tasks (``task=<name>``): where prompts, preferences and demonstrations come from.

        factory: ``build(config, ctx) -> Task`` (see ``alignzoo.tasks.base.Task``).
        """

    @hookspec
    def alignzoo_register_models(self, register):
        """Register policy backbones (``model=<name>``).

        factory: ``build(config, ctx) -> Policy`` (see ``alignzoo.models.base.Policy``).
        """

    @hookspec
    def alignzoo_register_rewards(self, register):
        """Register reward models (``reward=<name>``), learned or rule-based.

        factory: ``build(config, ctx) -> RewardModel`` with ``score(prompts, completions, ended) -> Tensor[B]``.
        """

    @hookspec
    def alignzoo_register_critics(self, register):
        """Register constitutional critics (``critic=<name>``) that judge responses against principles.

        factory: ``build(config, ctx) -> Critic``.
        """

    @hookspec
    def alignzoo_register_evaluators(self, register):
        """Register evaluators (``evaluator=[a,b]``); their metrics are logged as ``eval/<metric>``.

        factory: ``build(config, ctx) -> Evaluator`` with ``evaluate(samples) -> dict[str, float]``.
        """

    @hookspec
    def alignzoo_register_loggers(self, register):
        """Register metric loggers (``logger=[console,jsonl,wandb]``).

        factory: ``build(config, ctx) -> Logger`` with ``log(metrics, step)`` and ``finish(record)``.
        """

    @hookspec
    def alignzoo_register_labelers(self, register):
        """Register labelers (``labeler=<name>``): who labels the pipeline's feedback comparisons.

        factory: ``build(config, ctx) -> Labeler`` with ``feedback(pipeline, policy) -> StageResult | None``
        (``alignzoo.pipeline.labelers``; None: the task's own preference pairs are the feedback).
        """

    @hookspec
    def alignzoo_config_searchpath(self):
        """Return Hydra search-path entries (e.g. ``["pkg://my_plugin.conf"]``) holding YAML presets.

        A directory ``my_plugin/conf/algo/my_algo_strong.yaml`` then composes as ``algo=my_algo_strong``. Give
        presets new names: a YAML file named like a registered component would shadow its dataclass. The package
        directory needs an ``__init__.py`` and the YAML files must be shipped as package data.
        """

    @hookspec
    def alignzoo_run_end(self, record):
        """Called once per job after its ``record.json`` is written, with the ``RunRecord`` (ok or failed).

        Exceptions raised here are reported and never fail the job.
        """


#: the registration hooks, by registry kind
REGISTER_HOOKS = {
    "algo": "alignzoo_register_algos",
    "task": "alignzoo_register_tasks",
    "model": "alignzoo_register_models",
    "reward": "alignzoo_register_rewards",
    "critic": "alignzoo_register_critics",
    "evaluator": "alignzoo_register_evaluators",
    "logger": "alignzoo_register_loggers",
    "labeler": "alignzoo_register_labelers",
}
