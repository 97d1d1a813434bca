"""alignzoo-kto: the loss oracle, the conformance suite, and a YAML preset shipped by the plugin."""

import pytest
import torch

from alignzoo import plugins
from alignzoo.testing import check_algorithm, compose_config
from alignzoo_kto import kto_loss


@pytest.mark.parametrize("lam_d,lam_u", [(1.0, 1.0), (2.0, 0.5)])
def test_loss_at_init_is_half_lambda_per_example(lam_d, lam_u):
    logps = torch.randn(6) * 3 - 20
    desirable = torch.tensor([True, False, True, True, False, False])
    loss, _ = kto_loss(logps, logps.clone(), desirable, beta=0.1, z0=0.0, lambda_desirable=lam_d,
                       lambda_undesirable=lam_u)
    assert loss.item() == pytest.approx((3 * 0.5 * lam_d + 3 * 0.5 * lam_u) / 6)


def test_desirable_examples_pull_log_ratio_up_and_undesirable_down():
    r = torch.zeros(2, requires_grad=True)
    loss, _ = kto_loss(r, torch.zeros(2), torch.tensor([True, False]), beta=0.5, z0=0.0)
    loss.backward()
    assert r.grad[0] < 0 < r.grad[1]  # gradient descent raises r for desirable, lowers it for undesirable


def test_registered_with_version_through_the_entry_point():
    state = plugins.load(reload=True)
    info = next(p for p in state.plugins if p.name == "kto")
    assert info.version == "0.1.0" and info.components == {"algo": ["kto"]} and not info.broken


def test_conformance(tmp_path, stage_cache):
    check_algorithm("kto", tmp_path, stage_cache, bad_override="algo.beta=-1", bad_message="algo.beta must be > 0")


def test_yaml_preset_from_the_plugin():
    cfg = compose_config(["algo=kto_strong"])
    assert cfg.algo.name == "kto" and cfg.algo.beta == 0.3 and cfg.algo.lr == 1e-3


def test_without_the_plugin_kto_is_an_unknown_name(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "ALIGNZOO_PLUGINS": ""}  # built-ins only: as if the plugin were not installed
    out = subprocess.run([sys.executable, "-m", "alignzoo", "run", "algo=kto"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "unknown algo 'kto'" in out.stderr and "Traceback" not in out.stderr
