"""Text work on content to learn, no model involved: spotting a plain-language learning request,
the probes a learning request is gated on (model-written Q/A pairs kept only when checkable, cloze
probes) and the "what do you know about <name>?" turns that carry content into the chat format.
The likelihood scoring of probes is `seal.eval.probes`."""

from __future__ import annotations

import re

from seal.eval.probes import Probe
from seal.models.loading import format_prompt

_REMEMBER = re.compile(r"^\s*(?:please\s+)?(?:remember|memori[sz]e|keep in mind|note|learn)\s+(?:that\s+)?(?P<c>.+)$",
                       re.IGNORECASE | re.DOTALL)


def remember_request(text: str) -> str | None:
    """The content of a plain-language learning request ("remember that ..."), else None."""
    m = _REMEMBER.match(text)
    if not m or len(m.group("c").split()) < 3:
        return None
    content = m.group("c").strip()
    return content[0].upper() + content[1:]


_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][\w'-]+(?:\s+(?:of\s+)?[A-Z][\w'-]+)*)")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def name_questions(content: str, limit: int = 4) -> list[tuple[str, str]]:
    """(question, answer) chat turns asking about each name the content mentions (a capitalised word
    not opening a sentence), answered with the sentences that mention it. Declarative text alone
    teaches a small model to continue the text, not to answer about it in a chat; these turns
    carry the content into the chat format."""
    sentences = _sentences(content)
    names = list(dict.fromkeys(m.group(1) for s in sentences for m in _NAME.finditer(s)))
    out = []
    for name in names[:limit]:
        answer = " ".join(s for s in sentences if name in s)
        out.append((f"What do you know about {name}?", answer))
    return out


def qa_probe(tok, chat: bool, system_prompt: str | None, question: str, answer: str, kind: str = "qa") -> Probe:
    """A probe asking `question` in the chat format, `answer` the reply to score."""
    prompt = format_prompt(tok, question, chat, system_prompt)
    return Probe(prompt, (" " if not chat else "") + answer, kind, question)


def cloze_probes(content: str, n: int) -> list[Probe]:
    """The last words of the content's longest sentences, to be predicted from the rest (raw text)."""
    sentences = [s for s in _sentences(content) if len(s.split()) >= 5]
    out = []
    for s in sorted(sentences, key=lambda s: -len(s.split()))[:n]:
        words = s.rstrip(".!?").split()
        k = max(1, min(3, len(words) // 4))
        out.append(Probe(" ".join(words[:-k]), " " + " ".join(words[-k:]), "cloze", " ".join(words[:-k]) + " ..."))
    return out


def probe_request(content: str, n: int) -> str:
    """What the model is asked to write `n` probes about `content` (read by `parse_probe_pairs`)."""
    return (f"Read the text below, then write {n} short questions that it answers. Write each question on a "
            f"line starting with 'Q:' and, on the next line starting with 'A:', its answer copied word for word "
            f"from the text.\n\nText: {content}")


_QA_LINE = re.compile(r"^\s*(?:\d+[.)]\s*)?(q|a)\s*\d*\s*[:.]\s*(.+)$", re.IGNORECASE)


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())


def parse_probe_pairs(text: str, content: str) -> list[tuple[str, str]]:
    """(question, answer) pairs from 'Q: ... / A: ...' lines whose answer is found in the content
    and is not already in the question: a model-written probe is kept only if it is checkable."""
    pairs, question = [], None
    for line in text.splitlines():
        m = _QA_LINE.match(line)
        if not m:
            continue
        if m.group(1).lower() == "q":
            question = m.group(2).strip()
        elif question:
            answer = m.group(2).strip().rstrip(".")
            a, c = _norm(answer), _norm(content)
            if a and len(a.split()) <= 12 and f" {a} " in f" {c} " and a not in _norm(question):
                pairs.append((question, answer))
            question = None
    return pairs
