"""Prompt files: the three record kinds, and every malformed line refused with its file:line."""

import json

import pytest

from tqjax.io.prompts import PromptRecord, check_new_file, make_folder, read_prompts

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]


def write(tmp_path, lines):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return str(path)


def test_prompt_ids_and_messages_records(tmp_path):
    path = write(tmp_path, [{"id": "a", "prompt": "hello"}, {"id": 2, "prompt_ids": [1, 5, 9]},
                            {"id": "c", "messages": CHAT, "meta": "ignored"}])
    records = read_prompts(path)
    assert records == [PromptRecord("a", prompt="hello"), PromptRecord(2, prompt_ids=(1, 5, 9)),
                       PromptRecord("c", messages=tuple(CHAT))]
    assert [r.value for r in records] == ["hello", [1, 5, 9], CHAT]
    records[2].value[0]["content"] = "changed"                     # value hands out copies
    assert records[2].value == CHAT


def test_extra_message_keys_pass_through(tmp_path):
    message = {"role": "user", "content": "Hi!", "name": "ann"}
    assert read_prompts(write(tmp_path, [{"id": 1, "messages": [message]}]))[0].value == [message]


@pytest.mark.parametrize("record, message", [
    ({"id": 1, "messages": []},
     '"messages": expected a non-empty list of {"role", "content"} objects, got []'),
    ({"id": 1, "messages": "hi"}, '"messages": expected a non-empty list'),
    ({"id": 1, "messages": {"role": "user", "content": "hi"}}, '"messages": expected a non-empty list'),
    ({"id": 1, "messages": [{"content": "hi"}]}, '"messages": message 0 has no "role"'),
    ({"id": 1, "messages": [{"role": 3, "content": "hi"}]}, '"messages": message 0 has no "role"'),
    ({"id": 1, "messages": [CHAT[0], {"role": "user", "content": 5}]},
     '"messages": message 1 (role \'user\') needs a "content" string, got int'),
    ({"id": 1, "messages": [CHAT[0], {"role": "user"}]}, '"messages": message 1 (role \'user\') needs a "content" string'),
    ({"id": 1, "messages": [CHAT[0], "hi"]}, '"messages": message 1 must be an object with "role" and "content", got str'),
    ({"id": 1, "messages": CHAT, "prompt": "hi"}, '"messages" and "prompt" on one line; give one of them'),
    ({"id": 1, "messages": CHAT, "prompt_ids": [4]}, '"messages" and "prompt_ids" on one line'),
    ({"id": 1}, 'needs a non-empty "prompt" string, "prompt_ids" list of ints or "messages" list'),
])
def test_malformed_messages_name_the_line(tmp_path, record, message):
    path = write(tmp_path, [{"id": 0, "prompt": "fine"}, record])
    with pytest.raises(ValueError) as info:
        read_prompts(path)
    assert str(info.value).startswith(f"{path}:2: ") and message in str(info.value)


def test_output_file_checks(tmp_path):
    out = tmp_path / "new" / "deeper" / "o.jsonl"
    check_new_file(str(out), overwrite=False)         # a folder that can be created is fine,
    assert not (tmp_path / "new").exists()            # and the check creates nothing
    make_folder(str(out))
    assert (tmp_path / "new" / "deeper").is_dir()
    out.write_text("keep\n")
    with pytest.raises(FileExistsError, match="o.jsonl' already exists; pass --overwrite to replace it"):
        check_new_file(str(out), overwrite=False)
    check_new_file(str(out), overwrite=True)
    with pytest.raises(ValueError, match="deeper' is a folder; give the path of a file"):
        check_new_file(str(tmp_path / "new" / "deeper"), overwrite=True)
    (tmp_path / "plain").write_text("")
    with pytest.raises(ValueError, match=r"its folder '.*plain/sub' cannot be created, '.*plain' is a file"):
        check_new_file(str(tmp_path / "plain" / "sub" / "o.jsonl"), overwrite=False)
