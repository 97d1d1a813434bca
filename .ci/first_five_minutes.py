"""Run the README's "First five minutes" block verbatim (the fenced block between ``<!-- first-five-minutes -->``
and ``<!-- /first-five-minutes -->``), as one bash script in the repository root, so ``source`` carries over.

Only the lines named in ``.ci/first-five-minutes.json`` are replaced, by the command given there (a step that would
take minutes in CI); every other line runs as written. Each step's time is printed, then the total."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- first-five-minutes -->\s*```bash\n(.*?)```\s*<!-- /first-five-minutes -->", re.DOTALL)
COMMENT = re.compile(r"\s+#\s.*$")  # a trailing explanation (the block's commands hold no quoted " # ")


def commands(readme: str) -> list[str]:
    """The block's commands in order, trailing comments removed; the block must exist exactly once."""
    found = BLOCK.findall(readme)
    if len(found) != 1:
        raise SystemExit(f"README.md: expected one <!-- first-five-minutes --> bash block, found {len(found)}")
    return [COMMENT.sub("", line).strip() for line in found[0].splitlines() if line.strip()]


def main() -> int:
    steps = commands((ROOT / "README.md").read_text())
    substitutes = json.loads((ROOT / ".ci" / "first-five-minutes.json").read_text())
    unknown = set(substitutes) - set(steps)
    if unknown:
        raise SystemExit(f".ci/first-five-minutes.json replaces lines the README no longer has: {sorted(unknown)}")
    lines = ["set -euo pipefail"]
    for step in steps:
        run = substitutes.get(step, step)
        shown = step if run == step else f"{step}    [CI: {run}]"
        lines += [f"echo {json.dumps('+ ' + shown)} >&2", "t0=$SECONDS", run,
                  'echo "  ($((SECONDS - t0)) s)" >&2']
    t0 = time.time()
    code = subprocess.run(["bash", "-c", "\n".join(lines)], cwd=ROOT).returncode
    print(f"first five minutes: exit {code} after {time.time() - t0:.0f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
