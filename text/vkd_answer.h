/* vkd_answer.h: final-answer extraction and scoring for GSM8K and MATH-500.
 *
 * MATH-500 follows the grader of the power-sampling reference code (aakaran/
 * reasoning-with-sampling, llm_experiments/grader_utils/): parse_utils.parse_answer picks the
 * model's answer, math_grader.grade_answer(given, gold) decides. Ported exactly:
 *   - last_boxed_only_string: the LAST "\boxed" in the text (only when the text has none, the
 *     last "\fbox"), then the span up to the first '}' that brings the brace count back to 0;
 *     an unbalanced last box is no answer (no fallback to an earlier box);
 *   - math_normalize.normalize_answer (Hendrycks MATH _strip_string): enclosing \text{},
 *     newlines, \!, "\\" -> "\", tfrac/dfrac -> frac, \left \right, ^{\circ} ^\circ, \$,
 *     units after "\text{ ", \%, " ." -> " 0.", "{." -> "{0.", leading '.', "k = " prefix
 *     (one '=' and at most 2 characters before it), \sqrt3 -> \sqrt{3}, spaces, \frac12 ->
 *     \frac{1}{2}, "0.5" -> \frac{1}{2}, "a/b" -> \frac{a}{b} for canonical integers, with the
 *     original's exception paths (a failing helper returns the input unchanged);
 *   - math_grader._normalize: \text{} removal, \% \$ $ %, " or "/" and " -> " , ",
 *     million/billion/trillion, the unit words (degree cm ... yard, with es/s/^n), ^\circ,
 *     one pair of outer braces, ",\!", integer-valued floats -> integers, "- " -> "-", mixed
 *     numbers "7 3/4" -> "7+3/4", spaces and braces removed, lower case, integer canon;
 *   - grade_answer: equal mathd forms, or equal _normalize forms, or element-wise over tuples
 *     and intervals "(a,b)" "[a,b)" (same brackets, same count; unreduced fractions a/b must
 *     match as strings; an integer never equals a non-integer).
 * Not ported, replaced by documented rules (so a few answers the reference accepts are
 * scored wrong here; the other way round only for \fbox, the fallback below and malformed
 * LaTeX):
 *   - sympy.simplify(gold - given) == 0 (are_equal_under_sympy, after its should_allow_eval
 *     filter, which is ported) becomes: the two elements are the same string, or both are
 *     plain numbers or p/q with decimal p, q of the same exact value ("0.5" == "1/2",
 *     "-.25" == "-1/4", at most 1000 digits each); any other expression (sqrt, pi,
 *     variables) must match as a normalised string, so e.g. "\sqrt{8}" != "2\sqrt{2}";
 *   - pylatexenc's latex2text (in _parse_latex) becomes a small LaTeX-to-text pass: \frac{a}{b}
 *     -> a/b, \sqrt[n]{x} -> sqrt(x), \pi -> pi, \infty -> inf, \cup -> U, \cdot \times -> *,
 *     Greek letters and common symbols -> their Unicode characters, font/text macros
 *     (\text \mathrm \mathbf \operatorname \boxed ...) -> their argument, \mbox{..} -> "",
 *     \left \right \begin{..} \end{..} -> "", "\\" -> newline, \, \; \: "\ " -> space,
 *     \quad -> two spaces, \{ \} \% \$ \& \# \_ -> the character, groups {..} -> their
 *     content, other macros -> their name without the backslash (pylatexenc drops unknown
 *     macros, which would make \alpha-like unknowns all equal); where pylatexenc fails on
 *     unbalanced braces and the reference keeps the unparsed string, this pass still renders;
 *   - Python's Unicode-aware str.lower(), \d, float() and isalpha() (should_allow_eval's
 *     letter count) are ASCII-only here;
 *   - remove_boxed only accepts "\boxed{": the reference scores a "\fbox{x}" answer as no
 *     answer; here its content is the answer.
 * Beyond the reference (off with VKD_ANSWER_BOXED_ONLY): when the text has no usable box,
 * the answer is what follows the last "answer is" (case-insensitive; skipping spaces and ':';
 * a $...$ span if one starts there, else up to the end of the line, without a final '.').
 *
 * Checked against the real grader (sympy 1.11, pylatexenc 2.10) on 2,500 pairs of MATH-500
 * gold answers (each against itself, three others, and a \dfrac/no-space variant): the same
 * verdict on every pair (tests/answer/check_answer.py runs the Python twin of these rules).
 *
 * GSM8K (as lm-eval's strict "####" then flexible last-number match, with \boxed{} and
 * "answer is" in between): gold = the text after the last "####", trimmed, commas removed.
 * The model's answer is the first number on the line of the last "####", else the last
 * number inside the last \boxed{} (its whole content when it holds no number), else the
 * first number after the last "answer is", else the last number in the text. A number is
 * -?d+(,ddd)*(.d+)? or -?.d+ ('-' only when not preceded by a letter or digit; "+5" reads
 * as 5), commas removed. Answers are equal when both are decimal numbers of the same exact
 * value ("18.00" == "18"), else when the trimmed strings are equal.
 *
 * Strings returned are malloc'd (free them); NULL means no answer (or out of memory). Every
 * function accepts any bytes (invalid UTF-8, unbalanced braces, NUL-free text of any size);
 * time grows linearly with the input (about 20 ms per MiB per call measured; LaTeX nesting
 * deeper than 200 is flattened, numbers over 1000 digits are not compared as numbers).
 */
#ifndef VKD_ANSWER_H
#define VKD_ANSWER_H

#include <stdbool.h>

typedef enum vkd_answer_kind {
    VKD_ANSWER_NONE = 0,  /* unknown dataset: nothing is scored */
    VKD_ANSWER_GSM8K,
    VKD_ANSWER_MATH,      /* MATH-500 (and Hendrycks MATH answers in general) */
} vkd_answer_kind;

/* Flags for vkd_answer_extract / vkd_answer_score; 0 is the default described above. */
enum {
    VKD_ANSWER_BOXED_ONLY = 1u << 0,  /* MATH: no "answer is" fallback (the reference's rule) */
};

/* "gsm8k" -> GSM8K; "math500", "math-500", "math" -> MATH (case-insensitive, as the dataset
 * presets of loaders/dataset.h name them); anything else or NULL -> VKD_ANSWER_NONE. */
vkd_answer_kind vkd_answer_kind_from_name(const char *name);
const char *vkd_answer_kind_name(vkd_answer_kind kind); /* "gsm8k", "math500", "none" */

/* The gold answer from a dataset's answer field (GSM8K: after "####"; MATH: the field,
 * trimmed). NULL when the field has none or it is blank. */
char *vkd_answer_gold(vkd_answer_kind kind, const char *field);

/* The model's final answer in generated text, as described above. NULL when none. */
char *vkd_answer_extract(vkd_answer_kind kind, const char *text, unsigned flags);

/* Whether an extracted answer equals a gold answer (both as returned above). false when
 * either is NULL. */
bool vkd_answer_equal(vkd_answer_kind kind, const char *given, const char *gold);

/* extract + gold + equal in one call: whether the text answers the dataset field. */
bool vkd_answer_score(vkd_answer_kind kind, const char *text, const char *gold_field, unsigned flags);

/* The building blocks of the MATH grader, named after the reference's functions. */
char *vkd_answer_last_boxed(const char *text);     /* content of the last \boxed{}/\fbox{} */
char *vkd_answer_strip_string(const char *answer); /* math_normalize.normalize_answer */
char *vkd_answer_normalize(const char *answer);    /* math_grader._normalize */
bool vkd_answer_math_equal(const char *given, const char *gold); /* math_grader.grade_answer */

#endif
