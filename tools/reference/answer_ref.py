#!/usr/bin/python3
"""answer_ref.py: independent Python reference of vkdraft's answer extraction and scoring
(text/vkd_answer.h documents the rules). Standard library only.

The MATH functions are ported from the power-sampling reference code,
aakaran/reasoning-with-sampling llm_experiments/grader_utils/:
  parse_utils.py     last_boxed_only_string, remove_boxed
  math_normalize.py  normalize_answer and its helpers (Hendrycks MATH _strip_string)
  math_grader.py     _normalize, split_tuple, grade_answer
with the substitutions vkd_answer.h lists and nothing else:
  - sympy.simplify(a - b) == 0   -> rational_equal (exact, fractions.Fraction)
  - pylatexenc latex2text        -> latex_to_text below
  - Unicode \\d, float(), lower() -> ASCII only
  - remove_boxed also takes "\\fbox{"
  - MATH "answer is" fallback, GSM8K rules (not in the reference repo)

Usage:
  answer_ref.py extract KIND TEXT        print the extracted answer
  answer_ref.py grade GIVEN GOLD         print grade_answer(GIVEN, GOLD)
  answer_ref.py jsonl < cases.jsonl      {"kind", "text", "gold", "flags"} per line -> the
                                         fields tests/answer/answer_tool prints
"""
import json
import re
import sys
from fractions import Fraction

BOXED_ONLY = 1

# ---- Python builtins restricted to ASCII (as the C side) ------------------------------------


def ascii_lower(s):
    return "".join(c.lower() if c.isascii() else c for c in s)


def py_float(s):
    """float(s), but non-ASCII characters (other than surrounding whitespace) are invalid."""
    if not s.strip().isascii():
        raise ValueError("non-ASCII number")
    return float(s)


# ---- parse_utils.py -------------------------------------------------------------------------


def remove_boxed(s):
    for left in ("\\boxed{", "\\fbox{"):  # the reference only has "\\boxed{"
        if s is not None and s[: len(left)] == left and s[-1] == "}":
            return s[len(left):-1]
    return None


def last_boxed_only_string(string):
    idx = string.rfind("\\boxed")
    if idx < 0:
        idx = string.rfind("\\fbox")
        if idx < 0:
            return None

    i = idx
    right_brace_idx = None
    num_left_braces_open = 0
    while i < len(string):
        if string[i] == "{":
            num_left_braces_open += 1
        if string[i] == "}":
            num_left_braces_open -= 1
            if num_left_braces_open == 0:
                right_brace_idx = i
                break
        i += 1

    if right_brace_idx is None:
        retval = None
    else:
        retval = string[idx:right_brace_idx + 1]

    return retval


def parse_answer(input_str):
    return remove_boxed(last_boxed_only_string(input_str))


# ---- math_normalize.py ----------------------------------------------------------------------


def normalize_answer(answer):
    if answer is None:
        return None
    answer = answer.strip()
    try:
        # Remove enclosing `\text{}`.
        m = re.search("^\\\\text\\{(?P<text>.+?)\\}$", answer)
        if m is not None:
            answer = m.group("text").strip()
        return _strip_string(answer)
    except Exception:
        return answer


def _fix_fracs(string):
    substrs = string.split("\\frac")
    new_str = substrs[0]
    if len(substrs) > 1:
        substrs = substrs[1:]
        for substr in substrs:
            new_str += "\\frac"
            if substr[0] == "{":
                new_str += substr
            else:
                try:
                    assert len(substr) >= 2
                except AssertionError:
                    return string
                a = substr[0]
                b = substr[1]
                if b != "{":
                    if len(substr) > 2:
                        post_substr = substr[2:]
                        new_str += "{" + a + "}{" + b + "}" + post_substr
                    else:
                        new_str += "{" + a + "}{" + b + "}"
                else:
                    if len(substr) > 2:
                        post_substr = substr[2:]
                        new_str += "{" + a + "}" + b + post_substr
                    else:
                        new_str += "{" + a + "}" + b
    string = new_str
    return string


def _fix_a_slash_b(string):
    if len(string.split("/")) != 2:
        return string
    a = string.split("/")[0]
    b = string.split("/")[1]
    try:
        a = int(a)
        b = int(b)
        assert string == "{}/{}".format(a, b)
        new_string = "\\frac{" + str(a) + "}{" + str(b) + "}"
        return new_string
    except Exception:
        return string


def _remove_right_units(string):
    # "\\text{ " only ever occurs (at least in the val set) when describing units
    if "\\text{ " in string:
        splits = string.split("\\text{ ")
        assert len(splits) == 2
        return splits[0]
    else:
        return string


def _fix_sqrt(string):
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    new_string = splits[0]
    for split in splits[1:]:
        if split[0] != "{":
            a = split[0]
            new_substr = "\\sqrt{" + a + "}" + split[1:]
        else:
            new_substr = "\\sqrt" + split
        new_string += new_substr
    return new_string


def _strip_string(string):
    string = string.replace("\n", "")
    string = string.replace("\\!", "")
    string = string.replace("\\\\", "\\")
    string = string.replace("tfrac", "frac")
    string = string.replace("dfrac", "frac")
    string = string.replace("\\left", "")
    string = string.replace("\\right", "")
    string = string.replace("^{\\circ}", "")
    string = string.replace("^\\circ", "")
    string = string.replace("\\$", "")
    string = _remove_right_units(string)
    string = string.replace("\\%", "")
    string = string.replace("\\%", "")
    string = string.replace(" .", " 0.")
    string = string.replace("{.", "{0.")
    if len(string) == 0:
        return string
    if string[0] == ".":
        string = "0" + string
    if len(string.split("=")) == 2:
        if len(string.split("=")[0]) <= 2:
            string = string.split("=")[1]
    string = _fix_sqrt(string)
    string = string.replace(" ", "")
    string = _fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    string = _fix_a_slash_b(string)
    return string


# ---- latex_to_text (stands in for pylatexenc's LatexNodes2Text().latex_to_text) --------------

SYMBOLS = {
    "alpha": "\u03b1", "beta": "\u03b2", "gamma": "\u03b3", "delta": "\u03b4", "epsilon": "\u03f5",
    "varepsilon": "\u03b5", "zeta": "\u03b6", "eta": "\u03b7", "theta": "\u03b8", "vartheta": "\u03d1",
    "iota": "\u03b9", "kappa": "\u03ba", "lambda": "\u03bb", "mu": "\u03bc", "nu": "\u03bd", "xi": "\u03be",
    "pi": "\u03c0", "rho": "\u03c1", "sigma": "\u03c3", "tau": "\u03c4", "upsilon": "\u03c5", "phi": "\u03d5",
    "varphi": "\u03c6", "chi": "\u03c7", "psi": "\u03c8", "omega": "\u03c9", "Gamma": "\u0393",
    "Delta": "\u0394", "Theta": "\u0398", "Lambda": "\u039b", "Xi": "\u039e", "Pi": "\u03a0",
    "Sigma": "\u03a3", "Upsilon": "\u03a5", "Phi": "\u03a6", "Psi": "\u03a8", "Omega": "\u03a9",
    "infty": "\u221e", "cup": "\u222a", "cap": "\u2229", "cdot": "\u00b7", "times": "\u00d7",
    "div": "\u00f7", "pm": "\u00b1", "mp": "\u2213", "le": "\u2264", "leq": "\u2264", "ge": "\u2265",
    "geq": "\u2265", "ne": "\u2260", "neq": "\u2260", "approx": "\u2248", "circ": "\u2218",
    "dots": "\u2026", "ldots": "\u2026", "cdots": "\u22ef", "in": "\u2208", "to": "\u2192",
    "rightarrow": "\u2192", "angle": "\u2220", "perp": "\u22a5", "parallel": "\u2225",
    "emptyset": "\u2205", "varnothing": "\u2205",
    "left": "", "right": "", "big": "", "Big": "", "bigl": "", "bigr": "", "Bigl": "", "Bigr": "",
    "displaystyle": "", "limits": "", "quad": "  ", "qquad": "    ",
}
WRAPPERS = {
    "text", "textbf", "textit", "textrm", "texttt", "textsf", "textup", "emph", "mathrm", "mathbf",
    "mathit", "mathsf", "mathtt", "mathbb", "mathcal", "mathfrak", "boldsymbol", "operatorname",
    "overline", "underline", "boxed", "fbox", "hbox",
}
FRACS = {"frac", "dfrac", "tfrac", "nicefrac", "cfrac"}
MAX_DEPTH = 200
LATEX_SPACE = " \t\n\r"


class _Latex:
    """Recursive renderer; the depth counter follows the C one exactly (a group and a macro
    each count one level; deeper groups are flattened, deeper macros dropped)."""

    def __init__(self, s):
        self.s, self.i, self.depth, self.out = s, 0, 0, []

    def skip_space(self):
        while self.i < len(self.s) and self.s[self.i] in LATEX_SPACE:
            self.i += 1

    def arg(self):
        self.skip_space()
        if self.i >= len(self.s):
            return
        c = self.s[self.i]
        if c == "{":
            self.i += 1
            self.run(True)
        elif c == "\\":
            self.token()
        elif c == "}":
            return
        else:
            self.out.append(c)
            self.i += 1

    def drop_arg(self):
        keep = len(self.out)
        self.arg()
        del self.out[keep:]

    def macro(self, name):
        if name in FRACS:
            self.arg()
            self.out.append("/")
            self.arg()
        elif name == "sqrt":
            self.skip_space()
            if self.i < len(self.s) and self.s[self.i] == "[":
                close = self.s.find("]", self.i)
                self.i = close + 1 if close >= 0 else len(self.s)
            self.out.append("\u221a(")
            self.arg()
            self.out.append(")")
        elif name in ("mbox", "begin", "end"):
            self.drop_arg()
        elif name in WRAPPERS:
            self.arg()
        elif name in SYMBOLS:
            self.out.append(SYMBOLS[name])
        else:
            self.out.append(name)

    def token(self):
        s = self.s
        i = self.i + 1
        if i >= len(s):
            self.i = i
            return
        if s[i].isascii() and s[i].isalpha():
            a = i
            while i < len(s) and s[i].isascii() and s[i].isalpha():
                i += 1
            self.i = i
            self.skip_space()
            if self.depth > MAX_DEPTH:
                return
            self.depth += 1
            self.macro(s[a:i])
            self.depth -= 1
            return
        c = s[i]
        self.i = i + 1
        if c == "\\":
            self.out.append("\n")
        elif c in ",;: ":
            self.out.append(" ")
        elif c == "!":
            pass
        else:
            self.out.append(c)

    def run(self, in_group):
        s = self.s
        if self.depth > MAX_DEPTH:
            while self.i < len(s):
                c = s[self.i]
                self.i += 1
                if c == "}" and in_group:
                    return
                if c not in "{}$":
                    self.out.append(c)
            return
        self.depth += 1
        while self.i < len(s):
            c = s[self.i]
            if c == "\\":
                self.token()
            elif c == "{":
                self.i += 1
                self.run(True)
            elif c == "}":
                self.i += 1
                if in_group:
                    break
            elif c == "$":
                self.i += 1
            else:
                self.out.append(c)
                self.i += 1
        self.depth -= 1


def latex_to_text(expr):
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    lt = _Latex(expr)
    lt.run(False)
    return "".join(lt.out)


# ---- math_grader.py -------------------------------------------------------------------------

TUPLE_CHARS = "()[]"


def _parse_latex(expr):
    expr = expr.replace("\\tfrac", "\\frac")
    expr = expr.replace("\\dfrac", "\\frac")
    expr = expr.replace("\\frac", " \\frac")  # Play nice with mixed numbers.
    expr = latex_to_text(expr)
    expr = expr.replace("\u221a", "sqrt")
    expr = expr.replace("\u03c0", "pi")
    expr = expr.replace("\u221e", "inf")
    expr = expr.replace("\u222a", "U")
    expr = expr.replace("\u00b7", "*")
    expr = expr.replace("\u00d7", "*")
    return expr.strip()


def _is_float(num):
    try:
        py_float(num)
        return True
    except ValueError:
        return False


def _is_int(x):
    try:
        return abs(x - int(round(x))) <= 1e-7
    except Exception:
        return False


def _is_frac(expr):
    return bool(re.search(r"^-?[0-9]+.?/0*[1-9][0-9]*.?$", expr))


def _str_is_int(x):
    try:
        x = _strip_properly_formatted_commas(x)
        x = py_float(x)
        return abs(x - int(round(x))) <= 1e-7
    except Exception:
        return False


def _str_to_int(x):
    x = x.replace(",", "")
    x = py_float(x)
    return int(x)


def _inject_implicit_mixed_number(step):
    p1 = re.compile("([0-9]) +([0-9])")
    step = p1.sub("\\1+\\2", step)
    return step


def _strip_properly_formatted_commas(expr):
    p1 = re.compile(r"(\d)(,)(\d\d\d)($|\D)", re.ASCII)
    while True:
        next_expr = p1.sub("\\1\\3\\4", expr)
        if next_expr == expr:
            break
        expr = next_expr
    return next_expr


UNITS = ["degree", "cm", "centimeter", "meter", "mile", "second", "minute", "hour", "day", "week",
         "month", "year", "foot", "feet", "inch", "yard"]


def _normalize(expr):
    if expr is None:
        return None
    m = re.search("^\\\\text\\{(?P<text>.+?)\\}$", expr)
    if m is not None:
        expr = m.group("text")
    expr = expr.replace("\\%", "%")
    expr = expr.replace("\\$", "$")
    expr = expr.replace("$", "")
    expr = expr.replace("%", "")
    expr = expr.replace(" or ", " , ")
    expr = expr.replace(" and ", " , ")
    expr = expr.replace("million", "*10^6")
    expr = expr.replace("billion", "*10^9")
    expr = expr.replace("trillion", "*10^12")
    for unit in UNITS:
        expr = re.sub(f"{unit}(es)?(s)? *(\\^[0-9]+)?", "", expr)
    expr = re.sub("\\^ *\\\\circ", "", expr)
    if len(expr) > 0 and expr[0] == "{" and expr[-1] == "}":
        expr = expr[1:-1]
    expr = re.sub(",\\\\! *", "", expr)
    if _is_float(expr) and _is_int(py_float(expr)):
        expr = str(int(round(py_float(expr))))
    if "\\" in expr:
        try:
            expr = _parse_latex(expr)
        except Exception:
            pass
    expr = re.sub("- *", "-", expr)
    expr = _inject_implicit_mixed_number(expr)
    expr = expr.replace(" ", "")
    expr = expr.replace("{", "")
    expr = expr.replace("}", "")
    expr = ascii_lower(expr)
    if _str_is_int(expr):
        expr = str(_str_to_int(expr))
    return expr


DEC = r"([+-]?)([0-9]+\.?[0-9]*|\.[0-9]+)"
RAT_RE = re.compile(DEC + r"(?:/" + DEC + r")?", re.ASCII)
MAX_DIGITS = 1000


def _dec(sign, body):
    if len(body.replace(".", "")) > MAX_DIGITS:
        return None
    ip, _, fp = body.partition(".")
    v = Fraction(int(ip or "0") * 10 ** len(fp) + int(fp or "0"), 10 ** len(fp))
    return -v if sign == "-" else v


def rational_equal(a, b):
    """Stands in for are_equal_under_sympy: both p or p/q with decimal p, q, equal values."""
    vals = []
    for s in (a, b):
        m = RAT_RE.fullmatch(s)
        if not m:
            return False
        num = _dec(m.group(1), m.group(2))
        den = _dec(m.group(3), m.group(4)) if m.group(4) is not None else Fraction(1)
        if num is None or den is None or den == 0:
            return False
        vals.append(num / den)
    return vals[0] == vals[1]


BAD_SUBSTRINGS = ["^{", "^("]
BAD_REGEXES = ["\\^[0-9]+\\^", "\\^[0-9][0-9]+"]


def count_unknown_letters_in_expr(expr):
    expr = expr.replace("sqrt", "")
    expr = expr.replace("frac", "")
    letters_in_expr = set([x for x in expr if x.isascii() and x.isalpha()])
    return len(letters_in_expr)


def should_allow_eval(expr):
    if count_unknown_letters_in_expr(expr) > 2:
        return False
    for bad_string in BAD_SUBSTRINGS:
        if bad_string in expr:
            return False
    for bad_regex in BAD_REGEXES:
        if re.search(bad_regex, expr) is not None:
            return False
    return True


def are_equal_under_sympy(ground_truth_normalized, given_normalized):
    """Stand-in: what sympy would accept when the two sides are the same string or the same
    rational number; nothing else."""
    expr = f"({ground_truth_normalized})-({given_normalized})"
    if not should_allow_eval(expr):
        return False
    return (ground_truth_normalized == given_normalized
            or rational_equal(ground_truth_normalized, given_normalized))


def split_tuple(expr):
    expr = _strip_properly_formatted_commas(expr)
    if len(expr) == 0:
        return []
    if (len(expr) > 2 and expr[0] in TUPLE_CHARS and expr[-1] in TUPLE_CHARS
            and all([ch not in expr[1:-1] for ch in TUPLE_CHARS])):
        elems = [elem.strip() for elem in expr[1:-1].split(",")]
    else:
        elems = [expr]
    return elems


def grade_answer(given_answer, ground_truth):
    if given_answer is None:
        return False
    ground_truth_normalized_mathd = normalize_answer(ground_truth)
    given_answer_normalized_mathd = normalize_answer(given_answer)
    if ground_truth_normalized_mathd == given_answer_normalized_mathd:
        return True
    ground_truth_normalized = _normalize(ground_truth)
    given_normalized = _normalize(given_answer)
    if ground_truth_normalized is None:
        return False
    if ground_truth_normalized == given_normalized:
        return True
    if len(given_normalized) == 0:
        return False
    ground_truth_elems = split_tuple(ground_truth_normalized)
    given_elems = split_tuple(given_normalized)
    if len(ground_truth_elems) > 1 and (
            ground_truth_normalized[0] != given_normalized[0]
            or ground_truth_normalized[-1] != given_normalized[-1]):
        is_correct = False
    elif len(ground_truth_elems) != len(given_elems):
        is_correct = False
    else:
        for ground_truth_elem, given_elem in zip(ground_truth_elems, given_elems):
            if _is_frac(ground_truth_elem) and _is_frac(given_elem):
                is_correct = ground_truth_elem == given_elem
            elif _str_is_int(ground_truth_elem) != _str_is_int(given_elem):
                is_correct = False
            else:
                is_correct = are_equal_under_sympy(ground_truth_elem, given_elem)
            if not is_correct:
                break
    return is_correct


# ---- vkdraft's extraction rules -------------------------------------------------------------

ANSWER_IS = re.compile("answer is", re.IGNORECASE | re.ASCII)
GSM_NUM = re.compile(r"(?:(?<![A-Za-z0-9])-(?=\.?[0-9]))?"
                     r"(?:[0-9]+(?:,[0-9]{3}(?![0-9]))*(?:\.[0-9]+)?|(?<![0-9])\.[0-9]+)", re.ASCII)


def _last_answer_is(text):
    last = None
    for m in ANSWER_IS.finditer(text):
        last = m
    return last


def _gsm_numbers(text, pos, end):
    return [m.group().replace(",", "") for m in GSM_NUM.finditer(text, pos, end)]


def extract_math(text, flags=0):
    r = parse_answer(text)
    if r is not None or flags & BOXED_ONLY:
        return r
    m = _last_answer_is(text)
    if not m:
        return None
    p = m.end()
    while p < len(text) and text[p] in " \t:":
        p += 1
    if text[p:p + 1] == "$":
        a = p
        while a < len(text) and text[a] == "$":
            a += 1
        e = text.find("$", a)
    else:
        a = p
        e = text.find("\n", a)
    seg = text[a:e if e >= 0 else len(text)].strip()
    if seg.endswith("."):
        seg = seg[:-1].strip()
    return seg or None


def extract_gsm8k(text):
    h = text.rfind("####")
    if h >= 0:
        nl = text.find("\n", h)
        nums = _gsm_numbers(text, h + 4, nl if nl >= 0 else len(text))
        if nums:
            return nums[0]
    box = parse_answer(text)
    if box is not None:
        nums = _gsm_numbers(box, 0, len(box))
        if nums:
            return nums[-1]
        if box.strip():
            return box.strip()
    m = _last_answer_is(text)
    if m:
        nums = _gsm_numbers(text, m.end(), len(text))
        if nums:
            return nums[0]
    nums = _gsm_numbers(text, 0, len(text))
    return nums[-1] if nums else None


def kind_from_name(name):
    n = ascii_lower(name or "")
    return "gsm8k" if n == "gsm8k" else "math500" if n in ("math500", "math-500", "math") else "none"


def gold(kind, field):
    if field is None:
        return None
    if kind == "gsm8k":
        h = field.rfind("####")
        r = field[h + 4:].strip().replace(",", "") if h >= 0 else ""
    elif kind == "math500":
        r = field.strip()
    else:
        r = ""
    return r or None


def extract(kind, text, flags=0):
    if text is None:
        return None
    if kind == "gsm8k":
        return extract_gsm8k(text)
    if kind == "math500":
        return extract_math(text, flags)
    return None


def equal(kind, given, gold_answer):
    if given is None or gold_answer is None:
        return False
    if kind == "math500":
        return grade_answer(given, gold_answer)
    if kind != "gsm8k":
        return False
    return rational_equal(given, gold_answer) or given.strip() == gold_answer.strip()


def score(kind, text, gold_field, flags=0):
    return equal(kind, extract(kind, text, flags), gold(kind, gold_field))


def case_fields(case):
    """The fields tests/answer/answer_tool prints for one case."""
    kind = kind_from_name(case.get("kind"))
    text, field, flags = case.get("text"), case.get("gold"), case.get("flags", 0)
    given, g = extract(kind, text, flags), gold(kind, field)
    strip = normalize_answer
    return {
        "kind": kind,
        "boxed": parse_answer(text) if text is not None else None,
        "extract": given,
        "gold": g,
        "strip": strip(given) if given is not None else None,
        "norm": _normalize(given) if given is not None else None,
        "gold_strip": strip(g) if g is not None else None,
        "gold_norm": _normalize(g) if g is not None else None,
        "equal": equal(kind, given, g),
        "score": score(kind, text, field, flags),
    }


def main(argv):
    if len(argv) == 4 and argv[1] == "extract":
        print(extract(kind_from_name(argv[2]), argv[3]))
    elif len(argv) == 4 and argv[1] == "grade":
        print(grade_answer(argv[2], argv[3]))
    elif len(argv) == 2 and argv[1] == "jsonl":
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(case_fields(json.loads(line)), ensure_ascii=False))
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
