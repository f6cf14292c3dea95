#!/usr/bin/env bash
# demo-corpus.sh OUT_DIR: the public-domain English text the demo pair is trained on, taken
# from Debian packages (installed here when missing), one plain-text file per source:
#   OUT_DIR/austen.txt  Jane Austen's six novels (r-cran-janeaustenr; the novels are in the
#                       public domain, the R package is MIT)
#   OUT_DIR/kjv.txt     the King James Bible (bible-kjv-text, read with bible-kjv's `bible`;
#                       the 1611 text is in the public domain)
# GCIDE (dict-gcide) is not used: it is GPL-licensed, and weights trained on it would carry
# that question with them.
set -euo pipefail
out=${1:?usage: tools/demo-corpus.sh OUT_DIR}
need=()
command -v Rscript >/dev/null && [ -d /usr/lib/R/site-library/janeaustenr ] || need+=(r-cran-janeaustenr)
command -v bible >/dev/null || need+=(bible-kjv bible-kjv-text)
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
fi
mkdir -p "$out"
Rscript -e 'library(janeaustenr); writeLines(austen_books()$text, commandArgs(TRUE)[1])' \
    "$out/austen.txt.tmp"
mv "$out/austen.txt.tmp" "$out/austen.txt"
# one verse a line without its number ("  1 In the beginning ..." -> "In the beginning ..."),
# chapter headings dropped
bible -l0 "Gen1:1-Rev22:21" | sed -n 's/^ *[0-9][0-9]* //p' > "$out/kjv.txt.tmp"
mv "$out/kjv.txt.tmp" "$out/kjv.txt"
wc -c "$out"/austen.txt "$out"/kjv.txt
