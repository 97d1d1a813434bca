import os

# Tests never reach W&B, never load third-party plugins unless a test asks, and use one torch thread.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["ALIGNZOO_PLUGINS"] = ""
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)

pytest_plugins = ["alignzoo.testing"]


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smoke_cache(stage_cache):
    """One stage cache for every smoke-budget run of the session (stages are built once, then reused)."""
    return stage_cache


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """A command run in this process (``alignzoo label``, ``alignzoo run``) may configure the root logger on the
    stderr pytest captured for that test; later tests would log into a closed stream ("Logging error")."""
    import logging

    handlers = logging.root.handlers[:]
    yield
    logging.root.handlers[:] = handlers
