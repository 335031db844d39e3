"""What the policy's training directives (`seal.domains.knowledge.directive`, format implications-hp)
chose, per ReST-EM round, read from the run folder's records: `results.json` `rounds[i].directives`
and a section of `report.md`.

Per round r it reads the held-out self-edits' inner loops (`eval/<r>/self_edit/<uid>[/<i>]`), the
E-step's (`estep/<r>/<uid>/<i>/<s>`, seed 0 only: every seed of an edit trains with the same directive)
and, among those, the E-step edits that selection kept (`select/<r>`)."""

from __future__ import annotations

from seal.domains.knowledge.directive import directive_stats
from seal.infra.run_dir import RunDir

PHASES = {"held_out": "held-out", "e_step": "E-step", "e_step_kept": "E-step, kept"}


def _round(key: str) -> int | None:
    parts = key.split("/")
    return int(parts[1]) if parts[0] in ("eval", "estep") and len(parts) > 2 and parts[1].isdigit() else None


def round_records(rd: RunDir, r: int) -> dict[str, list[dict]]:
    """Round r's inner-loop records that carry a directive, one per self-edit, by phase."""
    held = [rec for key, rec in rd.records.items() if key.startswith(f"eval/{r}/")
            and rec.get("condition") == "self_edit" and "directive" in rec]
    estep = [rec for key, rec in rd.records.items() if key.startswith(f"estep/{r}/")
             and rec.get("seed_index") == 0 and "directive" in rec]
    out = {phase: recs for phase, recs in (("held_out", held), ("e_step", estep)) if recs}
    sel = rd.get(rd.key("select", r))
    if sel and estep:  # possibly none kept: the row then says so
        kept = {(e["context"], e["sample"]) for e in sel["edits"] if e["kept"]}
        out["e_step_kept"] = [rec for rec in estep if (rec["context"], rec["sample"]) in kept]
    return out


def round_directives(rd: RunDir, r: int) -> dict:
    """Round r's directive statistics per phase (`directive_stats`); {} when no record carries one."""
    return {phase: directive_stats(recs) for phase, recs in round_records(rd, r).items()}


def rounds_of(rd: RunDir) -> list[int]:
    return sorted({r for key in rd.records if (r := _round(key)) is not None})


def _shown(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} ×{n}" for v, n in counts.items()) or "—"


def directive_section(rd: RunDir, cfg_line: str, position: str = "last") -> list[str]:
    """The report's section: per round and phase, the share of valid directives, the settings the valid
    ones chose, what the invalid ones did (fell back to the defaults, were refused, or were skipped for
    another reason) and why."""
    from seal.infra.report import md_table

    rows = []
    for r in rounds_of(rd):
        for phase, s in round_directives(rd, r).items():
            share = "—" if s["share_valid"] is None else f"{s['share_valid']:.2f}"
            fell = f"{s['n_fallback']}" + (f" ({_shown(s['fallback'])})" if s["n_fallback"] else "")
            rows.append([r, PHASES[phase], s["n"], s["n_valid"], share, _shown(s["chosen"]["lr"]),
                         _shown(s["chosen"]["epochs"]), _shown(s["chosen"]["passage"]), fell, s["n_refused"],
                         s.get("n_skipped", 0), _shown(s["problems"])])
    if not rows:
        return []
    return ["## Training directives the policy wrote", "",
            (("Each self-edit ends in a line `Training: lr=..., epochs=..., passage=...` that sets its own inner "
              f"loop ({cfg_line}). " if position == "last" else
              "Each self-edit starts with a line `Training: lr=..., epochs=..., passage=...` that sets its own inner "
              f"loop ({cfg_line}); the policy writes it by decoding constrained to the allowed lines, so every "
              "directive is valid and the settings chosen are the policy's own preference. ") +
             "Settings chosen are over the valid directives; an invalid one trains with the "
             "defaults (fell back, with the settings that gave) or, with `self_edit.directive.on_invalid=refuse`, "
             "makes the self-edit unusable (refused); other skipped: an invalid one whose self-edit was unusable "
             "for another reason (empty, too long, NaN loss ...), so it neither fell back nor was refused. Problems count each kind found (a directive may have "
             "several). E-step: one count per self-edit (its seeds share the directive); kept: the E-step "
             "self-edits selection cloned into the M-step."), "",
            md_table(["policy", "self-edits", "directives", "valid", "share valid", "lr chosen", "epochs chosen",
                      "passage chosen", "fell back", "refused", "other skipped", "problems"], rows), ""]
