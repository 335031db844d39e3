"""The openai grader against a scripted local endpoint (retries, backoff, auth stop, the verdict cache,
resume, concurrency, no key on disk) and the frozen local judge of grader=judge."""

import threading
import time
from collections import Counter
from email.utils import formatdate

import pytest
from fake_judge import judge_fixtures

from seal.eval.graders import (
    GradeItem,
    GraderAuthError,
    GraderConfig,
    GraderError,
    JudgeGrader,
    OpenAIGrader,
    make_grader,
    retry_after_s,
)
from seal.eval.judge_cache import FILE_NAME, JudgeCache, Verdict, verdict_key
from seal.infra.config import ConfigError

KEY = "sk-SEAL-judge-test-7f3a9c21d4e8b6"
ENV = "SEAL_TEST_JUDGE_KEY"

endpoint, cfg = judge_fixtures(KEY, ENV, model="judge-a", timeout_s=5.0, max_retries=3, backoff_s=0.01,
                               backoff_max_s=0.05, concurrency=4)


def grader(cfg: GraderConfig, **changes) -> tuple[OpenAIGrader, list[float]]:
    """A grader whose retry waits are recorded instead of slept."""
    from dataclasses import replace

    waits: list[float] = []
    g = OpenAIGrader(replace(cfg, **changes), sleep=waits.append)
    return g, waits


def item(i: int, right: bool = True) -> GradeItem:
    return GradeItem(f"Q{i}: who built lighthouse {i}?", f"Builder {i}", f"It was Builder {i}." if right else "Nobody.")


# ---------------------------------------------------------------------------------------------
# retries
# ---------------------------------------------------------------------------------------------


def test_429_waits_at_least_retry_after_then_answers(endpoint, cfg):
    it = item(0)
    endpoint.script[it.question] = ["429"]
    g, waits = grader(cfg)
    assert g.grade([it])[0].correct is True
    assert endpoint.asked[it.question] == 2
    assert len(waits) == 1 and waits[0] >= 1.0  # the exponential wait alone would be ~0.01 s


def test_hang_times_out_and_is_retried(endpoint, cfg):
    it = item(0, right=False)
    endpoint.script[it.question] = ["hang"]
    g, waits = grader(cfg, timeout_s=0.5)
    assert g.grade([it])[0].correct is False  # the retry's rule verdict, not the late "yes"
    assert endpoint.asked[it.question] == 2 and len(waits) == 1
    assert g.stats["requests"] == 2


@pytest.mark.parametrize("broken", ["malformed", "nochoices", "empty"])
def test_broken_reply_is_retried(endpoint, cfg, broken):
    items = [item(0), item(1, right=False)]
    for it in items:
        endpoint.script[it.question] = [broken, broken]
    g, waits = grader(cfg)
    assert [gr.correct for gr in g.grade(items)] == [True, False]
    assert all(endpoint.asked[it.question] == 3 for it in items) and len(waits) == 4


def test_backoff_doubles_up_to_the_cap_then_gives_up(endpoint, cfg):
    it = item(0)
    endpoint.default = "500"
    g, waits = grader(cfg, max_retries=4, backoff_s=0.01, backoff_max_s=0.03)
    with pytest.raises(GraderError, match="failed after 5 tries") as e:
        g.grade([it])
    assert not isinstance(e.value, GraderAuthError)
    assert endpoint.asked[it.question] == 5 and len(waits) == 4
    assert 0.01 <= waits[0] <= 0.012 and 0.02 <= waits[1] <= 0.024 and waits[2:] == [0.03, 0.03]
    assert cfg.base_url in str(e.value) and "HTTP 500" in str(e.value) and KEY not in str(e.value)


@pytest.mark.parametrize("status", ["401", "403"])
def test_auth_failure_stops_at_once_without_leaking_the_key(endpoint, cfg, status):
    it = item(0)
    endpoint.default = status
    g, waits = grader(cfg)
    with pytest.raises(GraderAuthError) as e:
        g.grade([it])
    assert endpoint.asked[it.question] == 1 and waits == []
    msg = str(e.value)
    assert ENV in msg and cfg.base_url in msg and status in msg and KEY not in msg
    assert endpoint.auth_headers == {f"Bearer {KEY}"}  # the key did reach the endpoint, and only there


def test_other_client_errors_stop_without_retrying(endpoint, cfg):
    it = item(0)
    endpoint.default = "404"  # e.g. a model name the endpoint does not serve
    g, waits = grader(cfg)
    with pytest.raises(GraderError, match="HTTP 404") as e:
        g.grade([it])
    assert not isinstance(e.value, GraderAuthError) and KEY not in str(e.value)
    assert endpoint.asked[it.question] == 1 and waits == []


def test_retry_after_header_forms():
    assert retry_after_s("3") == 3.0 and retry_after_s("0.5") == 0.5 and retry_after_s("-4") == 0.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    later = retry_after_s(formatdate(time.time() + 30, usegmt=True))
    assert later is not None and 25 <= later <= 31
    assert retry_after_s(formatdate(time.time() - 30, usegmt=True)) == 0.0


# ---------------------------------------------------------------------------------------------
# the verdict cache: nothing lost, resume, repeats, keys
# ---------------------------------------------------------------------------------------------


def test_failed_run_keeps_its_verdicts_and_a_resumed_run_asks_only_the_rest(endpoint, cfg, tmp_path):
    items = [item(i, right=i % 2 == 0) for i in range(8)]
    endpoint.fail_after = 3
    g, _ = grader(cfg, concurrency=2)
    with pytest.raises(GraderAuthError):
        g.grade(items)
    first = set(endpoint.answered)
    assert len(first) == 3  # the endpoint answered three, then refused the key
    saved = JudgeCache(tmp_path / "judge")
    assert len(saved) == 3 and saved.skipped_lines == 0

    endpoint.fail_after, endpoint.asked = None, Counter()
    resumed, _ = grader(cfg, concurrency=2)
    grades = resumed.grade(items)
    assert set(endpoint.asked) == {it.question for it in items} - first
    assert all(n == 1 for n in endpoint.asked.values())
    assert [gr.correct for gr in grades] == [i % 2 == 0 for i in range(8)]
    assert resumed.stats["hits"] == 3 and resumed.stats["misses"] == 5


def test_persistent_failure_keeps_the_other_verdicts(endpoint, cfg, tmp_path):
    items = [item(i) for i in range(4)]
    endpoint.script[items[2].question] = ["500"] * 10
    g, _ = grader(cfg, concurrency=1, max_retries=1)
    with pytest.raises(GraderError, match="Q2"):
        g.grade(items)
    cached = JudgeCache(tmp_path / "judge")
    keys = [verdict_key("judge-a", cfg.prompt, it.question, it.gold, it.answer) for it in items]
    assert cached.get(keys[0]) and cached.get(keys[1]) and cached.get(keys[2]) is None
    missing = {it.question for it, k in zip(items, keys) if cached.get(k) is None}
    endpoint.asked = Counter()
    endpoint.script.clear()
    assert all(gr.correct for gr in grader(cfg)[0].grade(items))
    assert set(endpoint.asked) == missing and items[2].question in missing


def test_repeated_answer_is_asked_once_and_model_or_prompt_change_is_a_miss(endpoint, cfg):
    a, b = item(0), item(1, right=False)
    g, _ = grader(cfg)
    assert [gr.correct for gr in g.grade([a, a, b, a])] == [True, True, False, True]
    assert g.grade([a, b])[1].correct is False
    assert endpoint.asked == Counter({a.question: 1, b.question: 1})
    assert g.stats == Counter(hits=4, misses=2, requests=2)

    again, _ = grader(cfg)  # a new grader on the same cache folder
    again.grade([a, b])
    assert again.stats["requests"] == 0 and again.stats["hits"] == 2

    other_model, _ = grader(cfg, model="judge-b")
    other_model.grade([a])
    other_prompt, _ = grader(cfg, prompt="Q: {question}\nGold answer: {gold}\nStudent answer: {answer}\n"
                             "Question: {question}\nSame meaning? yes or no.")
    other_prompt.grade([a])
    assert endpoint.asked[a.question] == 3
    assert other_model.stats["misses"] == other_prompt.stats["misses"] == 1


def test_empty_answers_are_wrong_without_a_request(endpoint, cfg):
    g, _ = grader(cfg)
    grades = g.grade([GradeItem("Q9: x?", "y", ""), GradeItem("Q9: x?", "y", "  \n")])
    assert [gr.correct for gr in grades] == [False, False] and sum(endpoint.asked.values()) == 0


def test_cache_disabled_asks_again_in_a_new_grader(endpoint, cfg, tmp_path):
    a = item(0)
    for _ in range(2):
        grader(cfg, cache=False)[0].grade([a, a])
    assert endpoint.asked[a.question] == 2
    assert not (tmp_path / "judge").exists() and not (tmp_path / "seal_cache").exists()


def test_default_cache_folder_is_under_seal_cache(endpoint, cfg, tmp_path):
    grader(cfg, cache_dir=None)[0].grade([item(0)])
    assert (tmp_path / "seal_cache" / "judge" / FILE_NAME).is_file()


def test_torn_last_line_is_skipped_and_later_records_survive(tmp_path):
    cache = JudgeCache(tmp_path)
    cache.put("k1", Verdict(True, "yes"))
    with open(tmp_path / FILE_NAME, "a") as f:
        f.write('{"key": "k2", "correct": fal')  # a process killed mid-write
    reopened = JudgeCache(tmp_path)
    assert reopened.skipped_lines == 1 and reopened.get("k1") == Verdict(True, "yes") and reopened.get("k2") is None
    reopened.put("k3", Verdict(False, "No."))
    last = JudgeCache(tmp_path)
    assert last.get("k3") == Verdict(False, "No.") and len(last) == 2 and last.skipped_lines == 1


def test_cache_is_thread_safe(tmp_path):
    cache = JudgeCache(tmp_path)
    threads = [threading.Thread(target=lambda t=t: [cache.put(f"{t}-{i}", Verdict(i % 2 == 0, "yes"))
                                                     for i in range(25)]) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    again = JudgeCache(tmp_path)
    assert len(again) == 100 and again.skipped_lines == 0


# ---------------------------------------------------------------------------------------------
# concurrency, and the key
# ---------------------------------------------------------------------------------------------


def test_requests_overlap_and_results_keep_input_order(endpoint, cfg):
    items = [item(i, right=i % 3 != 0) for i in range(8)]
    endpoint.hold = 4  # the first answers wait until four requests are in flight at once
    g, _ = grader(cfg, concurrency=4)
    grades = g.grade(items)
    assert endpoint.max_in_flight == 4
    assert [gr.correct for gr in grades] == [i % 3 != 0 for i in range(8)]


def test_the_key_is_written_nowhere(endpoint, cfg, tmp_path):
    items = [item(i, right=i % 2 == 0) for i in range(4)]
    endpoint.script[items[1].question] = ["429", "malformed"]
    g, _ = grader(cfg)
    g.grade(items)
    grader(cfg, cache_dir=None)[0].grade(items)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert (tmp_path / "judge" / FILE_NAME) in files and (tmp_path / "seal_cache" / "judge" / FILE_NAME) in files
    assert all(KEY.encode() not in p.read_bytes() for p in files)
    assert KEY not in repr(g.cfg) and KEY not in repr(g.stats)


# ---------------------------------------------------------------------------------------------
# grader=judge: a frozen named model, never the policy
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, "", "policy", "Policy"])
def test_judge_refuses_the_policy(name):
    with pytest.raises(ConfigError, match="must name a frozen judge model") as e:
        make_grader(GraderConfig(kind="judge", judge_model=name), model=object(), tokenizer=object())
    assert isinstance(e.value, ValueError)


def test_judge_loads_the_named_model_once_and_never_the_policy(tiny):
    policy, tok = tiny
    a = make_grader(GraderConfig(kind="judge", judge_model="tiny-random"), policy, tok)
    b = make_grader(GraderConfig(kind="judge", judge_model="tiny-random"), policy, tok)
    assert isinstance(a, JudgeGrader) and isinstance(b, JudgeGrader)
    assert a.model is b.model and a.model is not policy
    assert not any(p.requires_grad for p in a.model.parameters())
    grades = a.grade([GradeItem("Q", "gold", "gold"), GradeItem("Q", "gold", "")])
    assert len(grades) == 2 and grades[1].correct is False
