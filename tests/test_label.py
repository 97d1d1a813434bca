"""The labeling app without a browser: the session store, agreement oracles, the server's guards (CSRF, host,
access token), the labeler=human feedback stage, and the labels as a `datasets` / task=hf_preferences file."""

import json
import logging
import math
from types import SimpleNamespace

import pytest

from alignzoo.errors import DataError
from alignzoo.label.agreement import (bradley_terry, compare, gold_reference, inter_annotator, simulated_reference,
                                      summarize)
from alignzoo.label.items import items_from_file
from alignzoo.label.limits import annotator_problem, body_problem, origin_problem, token_problem
from alignzoo.label.schema import RequestError, check_fields, validate_judgment
from alignzoo.label.store import LabelSession, read_labels
from alignzoo.stages.feedback import Annotator


def _source(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _session(tmp_path, n=6, k=2, gold=True):
    rows = [{"prompt": f"p{i}", "completions": [f"c{i}-{j}" for j in range(k)],
             **({"gold": [float(j == i % k) for j in range(k)]} if gold else {})} for i in range(n)]
    items, source = items_from_file(_source(tmp_path / "src.jsonl", rows))
    return LabelSession.open(tmp_path / "s", items, source)


def _judge(session, annotator, item, ranking=(0, 1), judgment="pick"):
    return session.record(annotator, item["id"], validate_judgment(
        {"judgment": judgment, "ranking": list(ranking), "seconds": 1.0}, len(item["completions"])))


# -- store ------------------------------------------------------------------------------------------------------
def test_a_torn_last_line_is_dropped_with_a_warning_and_labeling_resumes(tmp_path, caplog):
    s = _session(tmp_path)
    for it in s.items[:3]:
        _judge(s, "ann", it)
    path = s.labels_path
    good = path.read_bytes()
    path.write_bytes(good + b'{"item": "' + s.items[3]["id"].encode() + b'", "annot')  # killed mid-write
    with caplog.at_level(logging.WARNING, logger="alignzoo"):
        again = LabelSession.open(tmp_path / "s")
    assert "cut off mid-write" in caplog.text
    assert path.read_bytes() == good  # truncated to the last complete judgment
    assert len(again.judgments) == 3 and again.next_item("ann") == s.items[3]
    assert again.next_item("someone_else") == s.items[0]  # each annotator has their own queue
    _judge(again, "ann", s.items[3], (1, 0))
    rows = read_labels(tmp_path / "s")
    assert [r["item"] for r in rows] == [it["id"] for it in s.items[:4]] and rows[-1]["chosen"] == "c3-1"


def test_a_corrupt_line_before_the_last_is_an_error_naming_the_line(tmp_path):
    s = _session(tmp_path)
    _judge(s, "ann", s.items[0])
    s.labels_path.write_text("not json\n" + s.labels_path.read_text())
    with pytest.raises(DataError, match=r"labels.jsonl: line 1 is not valid JSON.*fix or delete that line"):
        read_labels(tmp_path / "s")


def test_a_session_folder_refuses_other_comparisons(tmp_path):
    _session(tmp_path)
    other = _source(tmp_path / "other.jsonl", [{"prompt": "x", "chosen": "a", "rejected": "b"}])
    items, source = items_from_file(other)
    with pytest.raises(DataError, match="already holds a labeling session with other comparisons"):
        LabelSession.open(tmp_path / "s", items, source)


def test_judgments_are_validated():
    assert validate_judgment({"judgment": "pick", "ranking": [2, 0, 1]}, 3)["judgment"] == "rank"
    assert validate_judgment({"judgment": "tie", "ranking": [1, 0]}, 2)["ranking"] == []
    assert validate_judgment({"judgment": "pick", "ranking": [0, 1], "seconds": 1e9}, 2)["seconds"] == 86400.0
    for bad, field, msg in [({"judgment": "meh"}, "judgment", "judgment: must be one of pick, rank, tie, both_bad"),
                            ({"judgment": "pick", "ranking": [0, 0]}, "ranking", "permutation of 0..1"),
                            ({"judgment": "pick", "ranking": [0, "1"]}, "ranking", "permutation of 0..1"),
                            ({"judgment": "pick", "ranking": [0, 1], "ratings": [9, 0]}, "ratings",
                             "ratings: must be 2 integers in 0..5"),
                            ({"judgment": "pick", "ranking": [0, 1], "ratings": [1]}, "ratings", "must be 2 integers"),
                            ({"judgment": "pick", "ranking": [0, 1], "seconds": -1}, "seconds",
                             "seconds: must be a number >= 0"),
                            ({"judgment": "pick", "ranking": [0, 1], "seconds": True}, "seconds", "must be a number")]:
        with pytest.raises(RequestError, match=msg) as e:
            validate_judgment(bad, 2)
        assert e.value.field == field


@pytest.mark.parametrize("payload, field, says", [
    ([1, 2], None, "the body must be a JSON object with the fields item, judgment"),
    ({"judgment": "tie"}, "item", "item: is required"),
    ({"item": "x", "judgment": "tie", "admin": True}, "admin", "admin: unknown field; a judgment has only item"),
    ({"item": 5, "judgment": "tie"}, "item", "item: must be text (a JSON string) (got 5)"),
    ({"item": "x" * 65, "judgment": "tie"}, "item", "item: is 65 characters long; at most 64"),
    ({"item": "x", "judgment": "tie", "ranking": "0,1"}, "ranking", "ranking: must be a list of integers (got '0,1')"),
    ({"item": "x", "judgment": "tie", "ratings": [1.5, 2]}, "ratings", "ratings: must be a list of integers"),
    ({"item": "x", "judgment": "tie", "ratings": None}, "ratings", "ratings: must be a list of integers (got null)"),
    ({"item": "x", "judgment": "tie", "seconds": "2"}, "seconds", "seconds: must be a finite number"),
    ({"item": "x", "judgment": "tie", "seconds": float("nan")}, "seconds", "seconds: must be a finite number"),
    ({"item": "x", "judgment": "tie", "demonstration": "d" * 20001}, "demonstration", "is 20001 characters long"),
    ({"item": "x", "judgment": "tie", "demonstration": "\ud800"}, "demonstration", "unpaired UTF-16 surrogate"),
    ({"item": "x", "judgment": "tie", "annotator": ["a"]}, "annotator", "annotator: must be text"),
])
def test_write_requests_are_checked_field_by_field(payload, field, says):
    with pytest.raises(RequestError) as e:
        check_fields(payload)
    assert e.value.field == field and says in str(e.value)
    assert len(str(e.value)) < 200  # a long bad value is not echoed back


def test_annotator_ids_tokens_and_body_limits():
    assert annotator_problem("alice.b@lab-1") is None
    assert "control character (U+000A)" in annotator_problem("bob\n")  # "$" of a regex would let this one pass
    assert "control character (U+001B)" in annotator_problem("\x1b[31mred")
    assert "contains ' '" in annotator_problem("bob smith")
    assert "is 65 characters long" in annotator_problem("a" * 65) and "is empty" in annotator_problem("")
    assert token_problem("a" * 16) is None and token_problem("Ab3_-.~" * 3) is None
    assert "is 6 characters long; an access token needs at least 16" in token_problem("tok123")
    assert "only letters, digits and -._~" in token_problem("p@ss word with spaces")
    assert body_problem("POST", {"content-length": "65536"}, 65536) is None
    assert body_problem("GET", {}, 65536) is None
    assert body_problem("POST", {"content-length": "65537"}, 65536)[0] == 413
    assert body_problem("POST", {"content-length": "9" * 40}, 65536)[0] == 413
    assert body_problem("POST", {}, 65536)[0] == 411
    assert body_problem("POST", {"transfer-encoding": "chunked"}, 65536)[0] == 411
    assert body_problem("POST", {"content-length": "-1"}, 65536)[0] == 400
    host = {"host": "127.0.0.1:8765"}
    assert origin_problem("POST", {**host, "origin": "http://127.0.0.1:8765"}) is None
    assert origin_problem("POST", host) is None  # no Origin: not a browser; the CSRF token still decides
    assert origin_problem("GET", {**host, "origin": "http://evil.example"}) is None  # reads are not writes
    for other in ("http://evil.example", "http://127.0.0.1:9999", "null", "http://localhost:8765", "http://x:bad",
                  "ftp://127.0.0.1:8765"):
        assert "a write from another origin" in origin_problem("POST", {**host, "origin": other}), other
    # behind a TLS proxy: https://labels.example reaches the server as Host: labels.example
    assert origin_problem("POST", {"host": "labels.example", "origin": "https://labels.example"}) is None


def test_chosen_and_rejected_files_are_shown_in_a_random_order(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(40)]
    items, _ = items_from_file(_source(tmp_path / "src.jsonl", rows))
    first = [it["completions"][0].startswith("good") for it in items]
    assert 10 < sum(first) < 30
    assert all(sorted(it["completions"]) == sorted([r["chosen"], r["rejected"]]) for it, r in zip(items, rows))


# -- agreement ----------------------------------------------------------------------------------------------------
def _row(item, annotator, ranking, gold=None, comps=("a", "b"), judgment="pick", t="1"):
    return {"item": item, "annotator": annotator, "ranking": list(ranking), "judgment": judgment, "gold": gold,
            "completions": list(comps), "timestamp": t}


def test_agreement_with_gold_and_between_annotators_match_hand_counts():
    rows = [_row("i1", "ann", [0, 1], [1.0, 0.0]), _row("i2", "ann", [0, 1], [0.0, 1.0]),
            _row("i3", "ann", [1, 0], [0.5, 0.5]), _row("i4", "ann", [], [1.0, 0.0], judgment="tie"),
            _row("i1", "bob", [0, 1], [1.0, 0.0], t="2"), _row("i2", "bob", [1, 0], [0.0, 1.0], t="2"),
            _row("i3", "bob", [1, 0], [0.5, 0.5], t="2")]
    s = summarize(rows)
    assert s["pairs"] == 6 and s["ties"] == 1 and s["judgments"] == 7
    # gold: i1 agrees, i2 disagrees, i3 has equal gold (no opinion) for ann; bob agrees on i1 and i2
    assert s["annotators"]["ann"]["vs"]["gold"] == {"agreement": 0.5, "pairs": 2}
    assert s["annotators"]["bob"]["vs"]["gold"] == {"agreement": 1.0, "pairs": 2}
    assert s["vs"]["gold"] == {"agreement": 0.75, "pairs": 4}
    inter = inter_annotator(rows)
    assert inter["pairs"] == 3 and inter["agreement"] == pytest.approx(2 / 3)
    assert inter["by_pair"] == {"ann / bob": {"agreement": pytest.approx(2 / 3), "pairs": 3}}
    assert math.isnan(inter_annotator(rows[:4])["agreement"])  # one annotator: NaN


def test_simulated_reference_is_the_bradley_terry_probability_with_flips():
    assert bradley_terry(0.2, 0.1) == pytest.approx(1 / (1 + math.exp(-2)))
    assert (bradley_terry(0.1, 0), bradley_terry(-0.1, 0), bradley_terry(0.0, 0)) == (1.0, 0.0, 0.5)
    pool = [Annotator("a", 0.1, 0.0, 0.0), Annotator("b", 0.2, 0.25, 0.0)]
    row = _row("i", "h", [1, 0], [0.1, 0.4])  # the person chose the higher-gold completion (delta 0.3)
    pa, pb = bradley_terry(0.3, 0.1), bradley_terry(0.3, 0.2)
    expected = (pa + 0.75 * pb + 0.25 * (1 - pb)) / 2
    assert simulated_reference(pool)(row) == pytest.approx(expected)
    verbose = [Annotator("v", 0.0, 0.0, 1.0)]  # +1 utility per 10 words: prefers the 12-word completion
    assert simulated_reference(verbose)(_row("i", "h", [0, 1], [0.5, 0.4], comps=("x", " ".join(["w"] * 12)))) == 0.0
    # a critic plugs in as one more reference
    out = compare([row], {"gold": gold_reference, "critic": lambda r: 1.0})
    assert out == {"gold": {"agreement": 1.0, "pairs": 1}, "critic": {"agreement": 1.0, "pairs": 1}}


# -- server -------------------------------------------------------------------------------------------------------
@pytest.fixture
def client(tmp_path):
    from starlette.testclient import TestClient

    from alignzoo.label.server import create_app

    s = _session(tmp_path, n=3)
    return TestClient(create_app(s, annotator="ann", csrf_token="secret"), base_url="http://127.0.0.1"), s


def test_writes_need_the_session_csrf_token(client):
    c, s = client
    item = c.get("/api/state").json()["item"]
    body = {"item": item["id"], "judgment": "pick", "ranking": [1, 0], "seconds": 2.5}
    assert c.post("/api/judge", json=body).status_code == 403
    r = c.post("/api/judge", json=body, headers={"X-CSRF-Token": "wrong"})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    assert not s.labels_path.exists()
    r = c.post("/api/judge", content=json.dumps(body), headers={"X-CSRF-Token": "secret", "Content-Type": "text/plain"})
    assert r.status_code == 415
    r = c.post("/api/judge", json=body, headers={"X-CSRF-Token": "secret"})
    assert r.status_code == 200 and r.json()["judged"] == 1 and r.json()["item"]["id"] == s.items[1]["id"]
    saved = read_labels(s.folder)
    assert len(saved) == 1 and saved[0]["chosen"] == item["completions"][1] and saved[0]["seconds"] == 2.5
    assert "gold" not in c.get("/api/state").json()["item"]  # the annotator never sees the gold scores


def test_ties_bad_requests_and_progress_of_several_annotators(client):
    c, s = client
    h = {"X-CSRF-Token": "secret"}
    first = s.items[0]["id"]
    r = c.post("/api/judge", json={"item": first, "judgment": "tie"}, headers=h)
    assert r.status_code == 200
    row = read_labels(s.folder)[0]
    assert (row["judgment"], row["chosen"], row["rejected"], row["ranking"]) == ("tie", "", "", [])
    assert c.post("/api/judge", json={"item": "nope", "judgment": "tie"}, headers=h).status_code == 400
    r = c.post("/api/judge", json={"item": first, "judgment": "pick", "ranking": [0], "annotator": "bob"}, headers=h)
    assert r.status_code == 400 and "permutation" in r.json()["error"]
    assert c.get("/api/state?annotator=<img>").status_code == 400
    for who, ranking in (("ann", [0, 1]), ("bob", [0, 1]), ("bob", [1, 0])):
        item = c.get(f"/api/state?annotator={who}").json()["item"]
        c.post("/api/judge", json={"item": item["id"], "judgment": "pick", "ranking": ranking, "annotator": who},
               headers=h)
    state = c.get("/api/state?annotator=bob").json()
    assert state["judged"] == 2 and state["annotators"] == [{"name": "ann", "judged": 2}, {"name": "bob", "judged": 2}]
    # both judged items 0 and 1; item 0 was a tie for ann (no pair); on item 1 ann chose 0, bob 1: disagreement
    assert state["agreement"] == {"inter_annotator": 0.0, "pairs": 1, "items": 1}


def test_page_headers_host_check_and_access_token(tmp_path):
    from starlette.testclient import TestClient

    from alignzoo.label.server import create_app

    s = _session(tmp_path, n=2)
    c = TestClient(create_app(s, annotator="ann", csrf_token="secret"), base_url="http://127.0.0.1")
    page = c.get("/")
    assert page.status_code == 200 and 'content="secret"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]  # no inline script can run
    assert c.get("/static/label.js").status_code == 200
    assert "textContent" in c.get("/static/label.js").text and "innerHTML" not in c.get("/static/label.js").text
    # a page on another site that resolves its name to 127.0.0.1 (DNS rebinding) gets nothing
    assert TestClient(c.app, base_url="http://evil.example").get("/api/state").status_code == 403
    t = TestClient(create_app(s, annotator="ann", access_token="tok123", loopback_only=False),
                   base_url="http://labels.example")
    assert t.get("/").status_code == 401 and t.get("/api/state").status_code == 401
    r = t.get("/?token=tok123&annotator=ann", follow_redirects=False)
    assert r.status_code == 303 and "token" not in r.headers["location"]
    assert t.get("/api/state").status_code == 200  # the cookie now carries the token
    fresh = TestClient(t.app, base_url="http://labels.example")
    assert fresh.get("/api/state", headers={"Authorization": "Bearer tok123"}).status_code == 200
    fresh.cookies.set("alignzoo_label_token", "stale")  # a stale cookie does not hide a valid token
    assert fresh.get("/api/state", headers={"Authorization": "Bearer tok123"}).status_code == 200
    assert fresh.get("/api/state", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_cli_refuses_a_public_address_without_a_token_and_prints_reports(tmp_path, capsys):
    from alignzoo.cli import main

    s = _session(tmp_path, n=2)
    src = tmp_path / "src.jsonl"
    with pytest.raises(SystemExit) as e:
        main(["label", "--from", str(src), "--out", str(s.folder), "--host", "0.0.0.0"])
    assert e.value.code == 2 and "--access-token" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["label", "--from", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "missing.jsonl: no such file" in capsys.readouterr().err
    _judge(s, "ann", s.items[0], (0, 1))  # gold [1, 0]: agrees with gold
    _judge(s, "ann", s.items[1], (0, 1))  # gold [0, 1]: disagrees
    with pytest.raises(SystemExit) as e:
        main(["label", "--report", "--out", str(s.folder)])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert "| ann | 2 | 2 | 0 | 0 | 0.500 (2) |" in out and "agrees with simulated annotators" in out


# -- the feedback stage (labeler=human) and the labels as a dataset -------------------------------------------------
def _fake_task(tmp_path):
    """What the human labeler's stage reads of the pipeline: its context, the task's gold scorer, the data key."""
    from alignzoo.pipeline.labelers import SimulatedLabelerConfig
    from alignzoo.tasks.sentiment import GoldReward

    notes = []
    ctx = SimpleNamespace(cache_dir=tmp_path / "cache", note=lambda m: None, record=SimpleNamespace(notes=notes))
    return SimpleNamespace(gold=GoldReward(frozenset("great awful film was".split())), labeler=SimulatedLabelerConfig(),
                           ctx=ctx, data_key={})


def _pool(task):
    from alignzoo.pipeline.labelers import annotators

    return annotators(task.labeler, seed=0)


def test_human_feedback_needs_usable_labels(tmp_path):
    from alignzoo.stages.human_feedback import human_feedback

    task = _fake_task(tmp_path)
    with pytest.raises(DataError, match=r"nowhere does not exist; give the folder written by `alignzoo label"):
        human_feedback(task, None, str(tmp_path / "nowhere"), pool=_pool(task))
    s = _session(tmp_path, n=2)
    _judge(s, "ann", s.items[0], judgment="tie")
    _judge(s, "ann", s.items[1], judgment="both_bad")
    with pytest.raises(DataError, match=r"holds no usable judgments \(2 judgment\(s\), 2 of them ties or both bad\)"):
        human_feedback(task, None, str(s.folder), pool=_pool(task))


def test_human_feedback_builds_the_simulated_stage_columns_with_gold_and_agreement(tmp_path):
    import datasets

    from alignzoo.stages.feedback import COLUMNS
    from alignzoo.stages.human_feedback import human_feedback

    rows = [{"prompt": "the film was", "completions": [" great", " awful"]},
            {"prompt": "the film was", "completions": [" awful great", " great great"]},
            {"prompt": "it was", "completions": [" great", " great"]}]
    items, source = items_from_file(_source(tmp_path / "src.jsonl", rows))
    s = LabelSession.open(tmp_path / "s", items, source)
    _judge(s, "ann", s.items[0], (0, 1))
    _judge(s, "ann", s.items[1], (0, 1))
    _judge(s, "ann", s.items[2], judgment="tie")
    task = _fake_task(tmp_path)
    result = human_feedback(task, None, str(s.folder), pool=_pool(task))
    data = datasets.load_from_disk(str(result.path / "data"))
    assert data.column_names == list(COLUMNS) and len(data) == 2
    gold = task.gold.score([], [" great", " awful", " awful great", " great great"], [True] * 4).tolist()
    assert data["gold"] == [pytest.approx(gold[:2]), pytest.approx(gold[2:])]
    assert data["chosen"] == [" great", " awful great"] and data["annotator"] == ["ann", "ann"]
    assert gold[0] > gold[1] and gold[2] < gold[3]  # the person agreed with gold once, then disagreed
    m = result.meta
    assert (m["pairs"], m["ties"], m["both_bad"], m["agreement_with_gold"]) == (2, 1, 0, 0.5)
    assert math.isnan(m["inter_annotator_agreement"])  # a single annotator
    t = task.labeler.annotator_temperature
    expected = (bradley_terry(gold[0] - gold[1], t) + bradley_terry(gold[2] - gold[3], t)) / 2
    assert m["agreement_with_simulated"] == pytest.approx(expected)
    assert "2 human pairs" in task.ctx.record.notes[-1]
    assert human_feedback(task, None, str(s.folder), pool=_pool(task)).reused  # cached by the labels' content hash
    _judge(s, "bob", s.items[0], (1, 0))
    again = human_feedback(task, None, str(s.folder / "labels.jsonl"), pool=_pool(task))
    assert not again.reused and again.meta["pairs"] == 3 and again.meta["inter_annotator_agreement"] == 0.0


def test_labels_load_with_datasets_and_train_dpo_as_task_hf_preferences(tmp_path):
    import datasets

    from alignzoo.testing import run_tiny

    rows = [{"prompt": f"the movie {i} was", "chosen": " great and lovely", "rejected": " awful and dull"}
            for i in range(12)]
    items, source = items_from_file(_source(tmp_path / "src.jsonl", rows))
    s = LabelSession.open(tmp_path / "s", items, source)
    for it in s.items[:10]:
        _judge(s, "ann", it, (it["completions"].index(" great and lovely"), it["completions"].index(" awful and dull")))
    _judge(s, "ann", s.items[10], judgment="both_bad")
    loaded = datasets.load_dataset("json", data_files=str(s.labels_path))["train"]
    assert len(loaded) == 11 and set(loaded["chosen"][:10]) == {" great and lovely"}
    record = run_tiny(["task=hf_preferences", f"task.path={s.labels_path}", "algo=dpo", "evaluator=[length]"],
                      tmp_path / "job")
    assert record.status == "ok", record.error


def test_items_sampled_from_the_sft_policy_carry_gold_and_provenance(tmp_path, stage_cache):
    from alignzoo.label.items import items_from_policy

    items, source = items_from_policy(["task=sentiment", "budget=smoke", f"run.cache_dir={stage_cache}"], k=3,
                                      limit=4, seed=0, out=tmp_path)
    assert len(items) == 4 and all(len(it["completions"]) == 3 and len(it["gold"]) == 3 for it in items)
    assert source["kind"] == "policy" and '"sft_stage"' in source["policy"] and "task=sentiment" in source["config"]
    again, _ = items_from_policy(["task=sentiment", "budget=smoke", f"run.cache_dir={stage_cache}"], k=3, limit=4,
                                 seed=0, out=tmp_path)
    assert [it["id"] for it in again] == [it["id"] for it in items]  # same seed, same comparisons: resumable
