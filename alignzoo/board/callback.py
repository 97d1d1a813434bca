"""The Hydra callback that builds ``<sweep dir>/board/`` after every multirun, registered in ``conf/config.yaml``::

    hydra:
      callbacks:
        board:
          _target_: alignzoo.board.callback.BoardCallback

Jobs never raise (``run_job`` records failures), so Hydra reaches ``on_multirun_end`` and failed jobs show up as
failed rows. Should a sweep still be cut short (``run.fail_fast=true``, Ctrl-C, a launcher error: Hydra 1.3 then
skips ``on_multirun_end``), the board is built at interpreter exit instead. With the ``wandb`` logger in the config
the leaderboard table is also logged to W&B (offline unless ``WANDB_MODE``/``logger.wandb.mode`` says otherwise), in
the sweep's group; that mirror is optional and never fatal. Turn the board off with
``hydra.callbacks.board.enabled=false``.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra is a dependency; keep the module importable anyway
    Callback = object  # type: ignore[misc,assignment]

log = logging.getLogger("alignzoo")


class BoardCallback(Callback):  # type: ignore[misc]
    def __init__(self, enabled: bool = True, subdir: str = "board", wandb: bool = True) -> None:
        self.enabled = enabled
        self.subdir = subdir  # the board's folder inside the sweep directory
        self.wandb = wandb  # mirror the table to W&B when the sweep's config has logger.wandb
        self._pending: Optional[Any] = None  # the sweep config, until its board is built
        self._pid = os.getpid()

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        if self.enabled:
            self._pending = config
            atexit.register(self._at_exit)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if self.enabled:
            self._pending = None
            build_sweep_board(config, self.subdir, wandb=self.wandb)

    def _at_exit(self) -> None:
        config, self._pending = self._pending, None
        if config is not None and os.getpid() == self._pid:  # the sweep ended early: build what there is
            print("alignzoo: the sweep ended early; building the board from the records written so far",
                  file=sys.stderr)
            build_sweep_board(config, self.subdir, wandb=self.wandb)


def build_sweep_board(config: Any, subdir: str = "board", *, wandb: bool = True) -> Optional[Path]:
    """Build ``<hydra.sweep.dir>/<subdir>``; report and swallow every error (a board never fails a sweep)."""
    from alignzoo.errors import AlignzooError

    try:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            print(f"alignzoo: no board: the sweep directory {sweep_dir} was not created", file=sys.stderr)
            return None
        from alignzoo.board import build_board

        board = build_board([sweep_dir], sweep_dir / subdir, title=f"alignzoo sweep {sweep_dir.name}")
        print(f"alignzoo: board: {board.summary()}", file=sys.stderr)
    except AlignzooError as exc:
        print(f"alignzoo: no board for this sweep: {exc}", file=sys.stderr)
        return None
    except Exception as exc:  # noqa: BLE001 - the runs are done; a board failure must not lose or fail them
        log.exception("building the sweep's board failed")
        print(f"alignzoo: warning: building the board failed ({type(exc).__name__}: {exc}); build it with "
              f"`alignzoo board build {config.hydra.sweep.dir} --out DIR`", file=sys.stderr)
        return None
    if wandb:
        log_to_wandb(config, board, group=sweep_dir.name)
    return board.out


def _wandb_settings(config: Any, board: Any) -> Optional[dict[str, Any]]:
    """The W&B logger's settings from the sweep config, or from a record when the logger was swept; None: off."""
    from omegaconf import OmegaConf

    node = OmegaConf.select(config, "logger.wandb", default=None)
    if node is not None:
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    for r in board.records:
        conf = ((r.get("config") or {}).get("logger") or {}).get("wandb")
        if isinstance(conf, dict):
            return conf
    return None


def log_to_wandb(config: Any, board: Any, *, group: str) -> bool:
    """Log the leaderboard as a ``wandb.Table`` (and the frontier plot) in the sweep's W&B group; never raises."""
    try:
        settings = _wandb_settings(config, board)
        if settings is None:
            return False
        mode = settings.get("mode") or os.environ.get("WANDB_MODE") or "offline"
        if mode == "disabled":
            return False
        import wandb

        from alignzoo.board.tables import track_title

        shown = list(dict.fromkeys(c for g in board.groups for c in g.headline.columns))  # every track's, in order
        columns = ["rank", "algorithm", "track", "headline", "n", "failed"]
        for _, header, _ in shown:
            columns += [header, f"{header} lo", f"{header} hi"]
        columns += ["command", "group_id"]
        rows = []
        for g in board.groups:
            row = [g.rank, g.label, track_title(g.track), g.headline.metric, len(g.ok), len(g.failed)]
            for key, _, _ in shown:
                stat = g.metric(key)
                row += [stat["mean"], stat["lo"], stat["hi"]]
            rows.append(row + [g.command, g.id])
        run = wandb.init(project=settings.get("project") or "alignzoo", entity=settings.get("entity"),
                         group=settings.get("group") or group, job_type="leaderboard", name=f"leaderboard-{group}",
                         dir=str(board.out), mode=mode, reinit="finish_previous")
        try:
            payload: dict[str, Any] = {"leaderboard": wandb.Table(columns=columns, data=rows)}
            frontier = board.out / "frontier.png"
            if frontier.is_file():
                payload["frontier"] = wandb.Image(str(frontier))
            run.log(payload)
        finally:
            run.finish()
        print(f"alignzoo: board: leaderboard table logged to W&B ({mode})", file=sys.stderr)
        return True
    except Exception as exc:  # noqa: BLE001 - W&B is a mirror; the board files are already written
        print(f"alignzoo: warning: could not log the leaderboard to W&B: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return False
