"""alignzoo-grpo, the worked example of extending the core's GRPO family: its estimator's oracle, its registration
next to the core's algorithms (no name clash) and the conformance suite for algo=grpo_median."""

import pytest
import torch

from alignzoo_grpo import NAME, median_baseline

from alignzoo import plugins
from alignzoo.algos.group import ADVANTAGES, PRESETS, train
from alignzoo.testing import check_algorithm


def test_median_baseline_hand_values():
    r = torch.tensor([[1.0, 2.0, 3.0, 10.0]])
    std = torch.tensor([1.0, 2.0, 3.0, 10.0]).std().item()
    want = [(x - 2.0) / (std + 1e-4) for x in (1.0, 2.0, 3.0, 10.0)]  # torch.median: the lower middle value, 2
    assert median_baseline(r)[0].tolist() == pytest.approx(want)
    assert torch.equal(median_baseline(torch.full((2, 4), 0.3)), torch.zeros(2, 4))


def test_registered_next_to_the_core_family_with_the_core_step():
    registry = plugins.load(reload=True).registries["algo"]
    entry = registry.get(NAME)
    assert entry.provider == "grpo" and entry.factory is train
    assert entry.config.advantage == NAME and NAME in ADVANTAGES
    assert {n: registry.get(n).provider for n in ("grpo", "rloo")} == {"grpo": "alignzoo", "rloo": "alignzoo"}
    assert NAME not in PRESETS  # the core's table of presets is the core's


def test_a_plugin_registering_a_core_name_again_is_refused():
    from alignzoo import hookimpl

    class Clash:
        @hookimpl
        def alignzoo_register_algos(self, register):
            register("grpo", train, PRESETS["grpo"])

    state = plugins.load(reload=True, extra_plugins=[("clash", Clash())])
    clash = next(p for p in state.plugins if p.name == "clash")
    assert "algo 'grpo' is registered twice: by 'alignzoo' and by 'clash'" in clash.error
    assert state.registries["algo"].get("grpo").provider == "alignzoo"
    plugins.load(reload=True)


def test_conformance(tmp_path, stage_cache):
    check_algorithm(NAME, tmp_path, stage_cache, bad_override="algo.group_size=1",
                    bad_message="algo.group_size must be >= 2")
