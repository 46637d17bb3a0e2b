"""The sentiment tests' tiny data: rated sentences and a VADER-format lexicon."""

ADJECTIVES = {-3.5: "dreadful", -1.2: "dull", 0.0: "plain", 0.2: "okay", 1.1: "nice",
              2.6: "wonderful"}
# VADER's format (token, mean, sd, ten ratings; CRLF). "terrific" never occurs in the tiny
# ratings, so a tokenizer learned from them cuts it into several pieces; ":D" and ":d" merge.
TINY_LEXICON = {"wonderful": 2.8, "dreadful": -3.2, "dull": -1.6, "nice": 1.8, "terrific": 3.2,
                ":D": 2.0, ":d": 1.0}


def rows(n: int = 120) -> list[tuple[int, float, str]]:
    """Distinct sentences whose words follow their rating, so a classifier can learn them."""
    scores = list(ADJECTIVES)
    out = []
    for i in range(n):
        score = scores[i % len(scores)]
        out.append((i + 1, score, f"a {ADJECTIVES[score]} film , take {i} &amp; more"))
    return out


def lexicon_bytes(entries: dict[str, float]) -> bytes:
    return "".join(f"{token}\t{mean}\t0.5\t[{', '.join(['1'] * 10)}]\r\n"
                   for token, mean in entries.items()).encode("utf-8")
