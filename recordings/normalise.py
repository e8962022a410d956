"""The one text normaliser of QA findings, debtor-side triggers and transcript search.

Pure, no database. What it does to a text, in this order:

1. Traditional characters become simplified (OpenCC's ``t2s`` configuration, the maintained
   ``opencc`` package from PyPI: phrase-aware, so 電話 → 电话, 還錢 → 还钱, 乾淨 → 干净).
2. NFKC: full-width letters, digits and punctuation become half-width (１２３ → 123, ＡＢ → ab);
   then lower case.
3. Chinese numerals become digits: a run of at least two numeral characters (零〇一二两三四五
   六七八九十百千万亿) is read as a number with ``cn2an`` when it has a place (一万二千 → 12000,
   两千五 → 2500, 三十 → 30), or digit by digit when it has none (一三八零零 → 13800, as phone
   numbers and years are said). A single numeral stays as it is (一点, 一下, 三点: too many
   words start with one), and so does a weekday's (周五两点 is not 52), so 一万二千 and 12000
   match each other, and so do 十二点 and 12点.

`normalise_map` keeps, for every character of the result, the span of the source it came
from, so a match in normalised text can be shown, and timed, in the original words.
"""
from __future__ import annotations

import functools
import re
import unicodedata

#: Chinese numeral characters (digits, and the places that make a run a number).
CN_DIGITS = "零〇一二两三四五六七八九"
CN_PLACES = "十百千万亿"
_DIGIT_OF = {c: str(i) for i, c in enumerate("零一二三四五六七八九")} | {"〇": "0", "两": "2"}
#: Not after 周 / 星期 / 礼拜: 周五两点 is Friday at two, not 52.
_NUMERAL_RUN = re.compile(f"(?<![周期拜])[{CN_DIGITS}{CN_PLACES}]{{2,}}")


@functools.lru_cache(maxsize=1)
def _opencc():
    import opencc
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional → simplified. When OpenCC's phrase table would change the length (it
    practically never does for t2s), each character is converted on its own instead, so that
    positions keep meaning the same characters."""
    if not text or text.isascii():
        return text
    converted = _opencc().convert(text)
    if len(converted) == len(text):
        return converted
    return "".join(_opencc().convert(c) or c for c in text)


def cn_numeral(run: str) -> str | None:
    """A run of Chinese numerals as digits, or None when it is not a number (万一)."""
    if not any(c in CN_PLACES for c in run):
        return "".join(_DIGIT_OF[c] for c in run)
    import cn2an
    try:
        value = cn2an.cn2an(run, "normal")
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    return str(value)


def _fold(ch: str) -> str:
    return unicodedata.normalize("NFKC", ch).lower()


def normalise_map(text: str, *, keep_spaces: bool = False) -> tuple[str, list[tuple[int, int]]]:
    """The normalised text (letters, digits and Chinese characters only: spaces and
    punctuation dropped, unless `keep_spaces`, which keeps one space for any run of them) and,
    for each of its characters, the [start, end) span of `text` it came from."""
    simple = to_simplified(text)
    chars: list[str] = []
    spans: list[tuple[int, int]] = []
    folded = simple.lower() if unicodedata.is_normalized("NFKC", simple) else None
    if folded is not None and len(folded) == len(simple):  # the usual case: one character each
        for i, c in enumerate(folded):
            if c.isalnum():
                chars.append(c)
                spans.append((i, i + 1))
            elif keep_spaces and chars and chars[-1] != " ":
                chars.append(" ")
                spans.append((i, i + 1))
    else:
        for i, ch in enumerate(simple):
            for c in _fold(ch):
                if c.isalnum():
                    chars.append(c)
                    spans.append((i, i + 1))
                elif keep_spaces and chars and chars[-1] != " ":
                    chars.append(" ")
                    spans.append((i, i + 1))
    if keep_spaces:
        while chars and chars[-1] == " ":
            chars.pop()
            spans.pop()
    out = "".join(chars)
    if not _NUMERAL_RUN.search(out):
        return out, spans
    result: list[str] = []
    result_spans: list[tuple[int, int]] = []
    at = 0
    for m in _NUMERAL_RUN.finditer(out):
        result.extend(out[at:m.start()])
        result_spans.extend(spans[at:m.start()])
        digits = cn_numeral(m.group())
        if digits is None:
            result.extend(m.group())
            result_spans.extend(spans[m.start():m.end()])
        else:
            whole = (spans[m.start()][0], spans[m.end() - 1][1])
            if len(digits) == m.end() - m.start():  # digit by digit: each keeps its own character
                result_spans.extend(spans[m.start():m.end()])
            else:
                result_spans.extend([whole] * len(digits))
            result.extend(digits)
        at = m.end()
    result.extend(out[at:])
    result_spans.extend(spans[at:])
    return "".join(result), result_spans


def normalise(text: str, *, keep_spaces: bool = False) -> str:
    """`normalise_map` without the spans."""
    return normalise_map(text, keep_spaces=keep_spaces)[0]


def simplify(text: str) -> str:
    """Simplified characters, NFKC and lower case, Chinese numerals as digits, but spaces and
    punctuation kept where they were (what search tokenises and the time reader reads)."""
    simple = "".join(_fold(c) for c in to_simplified(text))

    def number(m: re.Match) -> str:
        return cn_numeral(m.group()) or m.group()
    return _NUMERAL_RUN.sub(number, simple)
