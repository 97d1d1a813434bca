import os

os.environ["ALIGNZOO_PLUGINS"] = "grpo"  # this plugin only, whatever else is installed
os.environ.setdefault("WANDB_MODE", "disabled")

pytest_plugins = ["alignzoo.testing"]
