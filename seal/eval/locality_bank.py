"""The locality bank: short general-knowledge questions (`seal/data/locality_bank.jsonl`) an edit must
not disturb, and the kinds of entity each relation links, from which bleed questions are built.

One JSON object a line: `id` (unique), `category`, `question`, `answer` (short gold), `aliases` (other
accepted answers), `relation` (e.g. `capital_of`) and `subject` (e.g. `France`): "What is the capital of
France?" is `capital_of(France) = Paris`. Which questions a given model knows is
`seal.eval.known_questions`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

BANK_PATH = Path(__file__).resolve().parents[1] / "data" / "locality_bank.jsonl"

# relation -> (kind of its subject, kind of its answer); None: a kind no bleed template swaps in.
# Kinds: "country", "city", "person" and "work" (books, paintings, music).
RELATION_KINDS: dict[str, tuple[str | None, str | None]] = {
    "capital_of": ("country", "city"), "continent_of": ("country", None), "language_of": ("country", None),
    "currency_of": ("country", None), "river_through": ("city", None), "leader_of": ("country", "person"),
    "gift_from": (None, "country"), "author_of": ("work", "person"), "painted_by": ("work", "person"),
    "composed_by": ("work", "person"), "discovered_by": (None, "person"), "invented_by": (None, "person"),
    "founded_by": (None, "person"), "first_person": (None, "person"), "speech_by": (None, "person"),
}

_FIELDS = ("id", "category", "question", "answer", "relation", "subject")


class BankError(ValueError):
    """A malformed bank file; the message names the file, the line and the field."""


@dataclass(frozen=True)
class BankRecord:
    id: str
    category: str
    question: str
    answer: str
    aliases: tuple[str, ...] = ()
    relation: str = ""
    subject: str = ""

    @property
    def golds(self) -> tuple[str, ...]:
        """Every accepted answer, the gold first."""
        return (self.answer, *self.aliases)

    def to_dict(self) -> dict:
        return {"id": self.id, "category": self.category, "question": self.question, "answer": self.answer,
                "aliases": list(self.aliases), "relation": self.relation, "subject": self.subject}


def parse_record(obj, where: str) -> BankRecord:
    """One record from its parsed JSON; `where` ("file:line") heads every error."""
    if not isinstance(obj, dict):
        raise BankError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for name in _FIELDS:
        value = obj.get(name)
        if name not in obj:
            raise BankError(f"{where}: missing field '{name}'")
        if not isinstance(value, str) or not value.strip():
            raise BankError(f"{where}: field '{name}' must be a non-empty string, got {value!r}")
    aliases = obj.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise BankError(f"{where}: field 'aliases' must be a list of non-empty strings, got {aliases!r}")
    unknown = sorted(set(obj) - set(_FIELDS) - {"aliases"})
    if unknown:
        raise BankError(f"{where}: unknown field '{unknown[0]}' (fields: {', '.join(_FIELDS)}, aliases)")
    return BankRecord(id=obj["id"].strip(), category=obj["category"].strip(), question=obj["question"].strip(),
                      answer=obj["answer"].strip(), aliases=tuple(a.strip() for a in aliases),
                      relation=obj["relation"].strip(), subject=obj["subject"].strip())


def load_bank(path: str | Path | None = None) -> list[BankRecord]:
    """The bank's records in file order (default: the bank shipped with seal). Blank lines are skipped;
    a malformed line or a repeated id is a `BankError` naming the file, the line and the field."""
    path = Path(path) if path is not None else BANK_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BankError(f"{path}: cannot read the locality bank ({e})") from None
    records: list[BankRecord] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise BankError(f"{where}: not valid JSON ({e})") from None
        record = parse_record(obj, where)
        if record.id in seen:
            raise BankError(f"{where}: field 'id': '{record.id}' repeats the id of line {seen[record.id]}")
        seen[record.id] = n
        records.append(record)
    if not records:
        raise BankError(f"{path}: the locality bank holds no records")
    return records


def _person_name(r: BankRecord) -> str:
    """The fullest form of a person answer ("William Shakespeare" rather than "Shakespeare")."""
    names = [a for a in r.golds if len(a.split()) >= 2 and a[:1].isupper()]
    return max(names, key=len) if names else r.answer


def entities_of_kind(bank: list[BankRecord], kind: str) -> list[str]:
    """Distinct subjects and answers the bank's relations mark as `kind` (see RELATION_KINDS), in bank
    order."""
    out: dict[str, None] = {}
    for r in bank:
        subject_kind, answer_kind = RELATION_KINDS.get(r.relation, (None, None))
        if subject_kind == kind:
            out.setdefault(r.subject, None)
        if answer_kind == kind:
            out.setdefault(_person_name(r) if kind == "person" else r.answer, None)
    return list(out)


def categories(bank: list[BankRecord]) -> dict[str, int]:
    """Records per category."""
    counts: dict[str, int] = {}
    for r in bank:
        counts[r.category] = counts.get(r.category, 0) + 1
    return counts
