"""The fault catalogue's board rows: bad records and bad ``--out`` folders through ``alignzoo board build``.

Every row runs the real CLI in this process (``main(["board", "build", ...])``) over small synthetic records (written
with ``alignzoo.record``) and an earlier board in ``--out`` that sits beside a user's own files (a README, a
``.git`` folder, a config of their own in ``configs/``). It checks the exit code, the message on stderr (it names
the file or folder and the fix), that no traceback is printed, and that earlier work is byte-identical afterwards:
the records always, the user's files always, and the previous board too whenever the build did not succeed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from alignzoo.board import build_board
from alignzoo.board.publish import MANIFEST
from alignzoo.record import RunRecord, write_record

USER_FILES = {"README.md": b"# my results\n", ".git/config": b"[core]\n", "configs/mine.yaml": b"mine: 1\n",
              "notes/todo.txt": b"compare at matched KL\n"}
STAGING = ("alignzoo-board-tmp-", ".board.tmp-")  # the staging folders' name prefixes (inside --out, beside it)


def good_record(run_id: str, algo: str = "dpo", seed: int = 0, gold: float = 0.2) -> RunRecord:
    return RunRecord(run_id=run_id, status="ok", algo=algo, task="sentiment", model="tiny", budget="smoke", seed=seed,
                     config={"seed": seed, "algo": {"name": algo, "beta": 0.1}}, overrides=[f"algo={algo}"],
                     metrics={"eval/gold_reward": gold, "eval/kl": 1.5}, wall_time_s=3.0, tokens=100,
                     started_at="2026-01-01T00:00:00+00:00")


GOOD = {"dpo-s0": good_record("dpo-s0", seed=0, gold=0.2), "dpo-s1": good_record("dpo-s1", seed=1, gold=0.3),
        "ppo-s0": good_record("ppo-s0", algo="ppo", seed=0, gold=0.1)}


@dataclass
class BoardEnv:
    """What a row's setup may use and change: ``runs`` (the good records), ``out`` (the earlier board beside the
    user's files)."""

    tmp: Path
    monkeypatch: Any
    args: list[str] = field(default_factory=list)

    @property
    def runs(self) -> Path:
        return self.tmp / "runs"

    @property
    def out(self) -> Path:
        return self.tmp / "board"

    def write(self, job: str, content: str | bytes) -> Path:
        """A record.json with exactly ``content`` in ``runs/<job>/``."""
        path = self.runs / job / "record.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def edited(self, job: str, change: Callable[[dict[str, Any]], None]) -> Path:
        """A record of a good run with ``change`` applied to its JSON (wrong types, missing keys, NaN...)."""
        data = good_record(f"{job}-run").to_dict()
        change(data)
        return self.write(job, json.dumps(data))

    def board(self) -> dict[str, Any]:
        return json.loads((self.out / "leaderboard.json").read_text())


@dataclass
class BoardFault:
    id: str
    says: tuple[str, ...]  # fragments of stderr: the file or folder, what is wrong, the fix
    exit: int = 0  # 0: the bad input is skipped with a warning; 2: the user's error; 130: interrupted
    setup: Optional[Callable[[BoardEnv], Optional[list[str]]]] = None  # may return the args after "board build"
    check: Optional[Callable[[BoardEnv], None]] = None  # what must hold afterwards
    replaces_board: Optional[bool] = None  # whether a new board is in --out afterwards (default: exit == 0)
    area: str = "board"


# -- setups and checks ---------------------------------------------------------------------------------------------

def _set(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.update(fields)


def _drop(*keys: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: [data.pop(k) for k in keys]


def _bad(job: str, content: str | bytes | Callable[[dict[str, Any]], None]) -> Callable[[BoardEnv], None]:
    def setup(env: BoardEnv) -> None:
        env.edited(job, content) if callable(content) else env.write(job, content)
    return setup


def _counts(records: int, ok: int) -> Callable[[BoardEnv], None]:
    def check(env: BoardEnv) -> None:
        board = env.board()
        assert (board["n_records"], board["n_ok"]) == (records, ok), board
    return check


def _the_good_three(env: BoardEnv) -> None:
    board = env.board()
    assert (board["n_records"], board["n_ok"], board["n_failed"]) == (3, 3, 0)
    assert sorted(r for g in board["groups"] for r in g["run_ids"]) == ["dpo-s0", "dpo-s1", "ppo-s0"]
    assert any("skipped" in w for w in board["warnings"])  # the page and the JSON say it too


def _not_counted(run_id: str, *fragments: str) -> Callable[[BoardEnv], None]:
    def check(env: BoardEnv) -> None:
        board = env.board()
        (failed,) = [f for f in board["failed_runs"] if f["run_id"] == run_id]
        for fragment in fragments:
            assert fragment in f"{failed['type']}: {failed['message']}", failed
        assert (board["n_records"], board["n_ok"], board["n_failed"]) == (4, 3, 1)
        dpo = next(g for g in board["groups"] if g["algo"] == "dpo")
        assert dpo["n"] == 2 and dpo["metrics"]["eval/gold_reward"]["mean"] == pytest.approx(0.25)
        row = next(r for r in _csv_rows(env) if r["run_id"] == run_id)
        assert row["counted"] == "0" and row["error_type"] == (failed["type"] or "")
    return check


def _csv_rows(env: BoardEnv) -> list[dict[str, str]]:
    import csv

    return list(csv.DictReader((env.out / "runs.csv").open()))


def _unreadable(env: BoardEnv) -> None:
    path = env.edited("locked", _set())
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)
    env.monkeypatch.setattr(Path, "read_bytes", read_bytes)


def _oversized(env: BoardEnv) -> None:
    path = env.write("huge", b"")
    with open(path, "r+b") as f:
        f.truncate(40 * 2**20)  # sparse: 40 MiB to stat, no disk used


def _fifo(env: BoardEnv) -> None:
    (env.runs / "pipe").mkdir()
    os.mkfifo(env.runs / "pipe" / "record.json")  # reading it would block the build forever


def _deep_config(env: BoardEnv) -> None:
    config: dict[str, Any] = {}
    node = config
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    env.edited("deep", _set(config=config))


def _only_bad(env: BoardEnv) -> list[str]:
    env.write("../bad-only/a", "{not json")
    env.write("../bad-only/b", json.dumps({"schema_version": 1, "status": "ok"}))
    return [str(env.tmp / "bad-only"), "--out", str(env.out)]


def _out(where: Callable[[BoardEnv], Path]) -> Callable[[BoardEnv], list[str]]:
    return lambda env: [str(env.runs), "--out", str(where(env))]


def _user_file(env: BoardEnv) -> Path:
    (env.tmp / "user.txt").write_text("not a folder\n")
    return env.tmp / "user.txt"


def _not_writable(env: BoardEnv) -> list[str]:
    real = os.access
    env.monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == env.out else real(p, mode, **kw))
    return [str(env.runs), "--out", str(env.out)]


def _permission_denied(env: BoardEnv) -> None:
    import tempfile

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        raise PermissionError(errno.EACCES, "Permission denied", str(env.out))
    env.monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)


def _disk_full(env: BoardEnv) -> None:
    real = os.fsync

    def fsync(fd: int) -> None:
        if any(p in os.readlink(f"/proc/self/fd/{fd}") for p in STAGING) and fsync.calls >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync.calls += 1
        real(fd)
    fsync.calls = 0  # type: ignore[attr-defined]
    env.monkeypatch.setattr(os, "fsync", fsync)


def _folder_in_the_way(env: BoardEnv) -> None:
    (env.out / "runs.csv").unlink()
    (env.out / "runs.csv").mkdir()
    (env.out / "runs.csv" / "keep.txt").write_text("mine\n")


def _ctrl_c_while_writing(env: BoardEnv) -> None:
    real = os.fsync

    def fsync(fd: int) -> None:
        fsync.calls += 1
        if fsync.calls == 4:
            raise KeyboardInterrupt
        real(fd)
    fsync.calls = 0  # type: ignore[attr-defined]
    env.monkeypatch.setattr(os, "fsync", fsync)


def _ctrl_c_while_replacing(env: BoardEnv) -> list[str]:
    """SIGINT arrives between two renames of the commit; it must wait until the last one."""
    real = os.replace
    env.replaced = []  # type: ignore[attr-defined]
    # Ctrl-C's own handler, whatever an earlier test or the launching shell left installed (a background job
    # inherits SIGINT ignored); run_board_fault puts the earlier one back
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def replace(src: Any, dst: Any) -> None:
        if not env.replaced:  # type: ignore[attr-defined]
            signal.raise_signal(signal.SIGINT)  # in this thread, so it is delivered (or held) right here
        real(src, dst)
        env.replaced.append(Path(dst).name)  # type: ignore[attr-defined]
    env.monkeypatch.setattr(os, "replace", replace)
    return [str(env.runs / "dpo-s0"), str(env.runs / "dpo-s1"), "--out", str(env.out)]


def _new_board_whole(env: BoardEnv) -> None:
    """Every file the manifest lists is in place with the content it lists, and the old ppo group is gone."""
    manifest = json.loads((env.out / MANIFEST).read_text())["files"]
    for name, sha in manifest.items():
        assert hashlib.sha256((env.out / name).read_bytes()).hexdigest() == sha, name
    assert env.board()["n_records"] == 2 and not list((env.out / "configs").glob("ppo-*.yaml"))
    assert env.replaced[-2:] == ["index.html", MANIFEST]  # type: ignore[attr-defined]


def _dpo_only(env: BoardEnv) -> list[str]:
    return [str(env.runs / "dpo-s0"), str(env.runs / "dpo-s1"), "--out", str(env.out)]


def _stale_config_removed(env: BoardEnv) -> None:
    assert [p.name for p in (env.out / "configs").iterdir() if p.name.startswith("ppo-")] == []
    assert sorted(g["algo"] for g in env.board()["groups"]) == ["dpo"]


def _user_edits_stale_config(env: BoardEnv) -> list[str]:
    (stale,) = (env.out / "configs").glob("ppo-*.yaml")
    stale.write_text(stale.read_text() + "# my notes on this run\n")
    return _dpo_only(env)


def _edited_config_kept(env: BoardEnv) -> None:
    (kept,) = (env.out / "configs").glob("ppo-*.yaml")
    assert kept.read_text().endswith("# my notes on this run\n")


def _hostile_manifest(env: BoardEnv) -> list[str]:
    (env.tmp / "outside.txt").write_text("precious\n")
    files = {"README.md": None, ".git/config": None, "../outside.txt": None, "configs/mine.yaml": None,
             "/etc/hostname": None}
    (env.out / MANIFEST).write_text(json.dumps({"files": files}))
    return _dpo_only(env)


def _nothing_outside_removed(env: BoardEnv) -> None:
    """Only board paths the manifest lists are ever removed: the hostile entries are ignored, and the stale ppo
    config, which this manifest does not list, stays; the new manifest lists exactly the new board's files."""
    assert (env.tmp / "outside.txt").read_text() == "precious\n"
    assert len(list((env.out / "configs").glob("ppo-*.yaml"))) == 1
    listed = set(json.loads((env.out / MANIFEST).read_text())["files"])
    assert "README.md" not in listed and listed >= {"index.html", "runs.csv", "leaderboard.json", "frontier.png"}


def _board_from_before_manifests(env: BoardEnv) -> list[str]:
    (env.out / MANIFEST).unlink()
    return _dpo_only(env)


ROWS = [
    # bad records: each is named with the reason and skipped; the board is built from the others
    BoardFault("board-record-truncated", ("skipped runs/cut/record.json: is not valid JSON", "fix the file or move it "
                                          "out of the run directories"),
               setup=lambda env: env.write("cut", (env.runs / "dpo-s0" / "record.json").read_bytes()[:150]),
               check=_the_good_three),
    BoardFault("board-record-not-an-object", ("skipped runs/list/record.json: is [1, 2], not a JSON object",),
               setup=_bad("list", "[1, 2]"), check=_the_good_three),
    BoardFault("board-record-schema-version", ("runs/v99/record.json: record schema version 99 is not supported "
                                               "(expected 1)",), setup=_bad("v99", _set(schema_version=99)),
               check=_the_good_three),
    BoardFault("board-record-missing-keys", ("runs/nokeys/record.json: has no run_id or status",),
               setup=_bad("nokeys", _drop("run_id", "status")), check=_the_good_three),
    BoardFault("board-record-wrong-types", ("runs/types/record.json: seed is 'abc', expected an integer",
                                            "metrics is [0.1], expected an object", "fix the file"),
               setup=_bad("types", _set(seed="abc", metrics=[0.1])), check=_the_good_three),
    BoardFault("board-record-metric-not-a-number", ("runs/m/record.json: metrics['eval/kl'] is 'high', expected a "
                                                    "number",),
               setup=_bad("m", _set(metrics={"eval/gold_reward": 0.2, "eval/kl": "high"})), check=_the_good_three),
    BoardFault("board-record-non-finite-cost", ("runs/nan/record.json: wall_time_s is nan, expected a finite number",),
               setup=_bad("nan", _set(wall_time_s=float("nan"))), check=_the_good_three),
    BoardFault("board-record-huge-value", ("runs/big/record.json: metrics['eval/gold_reward'] is 1e+300, beyond the "
                                           "±1e+15 any real run stays within",),
               setup=_bad("big", _set(metrics={"eval/gold_reward": 1e300})), check=_the_good_three),
    BoardFault("board-record-huge-integer", ("runs/digits/record.json: is not valid JSON", "digits"),
               setup=_bad("digits", '{"schema_version": 1, "run_id": "x", "status": "ok", "tokens": '
                          + "9" * 5000 + "}"), check=_the_good_three),
    BoardFault("board-record-nested-too-deeply", ("runs/nest/record.json: nests too deeply to parse",),
               setup=_bad("nest", "[" * 100_000 + "]" * 100_000), check=_the_good_three),
    BoardFault("board-record-config-too-deep", ("runs/deep/record.json: config nests deeper than 64 levels",),
               setup=_deep_config, check=_the_good_three),
    BoardFault("board-record-is-a-directory", ("runs/dir/record.json: is a directory, not a file; rename it",),
               setup=lambda env: (env.runs / "dir" / "record.json").mkdir(parents=True), check=_the_good_three),
    BoardFault("board-record-unreadable", ("runs/locked/record.json: cannot be read (Permission denied); check the "
                                           "file and its permissions",), setup=_unreadable, check=_the_good_three),
    BoardFault("board-record-oversized", ("runs/huge/record.json: is 40.0 MiB, over the 32 MiB a record may have",),
               setup=_oversized, check=_the_good_three),
    BoardFault("board-record-is-a-pipe", ("runs/pipe/record.json: is not a regular file",), setup=_fifo,
               check=_the_good_three),
    BoardFault("board-no-usable-record", ("no usable record.json under", "all 2 were skipped", "fix or remove them",
                                          "bad-only/a/record.json: is not valid JSON",
                                          "bad-only/b/record.json: has no run_id"), exit=2, setup=_only_bad),
    # runs shown honestly: on the board, never averaged in
    BoardFault("board-final-metric-nan", ("alignzoo board: 4 runs (3 ok, 1 failed)",),
               setup=_bad("nanmetric", _set(seed=2, metrics={"eval/gold_reward": float("nan"), "eval/kl": 1.0})),
               check=_not_counted("nanmetric-run", "NonFiniteMetric", "eval/gold_reward=nan are not finite",
                                  "rerun this seed")),
    BoardFault("board-run-never-finished", ("alignzoo board: 4 runs (3 ok, 1 failed)",),
               setup=_bad("running", _set(seed=2, status="running", metrics={})),
               check=_not_counted("running-run", "never finished (status 'running'", "rerun it")),
    # run directories and --out
    BoardFault("board-run-dir-missing", ("run directory not found:", "nowhere"), exit=2,
               setup=lambda env: [str(env.tmp / "nowhere"), "--out", str(env.out)]),
    BoardFault("board-run-dir-is-a-file", ("not a directory:", "record.json", "pass the run directories"), exit=2,
               setup=lambda env: [str(env.runs / "dpo-s0" / "record.json"), "--out", str(env.out)]),
    BoardFault("board-out-is-a-file", ("--out", "user.txt is a file, not a directory; give a directory"), exit=2,
               setup=_out(_user_file)),
    BoardFault("board-out-below-a-file", ("cannot create --out", "user.txt is a file; choose another --out"), exit=2,
               setup=_out(lambda env: _user_file(env) / "board")),
    BoardFault("board-out-not-writable", ("board is not writable; choose a writable --out",), exit=2,
               setup=_not_writable),
    BoardFault("board-out-permission-denied", ("cannot write the board into", "Permission denied",
                                               "choose a writable --out", "the previous board there is unchanged"),
               exit=2, setup=_permission_denied),
    BoardFault("board-out-disk-full", ("cannot write the board into", "No space left on device",
                                       "free some disk space or choose another --out",
                                       "the previous board there is unchanged"), exit=2, setup=_disk_full),
    BoardFault("board-out-folder-in-the-way", ("board/runs.csv is a folder, where the board writes a file",
                                               "move it away or choose another --out"), exit=2,
               setup=_folder_in_the_way),
    BoardFault("board-interrupted-while-writing", ("interrupted", "never a mix"), exit=130,
               setup=_ctrl_c_while_writing),
    BoardFault("board-interrupted-while-replacing", ("interrupted", "never a mix"), exit=130,
               setup=_ctrl_c_while_replacing, check=_new_board_whole, replaces_board=True),
    # a rebuild replaces only the board's own files
    BoardFault("board-rebuild-removes-its-stale-files", ("1 groups",), setup=_dpo_only, check=_stale_config_removed),
    BoardFault("board-rebuild-keeps-an-edited-stale-file", ("kept", "ppo-", "has changed since",
                                                            "delete it if it is not yours"),
               setup=_user_edits_stale_config, check=_edited_config_kept),
    BoardFault("board-rebuild-ignores-a-hostile-manifest", ("1 groups",), setup=_hostile_manifest,
               check=_nothing_outside_removed),
    BoardFault("board-rebuild-over-a-board-from-before-manifests", ("1 groups",), setup=_board_from_before_manifests,
               check=_stale_config_removed),
]


# -- the runner ----------------------------------------------------------------------------------------------------

def alignzoo_board(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """``alignzoo board build ARGS`` in this process: (exit code, stdout, stderr)."""
    from alignzoo.cli import main

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["board", "build", *args])
    code, captured = exit_.value.code, capsys.readouterr()
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def snapshot(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (relative path -> bytes; those over 1 MiB by their size only)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            with open(path, "rb") as f:  # not Path.read_bytes, which a row may have patched
                out[str(path.relative_to(root))] = f.read() if size < 2**20 else f"{size} bytes".encode()
    return out


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> Path:
    """The good records and a board built from them, beside a user's own files in the board's folder."""
    root = tmp_path_factory.mktemp("board-faults")
    for job, rec in GOOD.items():
        write_record(rec, root / "runs" / job)
    build_board([root / "runs"], root / "board")
    for name, content in USER_FILES.items():
        (root / "board" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "board" / name).write_bytes(content)
    return root


def run_board_fault(row: BoardFault, tmp_path: Path, earlier: Path, capsys, monkeypatch) -> None:
    sigint = signal.getsignal(signal.SIGINT)  # a row may install Ctrl-C's handler; the next test gets this one back
    try:
        _run_board_fault(row, tmp_path, earlier, capsys, monkeypatch)
    finally:
        signal.signal(signal.SIGINT, sigint)


def _run_board_fault(row: BoardFault, tmp_path: Path, earlier: Path, capsys, monkeypatch) -> None:
    tmp = tmp_path / "w"
    shutil.copytree(earlier, tmp, symlinks=True)
    monkeypatch.chdir(tmp)  # paths in messages are relative to the working directory, as a user sees them
    env = BoardEnv(tmp=tmp, monkeypatch=monkeypatch)
    given = row.setup(env) if row.setup else None
    args = given if isinstance(given, list) else [str(env.runs), "--out", str(env.out)]
    before = snapshot(tmp)
    code, said, err = alignzoo_board(args, capsys, monkeypatch)
    assert code == row.exit, err[-3000:]
    assert "Traceback (most recent call last)" not in said + err, err[-3000:]
    for fragment in row.says:
        assert fragment in said + err, (fragment, said + err[-3000:])
    if row.exit == 2:
        assert len([line for line in err.splitlines() if line.startswith("alignzoo: error:")]) == 1, err[-3000:]
    after = snapshot(tmp)
    replaced = row.exit == 0 if row.replaces_board is None else row.replaces_board
    out = str(env.out.relative_to(tmp)) + os.sep
    must_stay = {k: v for k, v in before.items() if not replaced or not k.startswith(out)
                 or k[len(out):] in USER_FILES}
    changed = [k for k, v in must_stay.items() if after.get(k) != v]
    assert not changed, f"earlier work changed or lost: {changed}"
    assert not [k for k in after if any(p in k for p in STAGING)], "a staging folder was left behind"
    if not replaced:
        assert sorted(after) == sorted(before), "files appeared"
    if row.check:
        row.check(env)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_board_fault(row: BoardFault, tmp_path, earlier, capsys, monkeypatch):
    run_board_fault(row, tmp_path, earlier, capsys, monkeypatch)


def test_the_board_rows_are_many_and_unique():
    assert len(ROWS) >= 12 and len({r.id for r in ROWS}) == len(ROWS)
    assert all(r.id.startswith("board-") and r.says for r in ROWS)
