"""The ARC self-edit: strict parsing of the model's JSON training configuration, and the step budget."""

import json

import pytest

from seal.domains.arc.self_edit import (
    KEYS,
    ARCEdit,
    EditLimits,
    EditRejected,
    check_budget,
    extract_json,
    parse_edit,
)

VALID = {
    "geometric": True,
    "size": False,
    "chain": True,
    "repeat": False,
    "loss": "output_only",
    "lr": 1e-4,
    "epochs": 3,
}


def edit_text(**changes) -> str:
    d = {**VALID, **changes}
    return json.dumps({k: v for k, v in d.items() if v is not ...})


def rejected(text: str, match: str, limits: EditLimits | None = None) -> None:
    with pytest.raises(EditRejected, match=match):
        parse_edit(text, limits or EditLimits())


def test_valid_edit():
    e = parse_edit(edit_text())
    assert e == ARCEdit(True, False, True, False, "output_only", 1e-4, 3)
    assert e.augment_choice() == {"geometric": True, "size": False, "chain": True, "repeat": False}
    assert isinstance(parse_edit(edit_text(lr=0.01)).lr, float)
    assert parse_edit(edit_text(lr=0.01, epochs=20, loss="all_tokens")).epochs == 20


def test_wrapped_in_prose_and_fences():
    text = f"Sure! Here is my config:\n```json\n{edit_text()}\n```\nGood luck {{not json}}."
    assert parse_edit(text) == parse_edit(edit_text())


def test_extract_json_ignores_braces_in_strings():
    obj = '{"a": "x}y{", "b": {"c": "\\"}"}}'
    assert extract_json(f"prose {obj} more {{}}") == obj
    assert json.loads(extract_json(f"prose {obj}")) == {"a": "x}y{", "b": {"c": '"}'}}


def test_to_json_round_trips():
    e = parse_edit(edit_text(lr=3e-5, epochs=7))
    s = e.to_json()
    assert "\n" not in s and list(json.loads(s)) == list(KEYS)
    assert parse_edit(s) == e
    e2 = ARCEdit(False, True, False, True, "all_tokens", 0.001, 1)
    assert parse_edit(e2.to_json()) == e2


def test_structure_rejections():
    rejected("I would train with geometric augmentations.", "no JSON object in the output")
    rejected('```json\n{"geometric": true, "size": {"a": 1}', "not closed")
    rejected('{"geometric": true, "size": false,}', "invalid JSON")
    rejected("{'geometric': True}", "invalid JSON")
    rejected("[1, 2, 3]", "expected a JSON object, got list")
    rejected(f"[{edit_text()}]", "expected a JSON object, got list")
    rejected(edit_text(lr=..., geometric=...), "missing keys: geometric, lr")
    rejected(edit_text(epochs=...), "missing keys: epochs$")
    rejected(edit_text(warmup=0.1), "unknown keys: warmup")
    rejected(edit_text()[:-1] + ', "lr": 0.001}', "duplicate keys: lr")


@pytest.mark.parametrize("flag", ["geometric", "size", "chain", "repeat"])
def test_flags_must_be_booleans(flag):
    rejected(edit_text(**{flag: 1}), f"{flag}: expected true or false, got int 1")
    rejected(edit_text(**{flag: "true"}), f"{flag}: expected true or false, got str 'true'")
    rejected(edit_text(**{flag: None}), f"{flag}: expected true or false")


def test_loss():
    rejected(edit_text(loss="mse"), "loss: 'mse' is not one of all_tokens, output_only")
    rejected(edit_text(loss=1), "loss: 1 is not one of")


def test_lr():
    rejected(edit_text(lr="1e-4"), "lr: expected a number, got str '1e-4'")
    rejected(edit_text(lr=True), "lr: expected a number, got bool True")
    rejected(edit_text(lr=5.0), r"lr: 5.0 is outside \[1e-06, 0.01\]")
    rejected(edit_text(lr=0), r"lr: 0 is outside \[1e-06, 0.01\]")
    rejected(edit_text(lr=-1e-3), r"lr: -0.001 is outside")
    rejected(edit_text(lr=float("nan")), "lr: nan is not finite")  # json.dumps writes NaN, json.loads reads it
    rejected(edit_text(lr=float("inf")), "lr: inf is not finite")
    assert parse_edit(edit_text(lr=1e-6)).lr == 1e-6
    assert parse_edit(edit_text(lr=5.0), EditLimits(lr_max=10.0)).lr == 5.0


def test_epochs():
    rejected(edit_text(epochs=2.5), "epochs: expected an integer, got float 2.5")
    rejected(edit_text(epochs=2.0), "epochs: expected an integer, got float 2.0")
    rejected(edit_text(epochs="3"), "epochs: expected an integer, got str '3'")
    rejected(edit_text(epochs=True), "epochs: expected an integer, got bool True")
    rejected(edit_text(epochs=0), r"epochs: 0 is outside \[1, 20\]")
    rejected(edit_text(epochs=1000), r"epochs: 1000 is outside \[1, 20\]")
    rejected(edit_text(epochs=5), r"epochs: 5 is outside \[1, 4\]", EditLimits(epochs_max=4))


def test_check_budget():
    assert check_budget(10, 2, 3, max_steps=100) == 15
    assert check_budget(11, 2, 3, max_steps=18) == 18
    assert check_budget(1, 8, 1, max_steps=1) == 1
    with pytest.raises(EditRejected, match="over budget: 18 steps .* > max_steps=17"):
        check_budget(11, 2, 3, max_steps=17)
    with pytest.raises(EditRejected, match="no training examples"):
        check_budget(0, 2, 3, max_steps=100)
