"""Passages and the loaders that produce them.

A *passage* is the unit of knowledge incorporation: a title, a context and the closed-book questions
about it. Every data source (SEAL-format JSON/JSONL files, SQuAD from the hub or a local file, the
embedded fictional benchmark) ends up as a list of `Passage`. Loading problems raise `DataError`
naming the file, the record and the field, so a broken file never fails silently.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path


class DataError(ValueError):
    """A data file or record is unusable; the message names the file, record and field."""


@dataclass(frozen=True)
class Question:
    question: str
    answer: str


@dataclass
class Passage:
    title: str
    context: str
    questions: list[Question]
    completions: list[str] = field(default_factory=list)  # self-edits shipped with the record, if any
    uid: str = ""  # stable id, e.g. "squad_val.json#17"

    def to_dict(self) -> dict:
        return {
            "title": self.title,
            "context": self.context,
            "questions": [{"question": q.question, "answer": q.answer} for q in self.questions],
            "completions": list(self.completions),
        }


@dataclass
class DataConfig:
    """Which passages an experiment uses.

    source: `fictional` (embedded generator), `file` (a SEAL-format JSON/JSONL at `path`),
    `squad` (SQuAD v1.1 from the hub, or from `path` when given).
    """

    source: str = "fictional"
    path: str | None = None
    split: str = "validation"  # squad only
    limit: int | None = None  # keep the first N passages (after `subset`)
    offset: int = 0  # skip this many passages first (e.g. to separate train from held-out)
    subset: str | None = None  # "seal_eval": the seed-42 shuffle, first 200 passages (REFERENCE 1.1)
    num_passages: int = 64  # fictional only: how many to generate
    seed: int = 0  # fictional only: generator seed


def _req(rec: dict, key: str, kind: type, where: str):
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected an object with fields title/context/questions, got {type(rec).__name__}")
    if key not in rec:
        raise DataError(f"{where}: missing field '{key}'")
    val = rec[key]
    if not isinstance(val, kind):
        raise DataError(f"{where}: field '{key}' must be {kind.__name__}, got {type(val).__name__}")
    return val


def passage_from_record(rec: dict, where: str) -> Passage:
    """Validate one SEAL-format record ({title, context, questions, [completions]})."""
    title = _req(rec, "title", str, where)
    context = _req(rec, "context", str, where)
    if not context.strip():
        raise DataError(f"{where}: field 'context' is empty")
    qs = _req(rec, "questions", list, where)
    questions = []
    for j, q in enumerate(qs):
        qwhere = f"{where}, questions[{j}]"
        question = _req(q, "question", str, qwhere)
        if "answer" in q:
            answer = q["answer"]
        elif "answers" in q and isinstance(q["answers"], list) and q["answers"]:
            answer = q["answers"][0]  # SQuAD style: first gold answer kept
            answer = answer.get("text", answer) if isinstance(answer, dict) else answer
        else:
            raise DataError(f"{qwhere}: missing field 'answer'")
        if not isinstance(answer, str) or not answer.strip():
            raise DataError(f"{qwhere}: field 'answer' must be a non-empty string")
        questions.append(Question(question=question, answer=answer))
    completions = rec.get("completions", [])
    if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
        raise DataError(f"{where}: field 'completions' must be a list of strings")
    return Passage(title=title, context=context, questions=questions, completions=completions)


def load_seal_file(path: str | Path) -> list[Passage]:
    """Read a SEAL-format file: a JSON list of records, or JSONL with one record per line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); is it the right file?") from None
    records: list[tuple[str, object]] = []
    stripped = text.lstrip()
    if not stripped:
        raise DataError(f"{path}: file is empty")
    if path.suffix == ".jsonl" or (stripped and stripped[0] == "{" and "\n{" in stripped):
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((f"{path}:{i}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i}: malformed JSON line ({e.msg} at column {e.colno})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: malformed JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
        if isinstance(data, dict) and "data" in data:  # official SQuAD layout
            passages = group_squad_official(data, str(path))
            if not passages:
                raise DataError(f"{path}: the SQuAD file holds no paragraphs")
            return passages
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of passage records, got {type(data).__name__}")
        records = [(f"{path}, record {i}", r) for i, r in enumerate(data)]
    if not records:
        raise DataError(f"{path}: file holds no records")
    passages = []
    for i, (where, rec) in enumerate(records):
        p = passage_from_record(rec, where)
        p.uid = f"{path.name}#{i}"
        passages.append(p)
    return passages


def group_squad_official(data: dict, source: str) -> list[Passage]:
    """Group the official SQuAD v1.1 JSON ({data: [{title, paragraphs}]}) by paragraph."""
    passages = []
    if not isinstance(data["data"], list):
        raise DataError(f"{source}: field 'data' must be a list of articles, got {type(data['data']).__name__}")
    for a, article in enumerate(data["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs", []), list):
            raise DataError(f"{source}, data[{a}]: expected an article object with a list of 'paragraphs'")
        for b, para in enumerate(article.get("paragraphs", [])):
            where = f"{source}, data[{a}].paragraphs[{b}]"
            if not isinstance(para, dict):
                raise DataError(f"{where}: expected a paragraph object, got {type(para).__name__}")
            title = article.get("title", "")
            title = title.replace("_", " ") if isinstance(title, str) else title  # as the hub rows below
            qas = para.get("qas", [])
            qas = [{k: q[k] for k in ("question", "answers") if k in q} if isinstance(q, dict) else q
                   for q in qas] if isinstance(qas, list) else qas
            rec = {"title": title, "context": para.get("context"), "questions": qas}
            p = passage_from_record(rec, where)
            p.uid = f"squad#{len(passages)}"
            passages.append(p)
    return passages


def group_squad_rows(rows, source: str = "squad") -> list[Passage]:
    """Group flat SQuAD rows (hub `datasets` layout) by (title, context), keeping first-seen order."""
    index: dict[tuple[str, str], Passage] = {}
    for i, row in enumerate(rows):
        key = (row["title"], row["context"])
        if key not in index:
            index[key] = Passage(title=row["title"].replace("_", " "), context=row["context"], questions=[],
                                 uid=f"{source}#{len(index)}")
        answers = row["answers"]["text"] if isinstance(row["answers"], dict) else row["answers"]
        if not answers:
            raise DataError(f"{source}, row {i}: field 'answers' is empty")
        index[key].questions.append(Question(question=row["question"], answer=answers[0]))
    return list(index.values())


def load_squad(split: str = "validation", path: str | None = None) -> list[Passage]:
    """SQuAD v1.1 grouped by paragraph: from `path` (grouped SEAL JSON or official JSON) or the hub."""
    if path:
        return load_seal_file(path)
    try:
        from datasets import load_dataset
    except ImportError as e:  # pragma: no cover - datasets is a dependency
        raise DataError("loading SQuAD from the hub needs the `datasets` package") from e
    try:
        rows = load_dataset("rajpurkar/squad", split=split)
    except Exception as e:
        raise DataError(f"SQuAD ({split}) could not be loaded from the hub ({e}); pass data.path=<file>") from e
    return group_squad_rows(rows, source=f"squad-{split}")


def seal_eval_subset(passages: list[Passage], n: int = 200, seed: int = 42) -> list[Passage]:
    """The paper's evaluation subset: Python `random.seed(42); random.shuffle(list)`, first n."""
    lst = list(passages)
    random.Random(seed).shuffle(lst)  # same order as random.seed(seed); random.shuffle, global RNG untouched
    return lst[:n]


def load_passages(cfg: DataConfig) -> list[Passage]:
    if cfg.source == "fictional" and cfg.path:  # `data.path=my.json` alone means "my file"
        cfg = replace(cfg, source="file")
    if cfg.source == "fictional":
        from seal.fictional import generate_passages

        passages = generate_passages(cfg.num_passages, seed=cfg.seed)
    elif cfg.source == "file":
        if not cfg.path:
            raise DataError("data.source=file needs data.path=<SEAL-format JSON/JSONL file>")
        passages = load_seal_file(cfg.path)
    elif cfg.source == "squad":
        passages = load_squad(cfg.split, cfg.path)
    else:
        raise DataError(f"data.source: unknown source '{cfg.source}' (choose fictional, file or squad)")
    if cfg.subset == "seal_eval":
        passages = seal_eval_subset(passages)
    elif cfg.subset:
        raise DataError(f"data.subset: unknown subset '{cfg.subset}' (choose seal_eval or leave unset)")
    if cfg.offset < 0:
        raise DataError(f"data.offset must be at least 0, got {cfg.offset}")
    passages = passages[cfg.offset:]
    if cfg.limit is not None:
        if cfg.limit < 1:
            raise DataError(f"data.limit must be at least 1, got {cfg.limit}")
        passages = passages[: cfg.limit]
    if not passages:
        raise DataError("data: no passages selected (check data.offset / data.limit)")
    return passages
