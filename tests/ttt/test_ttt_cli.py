"""test_ttt_cli: `vkdraft ttt` end to end (issue 13).

Bad input: every flag error is one clear stderr line naming the flag, a non-zero exit, and
the --out folder is not created (inputs are checked before it is touched): lr <= 0, a bad
LoRA target, a missing --init-adapter, duplicate or non-integer sweep values, conflicting
input flags, --save-adapter with a sweep, an --init-adapter that does not fit the draft
(a tensor's shape; a module TTT does not train);
guide --ttt with a bad value."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import vkd_cli  # noqa: E402
from vkd_cli import SRC, check, run  # noqa: E402


def main():
    fx = os.path.join(SRC, "tests", "models", "fixtures", "dflash")
    tgt, drf = os.path.join(fx, "target", "model"), os.path.join(fx, "draft-b4", "model")
    tmp = tempfile.mkdtemp(prefix="vkd_ttt_cli_")
    out = os.path.join(tmp, "out")
    base = ["ttt", "--target", tgt, "--draft", drf, "--ids", "1,2,3,4,5,6,7", "--out", out]

    def swap(args, flag, value):
        a = list(args)
        if flag in a:
            a[a.index(flag) + 1] = value
        else:
            a += [flag, value]
        return a

    def without(args, flag):
        i = args.index(flag)
        return args[:i] + args[i + 2:]

    bad = [
        (swap(base, "--lr", "0"), "--lr"),
        (swap(base, "--lr", "1e-3,-1e-4"), "--lr"),
        (swap(base, "--lr", "nan"), "--lr"),
        (swap(base, "--lora-targets", "fc,o_proj"), "o_proj"),
        (swap(base, "--lora-targets", "fc,fc"), "fc"),
        (swap(base, "--steps", "10,10"), "--steps"),
        (swap(base, "--steps", "0"), "--steps"),
        (swap(base, "--rank", "2.5"), "--rank"),
        (swap(base, "--optimizer", "adam"), "--optimizer"),
        (swap(base, "--gamma", "0"), "--gamma"),
        (swap(base, "--init-adapter", os.path.join(tmp, "nothing")), "adapter_config.json"),
        (swap(swap(base, "--anchors", "1,2"), "--anchors-per-step", "3"), "--anchors"),
        (swap(base, "--chat", "hello"), "--chat"),
        (without(base, "--ids"), "--dataset"),
        (swap(swap(base, "--lr", "1e-4,1e-3"), "--save-adapter", os.path.join(tmp, "ad")), "--save-adapter"),
        (without(base, "--out"), "--out"),
        (without(base, "--draft"), "--draft"),
    ]
    for args, needle in bad:
        p = run(args, ok=False)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        check(p.returncode != 0, f"{args}: exit 0")
        check(len(lines) == 1 and needle in lines[0], f"{args}: stderr {p.stderr!r} should be one line naming {needle!r}")
        check(not os.path.exists(out), f"{args}: --out was created")

    # a generated pair with the real tokenizer: an --init-adapter that does not fit the draft is
    # refused before --out
    vkd_cli.require_tokenizer()
    ptgt, pdrf = vkd_cli.make_pair(tmp)
    import lora_ref
    import numpy as np
    bad_ad = os.path.join(tmp, "bad_adapter")
    lora_ref.write_adapter(bad_ad, {"fc": (np.zeros((4, 7)), np.zeros((64, 4)))}, 4, 8.0, ["fc"])
    pbase = ["ttt", "--target", ptgt, "--draft", pdrf, "--ids", "1,2,3,4,5,6,7", "--out", out]
    p = run(pbase + ["--init-adapter", bad_ad], ok=False)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    check(p.returncode != 0 and len(lines) == 1 and "--init-adapter" in lines[0] and "fc" in lines[0],
          f"misfit --init-adapter: {p.stderr!r}")
    check(not os.path.exists(out), "misfit --init-adapter created --out")
    # an adapter on a module TTT does not train (o_proj; shapes right): refused naming it
    oad = os.path.join(tmp, "oproj_adapter")
    lora_ref.write_adapter(oad, {"layers.0.self_attn.o_proj": (np.zeros((4, 64)), np.zeros((64, 4)))}, 4, 8.0,
                           ["o_proj"])
    p = run(pbase + ["--init-adapter", oad], ok=False)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    check(p.returncode != 0 and len(lines) == 1 and "o_proj" in lines[0], f"o_proj --init-adapter: {p.stderr!r}")
    check(not os.path.exists(out), "o_proj --init-adapter created --out")

    # guide --ttt: a bad value is one line
    ds = os.path.join(tmp, "ds.jsonl")
    with open(ds, "w") as f:
        f.write('{"question": "q", "answer": "#### 1"}\n')
    g = ["guide", "--target", tgt, "--draft", drf, "--dataset", ds, "--out", out]
    p = run(g + ["--ttt", "maybe"], ok=False)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    check(p.returncode != 0 and len(lines) == 1 and "--ttt" in lines[0], f"guide --ttt maybe: {p.stderr!r}")

    h = run(["ttt", "--help"]).stdout
    for flag in ("--steps", "--lr", "--optimizer", "--rank", "--lora-alpha", "--lora-targets", "--anchors-per-step",
                 "--anchors", "--gamma", "--init-adapter", "--save-adapter", "--json", "exp(-(k-1)/gamma)"):
        check(flag in h, f"--help does not mention {flag}")
    print(f"test_ttt_cli: {vkd_cli.failures} failure(s)", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if vkd_cli.failures else 0


if __name__ == "__main__":
    sys.exit(main())
