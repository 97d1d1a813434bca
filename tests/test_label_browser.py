"""The labeling page in headless Chromium: 10 judgments by keyboard and mouse, a server killed after 5 and resumed,
HTML in completions shown as text, a write without the CSRF token refused, then DPO trains on the labels."""

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from alignzoo.board.browser import find_chromium

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install -y "
                                "chromium); the labeling page's browser test cannot run without it")

GOOD = [" wonderful and moving", " a lovely, fresh story", " brilliant acting", " superb and fun", " charming music",
        " delightful from start to end", " great pacing", " moving and lovely", " fresh and brilliant",
        " fun for everyone", " lovely score", " superb cast"]
BAD = [" dull and flat", "<script>window.__pwned = 1</script>", "<img src=x onerror=\"window.__pwned = 2\">",
       " boring", " awful", " tedious and messy", " weak plot", " clumsy", " bad ending", " terrible", " flat",
       " messy script"]
HTML_TEXTS = set(BAD[1:3])


def _write_source(path: Path) -> list[dict]:
    rows = [{"prompt": f"review {i}: the film was", "chosen": g, "rejected": b}
            for i, (g, b) in enumerate(zip(GOOD, BAD))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _start(src: Path, out: Path, log: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "ALIGNZOO_PLUGINS": "", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "alignzoo", "label", "--from", str(src), "--out", str(out),
                             "--annotator", "tester", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=open(log, "a"), text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("alignzoo label: http"):
                return proc, line.split(": ", 1)[1].strip()
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"the label server did not start: {log.read_text()[-2000:]}")


def _judge(page, count: int, chosen: list[tuple[str, str]], *, click_every: int) -> None:
    """Judge ``count`` comparisons, picking the positive completion by key (or by a click every ``click_every``)."""
    for n in range(count):
        page.wait_for("document.body.dataset.ready === '1' && document.body.dataset.item !== ''")
        item = page.evaluate("document.body.dataset.item")
        judged = int(page.evaluate("document.body.dataset.judged"))
        texts = page.evaluate("Array.from(document.querySelectorAll('.completion .text'), e => e.textContent)")
        assert len(texts) == 2
        if HTML_TEXTS & set(texts):  # model output with HTML in it is shown as text, and nothing of it runs
            assert page.evaluate("document.querySelectorAll('#completions script, #completions img').length") == 0
            assert page.evaluate("typeof window.__pwned") == "undefined"
        win = 0 if texts[0] in GOOD else 1
        assert texts[win] in GOOD and texts[1 - win] in BAD
        if n % click_every == click_every - 1:
            page.click(f".completion[data-index='{win}']")
        else:
            page.press(str(win + 1))
        page.wait_for(f"document.body.dataset.judged === '{judged + 1}' && document.body.dataset.ready === '1'")
        chosen.append((item, texts[win]))


def _post(url: str, body: dict, headers: dict) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_label_page_in_chromium_then_dpo_trains_on_the_labels(tmp_path, stage_cache):
    from alignzoo.label.cdp import Chromium
    from alignzoo.record import read_record
    from alignzoo.testing import run_algo

    src, out, log = tmp_path / "to_label.jsonl", tmp_path / "session", tmp_path / "server.log"
    _write_source(src)
    chosen: list[tuple[str, str]] = []
    proc, url = _start(src, out, log)
    try:
        items = [json.loads(line)["id"] for line in (out / "items.jsonl").read_text().splitlines()]
        assert len(items) == 12
        with Chromium(CHROMIUM) as browser:
            page = browser.open(url)
            page.wait_for("document.body.dataset.ready === '1'")
            assert page.evaluate("document.getElementById('progress-text').textContent") == "0 / 12"
            _judge(page, 5, chosen, click_every=3)
            # killed without warning after 5 judgments: none of them is lost
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            saved = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
            assert [(r["item"], r["chosen"]) for r in saved] == chosen
            # restarted, the page resumes at the sixth comparison
            proc, url = _start(src, out, log)
            page.goto(url)
            page.wait_for("document.body.dataset.ready === '1'")
            assert page.evaluate("document.body.dataset.judged") == "5"
            assert page.evaluate("document.body.dataset.item") == items[5]
            assert page.evaluate("document.getElementById('progress-text').textContent") == "5 / 12"
            _judge(page, 5, chosen, click_every=2)
            assert page.evaluate("document.getElementById('progress-text').textContent") == "10 / 12"
        api = url.split("?")[0] + "api/judge"
        body = {"item": items[10], "annotator": "tester", "judgment": "pick", "ranking": [0, 1]}
        assert _post(api, body, {}) == 403  # no CSRF token
        assert _post(api, body, {"X-CSRF-Token": "guessed"}) == 403
    finally:
        proc.kill()
        proc.wait(10)
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert len(rows) == 10
    assert [(r["item"], r["chosen"]) for r in rows] == chosen
    assert [r["item"] for r in rows] == items[:10]
    assert all(r["annotator"] == "tester" and r["judgment"] == "pick" for r in rows)
    assert all(r["chosen"] in GOOD and r["rejected"] in BAD for r in rows)
    assert {r["rejected"] for r in rows} >= HTML_TEXTS  # the HTML completions were judged, as text
    assert all(r["seconds"] > 0 and r["source"]["kind"] == "file" for r in rows)

    # DPO trains on the human labels through the feedback stage (labeler=human), and writes an ok record
    record = run_algo("dpo", tmp_path / "dpo", stage_cache, ["labeler=human", f"labeler.path={out}", "train.steps=3",
                                                             "train.batch_size=8", "eval.num_prompts=8"])
    assert record.status == "ok", record.error
    assert read_record(tmp_path / "dpo").status == "ok"
    note = next(n for n in record.notes if "human pairs" in n)
    assert "feedback: 10 human pairs" in note and "0 ties" in note


def test_ranking_three_ties_undo_and_a_written_response_by_keyboard(tmp_path):
    from alignzoo.label.cdp import Chromium

    src, out, log = tmp_path / "three.jsonl", tmp_path / "session", tmp_path / "server.log"
    rows = [{"prompt": f"prompt {i}", "completions": [f"first {i}", f"second {i}", f"third {i}"]} for i in range(4)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc, url = _start(src, out, log)
    try:
        with Chromium(CHROMIUM) as browser:
            page = browser.open(url)
            steps = [["RATE", "3", "1"], ["t"], ["1", "Backspace", "2", "3"], ["e", "TYPE", "Escape", "2", "1"]]
            for n, keys in enumerate(steps):
                page.wait_for(f"document.body.dataset.ready === '1' && document.body.dataset.judged === '{n}'")
                for key in keys:
                    if key == "RATE":  # the optional 1-5 rating of the third completion
                        page.evaluate("document.querySelectorAll('.completion .rating')[2].value = '4'")
                    elif key == "TYPE":
                        page.send("Input.insertText", {"text": "a better one"})
                    else:
                        page.press(key)
            page.wait_for("document.body.dataset.judged === '4'")
            assert page.evaluate("document.getElementById('done').hidden") is False
    finally:
        proc.kill()
        proc.wait(10)
    saved = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert [(r["judgment"], r["ranking"]) for r in saved] == [("rank", [2, 0, 1]), ("tie", []), ("rank", [1, 2, 0]),
                                                                ("rank", [1, 0, 2])]
    assert (saved[1]["chosen"], saved[1]["rejected"]) == ("", "")
    assert (saved[0]["chosen"], saved[0]["rejected"]) == ("third 0", "second 0")
    assert saved[0]["ratings"] == [0, 0, 4] and saved[2]["ratings"] == [0, 0, 0]
    # "e" opened the box with nothing ranked yet; the typed text is saved as the demonstration
    assert saved[3]["demonstration"] == "a better one" and saved[0]["demonstration"] == ""
