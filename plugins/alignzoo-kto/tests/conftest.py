import os

os.environ["ALIGNZOO_PLUGINS"] = "kto"  # this plugin only, whatever else is installed
os.environ.setdefault("WANDB_MODE", "disabled")

pytest_plugins = ["alignzoo.testing"]
