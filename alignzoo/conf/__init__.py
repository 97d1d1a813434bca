"""alignzoo's Hydra configs. ``CONFIG_PATH`` / ``CONFIG_NAME``: the primary config ``hydra.main`` is given (this
folder's ``config.yaml``, relative to the ``alignzoo`` package); ``--config-path`` / ``--config-name`` replace them,
as in Hydra."""

CONFIG_PATH, CONFIG_NAME = "conf", "config"
