// bench-tokenizer.mjs: encoding throughput of transformers.js's tokenizer (the v3 tokenizer
// code as packaged in @lenml/tokenizers, loaded from the local tokenizer.json: no network)
// and of Hugging Face's Rust `tokenizers` binding, on one text file.
//   node tools/bench-tokenizer.mjs MODEL_DIR TEXT_FILE [REPS]
// Times only encoding; prints best and median MB/s and the id count.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const nm = path.join(root, ".cache/npm/node_modules");
const require = createRequire(path.join(nm, "noop.js"));
const [dir, file, repsArg] = process.argv.slice(2);
const reps = Number(repsArg || 5);
const text = fs.readFileSync(file, "utf8");
const mb = Buffer.byteLength(text, "utf8") / 1e6;
const name = path.basename(path.dirname(dir)) + "/" + path.basename(dir);
const stats = (ts) => { ts.sort((a, b) => a - b); return [ts[0], ts[Math.floor(ts.length / 2)]]; };
const report = (who, n, ts) => {
  const [best, med] = stats(ts);
  console.log(`${who.padEnd(8)} ${name.padEnd(28)} ${mb.toFixed(3).padStart(8)} MB ${String(n).padStart(9)} ids  best ${(best * 1e3).toFixed(1).padStart(7)} ms  ${(mb / best).toFixed(2).padStart(7)} MB/s  median ${(mb / med).toFixed(2).padStart(7)} MB/s`);
};

{ // transformers.js
  const { TokenizerLoader } = require("@lenml/tokenizers");
  const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  const ts = [];
  let n = 0;
  for (let r = 0; r < reps; r++) {
    const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig }); // fresh cache per run
    const t0 = process.hrtime.bigint();
    n = tok.encode(text, { add_special_tokens: false }).length;
    ts.push(Number(process.hrtime.bigint() - t0) * 1e-9);
  }
  report("tfjs", n, ts);
}
{ // Rust tokenizers binding (one call, single thread for one string)
  const { Tokenizer } = require("tokenizers");
  const ts = [];
  let n = 0;
  for (let r = 0; r < reps; r++) {
    const tok = Tokenizer.fromFile(path.join(dir, "tokenizer.json"));
    const t0 = process.hrtime.bigint();
    n = (await tok.encode(text, null, { addSpecialTokens: false })).getIds().length;
    ts.push(Number(process.hrtime.bigint() - t0) * 1e-9);
  }
  report("hf-rust", n, ts);
}
