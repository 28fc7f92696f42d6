"""Prompt files (JSONL, one ``{"id", "prompt"}``, ``{"id", "prompt_ids"}`` or ``{"id", "messages"}``
per line) and output files."""

from __future__ import annotations

import dataclasses
import json
import os

from tqjax.io.chat import check_messages


@dataclasses.dataclass(frozen=True)
class PromptRecord:
    id: object
    prompt: str | None = None
    prompt_ids: tuple | None = None
    messages: tuple | None = None

    @property
    def value(self):
        """What `tqjax.decode` takes: the string, the id list or the list of message dicts."""
        if self.messages is not None:
            return [dict(m) for m in self.messages]
        return self.prompt if self.prompt is not None else list(self.prompt_ids)


def read_prompts(path: str) -> list[PromptRecord]:
    """Every record of a prompt file, validated before any work starts (errors name the line)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"prompt file {path!r} does not exist")
    records, seen = [], {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
            if "id" not in obj:
                raise ValueError(f"{path}:{number}: missing \"id\"")
            rid = obj["id"]
            if not isinstance(rid, (str, int)) or isinstance(rid, bool):
                raise ValueError(f"{path}:{number}: \"id\" must be a string or an integer, got {rid!r}")
            if rid in seen:
                raise ValueError(f"{path}:{number}: duplicate id {rid!r} (first on line {seen[rid]})")
            seen[rid] = number
            if "messages" in obj:
                records.append(PromptRecord(rid, messages=_messages(obj, f"{path}:{number}")))
            elif isinstance(obj.get("prompt"), str) and obj["prompt"].strip():
                records.append(PromptRecord(rid, prompt=obj["prompt"]))
            elif isinstance(obj.get("prompt_ids"), list) and obj["prompt_ids"] and all(
                    isinstance(t, int) and not isinstance(t, bool) for t in obj["prompt_ids"]):
                records.append(PromptRecord(rid, prompt_ids=tuple(obj["prompt_ids"])))
            else:
                raise ValueError(f"{path}:{number}: needs a non-empty \"prompt\" string, \"prompt_ids\" "
                                 f"list of ints or \"messages\" list")
    if not records:
        raise ValueError(f"{path}: no prompts")
    return records


def _messages(obj: dict, where: str) -> tuple:
    others = [key for key in ("prompt", "prompt_ids") if key in obj]
    if others:
        raise ValueError(f"{where}: \"messages\" and \"{others[0]}\" on one line; give one of them")
    try:
        return tuple(check_messages(obj["messages"]))
    except ValueError as e:
        raise ValueError(f"{where}: \"messages\": {e}") from None


def check_new_file(path: str, overwrite: bool) -> None:
    """Refuse an output file that exists (unless ``overwrite``), that is a folder, or whose folder
    can be neither found nor created: the nearest part of it that exists must be a folder. The
    writer creates a missing folder (`make_folder`)."""
    if os.path.isdir(path):
        raise ValueError(f"output {path!r} is a folder; give the path of a file")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"output {path!r} already exists; pass --overwrite to replace it")
    folder = existing = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"output {path!r}: its folder {folder!r} cannot be created, "
                         f"{existing!r} is a file")


def result_line(record_id, out, i: int, **extra) -> dict:
    """The output line (a JSON object) of prompt ``i`` of a `tqjax.DecodeOutput`, as `tqjax decode`
    and `tqjax batch` write it: ``id``, then ``extra`` (batch: the global ``index``), ``tokens``,
    ``text``, ``reward``, ``kl``, ``logp_sft``, ``log_ratio``."""
    return dict(id=record_id, **extra, tokens=[int(t) for t in out.tokens[i]],
                text=out.texts[i] if out.texts else None,
                reward=None if out.rewards is None else float(out.rewards[i]),
                kl=float(out.kl[i]), logp_sft=float(out.logp_sft[i]),
                log_ratio=float(out.log_ratio[i]))


def error_line(record_id, error: Exception, **extra) -> dict:
    """The output line of a prompt that failed on its own (`tqjax batch`): ``id``, then ``extra``,
    ``error`` (the message, naming the prompt by its id) and ``error_type`` (the exception's class
    name), and no result fields."""
    detail = getattr(error, "detail", None) or str(error)
    return dict(id=record_id, **extra, error=f"prompt id {record_id!r}: {detail}",
                error_type=type(error).__name__)


def make_folder(path: str) -> None:
    """Create the folder of the output file ``path`` if it is missing."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
