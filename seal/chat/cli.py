"""`seal-chat`: a terminal chat whose model learns what you tell it, and keeps it across sessions.

    seal-chat                                   # SmolLM2 on CPU, adapters in ./chat_store
    seal-chat chat.store=~/my-store chat.version=v0002 model.name=<hub id or path>

Learning: `/learn <text>`, `/learn-file <path>`, or plain requests ("remember that ..."); `/probe
<question> => <answer>` adds a gate probe for the next learning request. Versions: `/history`,
`/undo`, `/pin <vNNNN|base>`, `/status`. Learning runs in the background (stage lines show its
progress) and the chat answers meanwhile with the last committed weights. `/export <dir>` writes
the active version as one PEFT adapter folder (peft, vLLM). At a terminal, lines can be edited and
earlier ones recalled (arrow keys, Ctrl-R), across sessions.
Config: seal/configs/seal_chat.yaml and seal/configs/chat/default.yaml. A bad setting is one line on
stderr and exit status 2 (HYDRA_FULL_ERROR=1 shows Hydra's full trace instead).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

PROMPT = "you> "
HELP = """commands:
  /learn <text>            learn a fact or note (also: "remember that ...")
  /learn-file <path>       learn a text document
  /probe <question> => <answer>   gate the next learning request on this question
  /history                 committed adapter versions (* = active)
  /undo                    roll back the last commit
  /pin <vNNNN|base>        switch to a version (it becomes HEAD)
  /status                  model, store, version, learning progress
  /export <dir>            write the active version as one PEFT adapter folder (peft, vLLM)
  /wait                    wait until queued learning has finished
  /help, /quit"""


def load_config(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from seal.chat.config import SessionConfig, check_scheduler
    from seal.infra.config import ConfigError, to_dataclass
    from seal.infra.config_checks import check_ranges
    from seal.infra.hydra_config import CONFIG_DIR, one_line

    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
            cfg = compose(config_name="seal_chat", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:  # a bad override: one line, not Hydra's trace
        if os.environ.get("HYDRA_FULL_ERROR") == "1":  # as with `seal`: the user asked for the full trace
            raise
        raise ConfigError(one_line(e)) from None
    typed = to_dataclass(SessionConfig, cfg, "seal_chat")
    check_ranges(typed)  # the same ranges as `seal`: a nonsense value is refused before the model loads
    check_scheduler(typed)
    return typed


def parse_command(line: str) -> tuple[str, str]:
    """(command, argument) of a typed line; a line that is not a command is ("", the line)."""
    line = line.strip()
    if not line.startswith("/"):
        return "", line
    cmd, _, arg = line.partition(" ")
    return cmd, arg.strip()


def parse_probe(arg: str) -> tuple[str, str] | None:
    """`question => answer`, or None when either side is missing."""
    q, sep, a = arg.partition("=>")
    return (q.strip(), a.strip()) if sep and q.strip() and a.strip() else None


def _say(text: str) -> None:
    print(text, flush=True)


def _report(result) -> None:
    mark = "learned" if result.accepted else "not learned"
    _say(f"[{mark}] {result.reason} ({result.summary()}; {result.seconds:.0f} s)")
    print(PROMPT, end="", flush=True)  # the input line was scrolled away by the background output


def _learn(session, content: str, source: str, probes: list) -> None:
    from seal.chat.moderation import LearnRefused

    reason = session.moderator.check(content)
    if reason:
        _say(f"[refused] not learned ({source}): {reason}")
        return
    _say(f"[learning] {source}: started; keep chatting, a line will say when it is done")
    try:
        future = session.learn(content, probes=list(probes) or None, source=source, wait=False)
    except LearnRefused as e:
        _say(f"[refused] {e}")
        return
    probes.clear()
    future.add_done_callback(lambda f: _report(f.result()) if not f.exception() else
                             _say(f"[error] learning failed: {f.exception()}"))


def _learn_file(session, arg: str, probes: list, noticed: list) -> None:
    """`/learn-file`: read the file (bounded, regular files only), say once where learned text is kept, learn."""
    from seal.chat.files import read_text_file, stored_text_notice
    from seal.chat.moderation import LearnRefused

    if not arg:
        _say("usage: /learn-file <path>")
        return
    path = Path(arg).expanduser()
    try:
        text = read_text_file(path, session.cfg.chat.moderation.max_chars)
    except LearnRefused as e:
        _say(f"[refused] not learned: {e}")
        return
    reason = session.moderator.check(text)
    if reason:
        _say(f"[refused] not learned (file {path}): {reason}")
        return
    if not noticed:
        _say(stored_text_notice(session.store.root))
        noticed.append(True)
    _learn(session, text, f"file {path}", probes)


def _number(value, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def _history_line(r: dict) -> str:
    mark = "*" if r["active"] else ("+" if r["in_chain"] else " ")
    return (f"{mark} {r.get('version')}  {r.get('time', '?')}  {r.get('source', '?')!s:<14.14}  "
            f"gain {_number(r.get('gain'), '+.2f')}  retention {_number(r.get('retention_drop'), '+.2f')}  "
            f"{str(r.get('content', ''))[:50]!r}"
            + (f"  (for: {', '.join(r['scope'])[:60]})" if r.get("scope") else ""))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TQDM_DISABLE", "1")  # stage lines instead of bars that would garble the prompt
    from seal.chat.adapter_store import StoreError
    from seal.chat.line_editing import HISTORY_FILE, enable_history
    from seal.chat.session import Session
    from seal.data.sources import DataError
    from seal.infra.config import ConfigError
    from seal.inner_loop.trainer import InnerLoopError

    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        _say(__doc__ + "\n" + HELP)
        return 0
    try:
        cfg = load_config(argv)
        session = Session(cfg, on_event=lambda stage, msg: _say(f"  · {stage}: {msg}"))
    except (ConfigError, StoreError, DataError, InnerLoopError) as e:  # a replay file, a target module
        print(f"seal-chat: error: {e}", file=sys.stderr)
        return 2
    st = session.status()
    _say(f"seal-chat · {st['model']} · store {st['store']} · version {st['version']} · /help for commands")
    save_history = enable_history(session.store.root / HISTORY_FILE) if sys.stdin.isatty() else None
    try:
        return _loop(session)
    finally:
        if save_history:
            save_history()


def _loop(session) -> int:
    """Read and run typed lines until /quit (or end of input); returns the exit status."""
    from seal.chat.adapter_store import StoreError
    from seal.chat.probe_writing import remember_request

    probes: list[tuple[str, str]] = []
    noticed: list[bool] = []  # the stored-text notice is said once a session
    while True:
        try:
            line = input(PROMPT).strip()
            if not sys.stdin.isatty():  # a scripted session: show what was typed, as a terminal would
                print(line, flush=True)
        except (EOFError, KeyboardInterrupt):
            line = "/quit"
        if not line:
            continue
        cmd, arg = parse_command(line)
        try:
            if cmd in ("/quit", "/exit"):
                if session.busy():
                    _say("[waiting] learning in progress; it finishes before exit")
                session.close()
                return 0
            elif cmd == "/help":
                _say(HELP)
            elif cmd == "/learn":
                _learn(session, arg, "/learn", probes)
            elif cmd == "/learn-file":
                _learn_file(session, arg, probes, noticed)
            elif cmd == "/probe":
                probe = parse_probe(arg)
                if probe is None:
                    _say("usage: /probe <question> => <answer>")
                    continue
                probes.append(probe)
                _say(f"[probe] {len(probes)} probe(s) for the next learning request")
            elif cmd == "/history":
                rows = session.history()
                if not rows:
                    _say("no committed versions (the base model is active)")
                for r in rows:
                    _say(_history_line(r))
            elif cmd == "/undo":
                undone, now = session.undo()
                _say(f"[undo] rolled back {undone}; active: {now or 'base'}")
            elif cmd == "/pin":
                session.checkout(None if arg in ("base", "") else arg)
                _say(f"[pin] active: {arg or 'base'}")
            elif cmd == "/status":
                st = session.status()
                _say(" · ".join(f"{k} {v}" for k, v in st.items()))
            elif cmd == "/export":
                if not arg:
                    _say("usage: /export <dir>")
                    continue
                out = Path(session.export(arg))
                rank = json.loads((out / "adapter_config.json").read_text())["r"]
                note = " (above 512, vLLM's largest max_lora_rank: peft loads it, vLLM does not)" if rank > 512 else ""
                _say(f"[export] {session.version} -> {out}: a PEFT adapter of rank {rank}{note}")
            elif cmd == "/wait":
                session.wait()
                _say("[idle] no learning in progress")
            elif cmd.startswith("/"):
                _say(f"unknown command {cmd}; /help lists them")
            elif (content := remember_request(line)) is not None:
                _learn(session, content, "chat", probes)
            else:
                print("bot> ", end="", flush=True)
                session.ask(line, stream=lambda t: print(t, end="", flush=True))
                print(flush=True)
        except StoreError as e:
            _say(f"[error] {e}")


if __name__ == "__main__":
    sys.exit(main())
