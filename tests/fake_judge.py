"""A scripted OpenAI-compatible chat endpoint on 127.0.0.1 for the judge tests (`FakeJudge`)."""

import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from seal.eval.graders import GraderConfig

_LINE = {name: re.compile(rf"^{name}: (.*)$", re.MULTILINE)
         for name in ("Question", "Gold answer", "Student answer")}


class FakeJudge:
    """An OpenAI-compatible `POST /v1/chat/completions` on 127.0.0.1, scripted per question.

    `script[question]` is a list of actions used up one per request for that question; after it, `default`.
    Actions: "rule" (yes iff the gold text is in the student answer), "429" (with Retry-After: 1), "500",
    "hang" (no reply for 2 s), "malformed" (200 with a broken JSON body), "nochoices", "empty", "401", "403",
    "404".
    `fail_after=n` turns every request after the n-th rule answer into a 401. `hold=n` keeps each rule
    answer until n requests have been in flight at once (at most 2 s), so overlap is seen, not timed.
    `reply(body)`, when set, gives the text of a rule answer instead of the rule. `requests` records every
    request: its path, JSON body and headers (names in lower case).
    """

    def __init__(self):
        self.script: dict[str, list[str]] = {}
        self.default = "rule"
        self.fail_after: int | None = None
        self.hold = 0
        self.reply: Callable[[dict], str] | None = None
        self.requests: list[dict] = []
        self.asked: Counter[str] = Counter()  # requests per question
        self.answered: list[str] = []  # questions given a verdict
        self.auth_headers: set[str] = set()
        self.in_flight = self.max_in_flight = 0
        self._granted = 0  # rule answers handed out
        self._cv = threading.Condition()
        self._release = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with endpoint._cv:
                    endpoint.requests.append({"path": self.path, "body": body,
                                              "headers": {k.lower(): v for k, v in self.headers.items()}})
                    endpoint.in_flight += 1
                    endpoint.max_in_flight = max(endpoint.max_in_flight, endpoint.in_flight)
                    endpoint._cv.notify_all()
                try:
                    endpoint._serve(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout) before the reply
                finally:
                    with endpoint._cv:
                        endpoint.in_flight -= 1

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def _action(self, question: str) -> str:
        with self._cv:
            self.asked[question] += 1
            if self.fail_after is not None and self._granted >= self.fail_after:
                return "401"
            queue = self.script.get(question)
            action = queue.pop(0) if queue else self.default
            self._granted += action == "rule"
            return action

    def _serve(self, h: BaseHTTPRequestHandler, body: dict) -> None:
        self.auth_headers.add(h.headers.get("Authorization", ""))
        assert h.path == "/v1/chat/completions"
        prompt = body["messages"][-1]["content"]
        question, gold, answer = (_LINE[name].search(prompt).group(1) for name in _LINE)
        action = self._action(question)
        if action == "hang":
            self._release.wait(2.0)
            return self._send(h, 200, _completion("yes"))
        if action in ("401", "403", "404", "500"):
            return self._send(h, int(action), json.dumps({"error": {"message": "nope", "type": "x"}}))
        if action == "429":
            return self._send(h, 429, json.dumps({"error": {"message": "slow down"}}), {"Retry-After": "1"})
        if action == "malformed":
            return self._send(h, 200, '{"choices": [{"message": {"content": "ye')
        if action == "nochoices":
            return self._send(h, 200, json.dumps({"id": "x", "object": "chat.completion"}))
        if action == "empty":
            return self._send(h, 200, _completion(""))
        with self._cv:
            self._cv.wait_for(lambda: self.max_in_flight >= self.hold, timeout=2.0)
            self.answered.append(question)
        if self.reply is not None:
            return self._send(h, 200, _completion(self.reply(body)))
        self._send(h, 200, _completion("Yes." if gold.lower() in answer.lower() else "No."))

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, text: str, headers: dict | None = None) -> None:
        out = text.encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(out)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(out)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._release.set()  # a hanging handler returns at once
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def judge_fixtures(key: str, env: str, url_suffix: str = "", **fields):
    """Two fixtures for a module that tests the openai grader, bound there by name:
    `endpoint, cfg = judge_fixtures(KEY, ENV, model=...)`. The first is a running FakeJudge, checked to be
    shut down (its thread gone) after the test; the second an openai GraderConfig for it (base_url its url +
    `url_suffix`, plus `fields`) whose key `key` is in the environment variable `env`, with its verdict cache in
    tmp_path/judge and SEAL_CACHE in tmp_path/seal_cache."""

    @pytest.fixture
    def endpoint() -> Iterator[FakeJudge]:
        with FakeJudge() as ep:
            yield ep
        assert not ep.thread.is_alive()

    @pytest.fixture
    def cfg(endpoint, monkeypatch, tmp_path) -> GraderConfig:
        monkeypatch.setenv(env, key)
        monkeypatch.setenv("SEAL_CACHE", str(tmp_path / "seal_cache"))
        return GraderConfig(kind="openai", base_url=endpoint.url + url_suffix, api_key_env=env,
                            cache_dir=str(tmp_path / "judge"), **fields)

    return endpoint, cfg


def _completion(content: str) -> str:
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "judge",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": content}}]})
