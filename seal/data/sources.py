"""Passages and the loaders that produce them.

A *passage* (`seal.data.passage`) is the unit of knowledge incorporation: a title, a context and the
closed-book questions about it. Every data source (SEAL-format JSON/JSONL files, SQuAD from the hub or a local file, the
embedded fictional benchmark) ends up as a list of `Passage`. Loading problems raise `DataError`
naming the file, the record and the field, so a broken file never fails silently: malformed or
absurdly nested JSON, a missing or empty field, text that is not valid Unicode (an unpaired
`\\ud800` escape), and a selected passage with no questions (it would score nothing). A passage
repeated in a file (same title and context) is dropped with a warning naming both records, so it
never counts twice.
"""

from __future__ import annotations

import json
import random
import unicodedata
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from seal.data.passage import Passage, Question


class DataError(ValueError):
    """A data file or record is unusable; the message names the file, record and field."""


@dataclass(frozen=True)
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


def is_blank(text: str) -> bool:
    """True when `text` shows nothing: only whitespace, control or format (zero-width) characters."""
    return all(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in text)


def lone_surrogate(text: str) -> int | None:
    """Index of the first unpaired UTF-16 surrogate in `text` (a broken `\\ud800` JSON escape), else None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None


def check_text(text: str, where: str, name: str) -> str:
    """`text`, or a `DataError` naming the field when it is not valid Unicode."""
    i = lone_surrogate(text)
    if i is not None:
        raise DataError(f"{where}: field '{name}' holds an unpaired UTF-16 surrogate (U+{ord(text[i]):04X}) at "
                        f"character {i}: not valid Unicode text (a broken \\u escape in the file?)")
    return text


def parse_json(text: str, where: str):
    """`json.loads`, with malformed or absurdly nested JSON as a `DataError` naming `where`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: malformed JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: malformed JSON (nested too deeply to be a data file)") from None


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
    title = check_text(_req(rec, "title", str, where), where, "title")
    context = check_text(_req(rec, "context", str, where), where, "context")
    if is_blank(context):
        raise DataError(f"{where}: field 'context' is empty")
    qs = _req(rec, "questions", list, where)
    questions = []
    for j, q in enumerate(qs):
        qwhere = f"{where}, questions[{j}]"
        question = check_text(_req(q, "question", str, qwhere), qwhere, "question")
        if is_blank(question):
            raise DataError(f"{qwhere}: field 'question' is empty")
        if "answer" in q:
            answer = q["answer"]
        elif "answers" in q and isinstance(q["answers"], list) and q["answers"]:
            answer = q["answers"][0]  # SQuAD style: first gold answer kept
            answer = answer.get("text", answer) if isinstance(answer, dict) else answer
        else:
            raise DataError(f"{qwhere}: missing field 'answer'")
        if not isinstance(answer, str) or is_blank(answer):
            raise DataError(f"{qwhere}: field 'answer' must be a non-empty string")
        questions.append(Question(question=question, answer=check_text(answer, qwhere, "answer")))
    completions = rec.get("completions", [])
    if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
        raise DataError(f"{where}: field 'completions' must be a list of strings")
    for k, c in enumerate(completions):
        check_text(c, where, f"completions[{k}]")
    return Passage(title=title, context=context, questions=questions, completions=completions)


def drop_duplicates(passages: list[Passage], labels: list[str], source: str) -> list[Passage]:
    """The passages without repeats: a later passage with the same title and context as an earlier one
    is dropped (it would count twice), with one warning that names both records."""
    first: dict[tuple[str, str], str] = {}
    kept, repeats = [], []
    for p, label in zip(passages, labels):
        key = (p.title.strip(), p.context.strip())
        if key in first:
            repeats.append(f"{label} repeats {first[key]}")
        else:
            first[key] = label
            kept.append(p)
    if repeats:
        more = f" (and {len(repeats) - 5} more)" if len(repeats) > 5 else ""
        warnings.warn(f"{source}: {len(repeats)} duplicate passage(s) (same title and context) dropped, the first "
                      f"occurrence kept: {'; '.join(repeats[:5])}{more}", stacklevel=3)
    return kept


def read_utf8(path: str | Path, hint: str = "") -> str:
    """The text of a UTF-8 file. A missing file or one that is not UTF-8 raises DataError naming `path` as
    given; `hint` (e.g. "arc_data.challenges", the setting that named the file) follows a missing one."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{path}: no such file" + (f" ({hint})" if hint else ""))
    try:
        return file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); is it the right file?") from None


def load_seal_file(path: str | Path) -> list[Passage]:
    """Read a SEAL-format file: a JSON list of records, or JSONL with one record per line."""
    path = Path(path)
    text = read_utf8(path)
    records: list[tuple[str, str, object]] = []  # (label, where, record)
    stripped = text.lstrip()
    if not stripped:
        raise DataError(f"{path}: file is empty")
    if path.suffix == ".jsonl" or (stripped and stripped[0] == "{" and "\n{" in stripped):
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((f"line {i}", f"{path}:{i}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i}: malformed JSON line ({e.msg} at column {e.colno})") from None
            except RecursionError:
                raise DataError(f"{path}:{i}: malformed JSON line (nested too deeply to be a data file)") from None
    else:
        data = parse_json(text, str(path))
        if isinstance(data, dict) and "data" in data:  # official SQuAD layout
            passages = group_squad_official(data, str(path))
            if not passages:
                raise DataError(f"{path}: the SQuAD file holds no paragraphs")
            return passages
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of passage records, got {type(data).__name__}")
        records = [(f"record {i}", f"{path}, record {i}", r) for i, r in enumerate(data)]
    if not records:
        raise DataError(f"{path}: file holds no records")
    passages = []
    for i, (_, where, rec) in enumerate(records):
        p = passage_from_record(rec, where)
        p.uid = f"{path.name}#{i}"
        passages.append(p)
    return drop_duplicates(passages, [label for label, _, _ in records], str(path))


def group_squad_official(data: dict, source: str) -> list[Passage]:
    """Group the official SQuAD v1.1 JSON ({data: [{title, paragraphs}]}) by paragraph."""
    passages, labels = [], []
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
            labels.append(f"data[{a}].paragraphs[{b}]")
    return drop_duplicates(passages, labels, source)


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


def _fictional(cfg: DataConfig) -> list[Passage]:
    from seal.data.fictional import generate_passages

    return generate_passages(cfg.num_passages, seed=cfg.seed)


def _file(cfg: DataConfig) -> list[Passage]:
    if not cfg.path:
        raise DataError("data.source=file needs data.path=<SEAL-format JSON/JSONL file>")
    return load_seal_file(cfg.path)


def _squad(cfg: DataConfig) -> list[Passage]:
    return load_squad(cfg.split, cfg.path)


# data.source name -> loader; a new source is one function and one entry here
SOURCES: dict[str, Callable[[DataConfig], list[Passage]]] = {"fictional": _fictional, "file": _file, "squad": _squad}


def load_passages(cfg: DataConfig) -> list[Passage]:
    if cfg.source == "fictional" and cfg.path:  # `data.path=my.json` alone means "my file"
        cfg = replace(cfg, source="file")
    if cfg.source not in SOURCES:
        raise DataError(f"data.source: unknown source '{cfg.source}' (choose {', '.join(SOURCES)})")
    passages = SOURCES[cfg.source](cfg)
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
    _require_questions(passages, cfg.path or cfg.source)
    return passages


def _require_questions(passages: list[Passage], source: str) -> None:
    """Every selected passage is scored on its questions: one without any would score nothing (an
    empty mean), so it is refused here, by name, before any work is done."""
    empty = [p for p in passages if not p.questions]
    if empty:
        p = empty[0]
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise DataError(f"{source}: passage {p.uid} ({p.title[:40]!r}) has no questions: nothing to score{more}; "
                        f"add questions to the record or leave it out of the selection")
