"""Deterministic generator of a labelled sample corpus with deliberately bad rows.

    lakebert sample-data --out data/sample --docs 3000
    python -m spark_jobs.sample_data --out data/sample --docs 3000

Writes JSON Lines files (`text`, `label`, `id`) for four topics, about 400 characters per
document, plus the bad records real data has: malformed JSON, empty and null text, a missing
label, a NUL byte, invalid UTF-8 bytes, HTML, mojibake, symbol spam, repeated characters, too
short texts, exact and near duplicates across files and one text under two labels. The same
arguments always give the same bytes. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from spark_jobs.registry import Stage

STAGE = "sample-data"
LABELS = ("business", "health", "sports", "technology")

TOPIC_WORDS = {
    "business": ["market", "shares", "investors", "quarterly earnings", "the central bank", "inflation",
                 "the merger", "revenue", "the retailer", "bond yields", "the startup", "profit margins",
                 "the board", "supply chains", "interest rates", "the stock exchange", "dividends", "exports"],
    "health": ["the clinic", "patients", "the vaccine", "researchers", "blood pressure", "the hospital",
               "nutrition", "the trial", "symptoms", "doctors", "sleep quality", "the therapy",
               "mental health", "the outbreak", "nurses", "chronic pain", "the diagnosis", "exercise"],
    "sports": ["the striker", "the coach", "the championship", "fans", "the goalkeeper", "the league",
               "the final whistle", "the season", "the stadium", "the midfielder", "the tournament",
               "the referee", "the marathon", "the title race", "the transfer window", "the relay team"],
    "technology": ["the chip", "developers", "the software update", "the smartphone", "cloud servers",
                   "the algorithm", "the startup's app", "encryption", "the data center", "the browser",
                   "machine learning", "the open source project", "the battery", "the network", "robots"],
}
VERBS = ["announced", "reported", "improved", "questioned", "expected", "described", "changed", "reviewed",
         "supported", "delayed", "measured", "welcomed", "criticised", "outlined", "tested"]
FILLER = ["on Monday", "this week", "after months of debate", "according to officials", "in a statement",
          "despite early doubts", "for the first time", "across the region", "later that evening",
          "as expected", "in recent years", "by a wide margin", "without much notice"]
OPENERS = ["Observers said", "Local reports suggest", "In a surprise move,", "Analysts noted that",
           "Early on,", "It emerged that", "Sources confirmed"]


def _sentence(rng: random.Random, label: str) -> str:
    words = TOPIC_WORDS[label]
    subject, obj = rng.sample(words, 2)
    parts = [rng.choice(OPENERS), subject, rng.choice(VERBS), obj, rng.choice(FILLER)]
    if rng.random() < 0.5:
        parts += ["while", rng.choice(words), rng.choice(VERBS), "the plan"]
    return " ".join(parts) + "."


def make_document(rng: random.Random, label: str) -> str:
    return " ".join(_sentence(rng, label) for _ in range(rng.randint(3, 6)))


def generate(n_docs: int = 3000, seed: int = 13, bad_rows: bool = True) -> dict[str, list[bytes]]:
    """Return {file name: lines as bytes}. About 5% of the lines are deliberately bad."""
    rng = random.Random(seed)
    weights = [0.35, 0.2, 0.25, 0.2]  # an uneven class balance, as real data has
    docs = []
    for i in range(n_docs):
        label = rng.choices(LABELS, weights)[0]
        docs.append({"id": f"doc-{i:07d}", "text": make_document(rng, label), "label": label})

    def line(obj) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")

    main = [line(d) for d in docs]
    extra: list[bytes] = []
    if bad_rows:
        n_bad = max(1, n_docs // 100)
        for k in range(n_bad):
            src = docs[rng.randrange(n_docs)]
            variant = k % 12
            new_id = f"bad-{k:05d}"
            if variant == 0:
                extra.append(b'{"id": "' + new_id.encode() + b'", "text": "unterminated')
            elif variant == 1:
                extra.append(line({"id": new_id, "text": "", "label": src["label"]}))
            elif variant == 2:
                extra.append(line({"id": new_id, "text": None, "label": src["label"]}))
            elif variant == 3:
                extra.append(line({"id": new_id, "text": src["text"][:200] + " more"}))  # no label
            elif variant == 4:
                extra.append(line({"id": new_id, "text": "binary\u0000junk " + src["text"][:50], "label": src["label"]}))
            elif variant == 5:
                extra.append(b'{"id": "' + new_id.encode() + b'", "text": "caf\xe9 latin-1 bytes", "label": "business"}')
            elif variant == 6:  # same text as an earlier document: an exact duplicate for clean
                extra.append(line({"id": new_id, "text": src["text"], "label": src["label"]}))
            elif variant == 7:  # same text after HTML stripping and whitespace collapsing
                html = "<p>" + src["text"].replace(". ", ".</p>\n<p>  ", 1) + "</p>"
                extra.append(line({"id": new_id, "text": html, "label": src["label"]}))
            elif variant == 8:  # mojibake: UTF-8 read as cp1252
                text = "Prices rose to £5 and the café’s ‘best’ offer. " + make_document(rng, "business")
                extra.append(line({"id": new_id, "text": text.encode("utf-8").decode("cp1252", "replace"),
                                   "label": "business"}))
            elif variant == 9:
                extra.append(line({"id": new_id, "text": "!!!!" * 30 + " $$$ ###", "label": src["label"]}))
            elif variant == 10:
                extra.append(line({"id": new_id, "text": "ok", "label": src["label"]}))
            else:  # the same text under another label
                other = LABELS[(LABELS.index(src["label"]) + 1) % len(LABELS)]
                extra.append(line({"id": new_id, "text": src["text"], "label": other}))
        for k in range(max(1, n_docs // 200)):  # near duplicates: one word changed
            src = docs[rng.randrange(n_docs)]
            words = src["text"].split(" ")
            words[rng.randrange(len(words))] = "reportedly"
            extra.append(line({"id": f"near-{k:05d}", "text": " ".join(words), "label": src["label"]}))
        extra.append(line({"id": "html-entities", "label": "technology",
                           "text": "<div><b>Developers</b> &amp; researchers said the chip&#39;s "
                                   "new battery &lt;really&gt; improved the network.</div><script>x()</script>"}))
    half = len(main) // 2
    return {"part-000.jsonl": main[:half], "part-001.jsonl": main[half:] + extra}


def write_sample(out_dir: str | Path, n_docs: int = 3000, seed: int = 13, bad_rows: bool = True) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, lines in generate(n_docs, seed, bad_rows).items():
        (out / name).write_bytes(b"\n".join(lines) + b"\n")
    return out


STAGE_RECORD = Stage(name=STAGE, description="write the deterministic sample corpus")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"lakebert {STAGE}", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/sample")
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--no-bad-rows", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the JSON summary as the last line of stdout")
    args = parser.parse_args(argv)
    out = write_sample(args.out, args.docs, args.seed, not args.no_bad_rows)
    print(f"lakebert {STAGE}: wrote {args.docs:,} documents to {out}")
    if args.json:
        print(json.dumps({"stage": STAGE, "out": str(out), "docs": args.docs, "seed": args.seed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
