"""Findings: what the QA rule sets find in a transcript. Pure: no database, no clock.

A rule set is a versioned YAML file (``recordings/rules/zh.yaml``, ``en.yaml``) of rules. A
rule has an id, a category, a severity, the leg it applies to (``agent``, ``debtor`` or
``any``) and one of three kinds:

- ``phrase`` (the default): any of its patterns said on its leg is a finding, unless an
  exclusion is said in the same sentence, and only inside its position window if it has one.
  A phrase rule with a ``trigger:`` is a debtor-side trigger (``recordings.triggers``).
- ``must_say``: a finding when none of its patterns is said inside its window.
- ``order``: a finding when a ``then`` pattern is said before any ``first`` pattern.

Patterns: ``literal``, ``parts`` (in order, at most ``max_gap`` characters apart — words in
English), ``regex``, ``pinyin`` (homophones: every reading of every character, no tones) and
``fuzzy`` (rapidfuzz, ``threshold`` 0-100). Text is normalised before matching by
``recordings.normalise`` (the normaliser search uses too): OpenCC traditional to simplified,
NFKC (full-width to half-width), lower case, Chinese numerals as digits (一万二千 = 12000), and
for Chinese every space and punctuation mark removed (English keeps word boundaries).

A hit counts as ``confirmed`` only when it is literal, gapped or regex **and** its words were
recognised with at least the rule set's ``min_conf``; pinyin-only and fuzzy hits, and
low-confidence ones, go to ``review``.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from recordings.normalise import normalise as _normalise_text
from recordings.normalise import normalise_map, simplify
from recordings.transcript import LEGS, Transcript, Utterance, join_words

RULES_DIR = Path(__file__).resolve().parent / "rules"

SEVERITIES = ("low", "medium", "high", "critical")
RULE_LEGS = ("agent", "debtor", "any")
KINDS = ("phrase", "must_say", "order")
PATTERN_KINDS = ("literal", "parts", "regex", "pinyin", "fuzzy")
#: Match types a finding can carry; the first three can be confirmed automatically.
STRONG = ("literal", "parts", "regex")
MATCH_TYPES = STRONG + ("pinyin", "fuzzy", "absent", "order")
STATUSES = ("confirmed", "review")

#: Agent-side violations, must-say items, and debtor-side triggers (see ../shared/DOMAIN.md).
CATEGORIES = (
    "threat", "insult", "impersonation", "false_legal", "disclosure", "unauthorised_promise",
    "illegal_funding", "harassment", "rude_service", "must_say", "order",
    "complaint", "dispute", "fraud_claim", "deceased", "imprisoned", "hardship", "wrong_party",
    "third_party", "call_time",
)
TRIGGER_KEYS = ("case_status", "stop_number", "invalid_number", "third_party", "appointment")

DEFAULT_MIN_CONF = 0.6
DEFAULT_MAX_GAP = 8
DEFAULT_THRESHOLD = 85.0
#: A pinyin-only hit is a homophone, not what the recogniser wrote: its confidence is scaled.
PINYIN_FACTOR = 0.9


class RuleError(ValueError):
    """A rule file that cannot be used; the message names the file, the rule and the field."""

    def __init__(self, source: str, message: str, rule_id: str | None = None, field: str | None = None):
        self.source, self.rule_id, self.field = source, rule_id, field
        where = source
        if rule_id is not None:
            where += f", rule {rule_id!r}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")


# ── Normalisation ─────────────────────────────────────────────────────────────────────────

# One normaliser for findings, triggers and search (recordings/normalise.py): OpenCC's
# traditional -> simplified, NFKC (full width -> half width), lower case, Chinese numerals as
# digits (一万二千 -> 12000).

def _is_han(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def normalise(text: str, language: str = "zh") -> str:
    """The text as rules match it: Chinese without spaces or punctuation; English as lower-case
    words separated by one space."""
    if language.startswith("zh"):
        return _normalise_text(text)
    return " ".join(_words_en(text))


def _words_en(text: str) -> list[str]:
    text = simplify(text).replace("'", "").replace("\u2019", "")
    return re.findall(r"[^\W_]+", text)


def _units_of(text: str, language: str) -> list[str]:
    """A phrase split into matching units: characters in Chinese, words in English."""
    if language.startswith("zh"):
        return list(normalise(text, language))
    return _words_en(text)


@functools.lru_cache(maxsize=20000)
def readings(unit: str) -> frozenset[str]:
    """Every toneless pinyin reading of a character (all readings of heteronyms: 还 -> hai,
    huan, ...); other characters read as themselves."""
    if len(unit) == 1 and _is_han(unit):
        from pypinyin import Style, pinyin
        return frozenset(r for group in pinyin(unit, style=Style.NORMAL, heteronym=True) for r in group)
    return frozenset((unit,))


# ── Rules ─────────────────────────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class Pattern:
    kind: str  # literal, parts, regex, pinyin, fuzzy
    text: str  # the pattern as written (parts joined with " … ")
    units: tuple[tuple[str, ...], ...]  # normalised units of each part (one part unless kind == parts)
    max_gap: int = DEFAULT_MAX_GAP
    threshold: float = DEFAULT_THRESHOLD
    homophones: bool = False  # parts: also match each part by pinyin
    regex: re.Pattern | None = None


@dataclass(frozen=True)
class Window:
    """Where a rule looks: the leg's first or last N sentences, or the first S seconds."""

    first_sentences: int | None = None
    last_sentences: int | None = None
    first_seconds: float | None = None

    def admits(self, leg_index: int, leg_count: int, start: float) -> bool:
        if self.first_sentences is not None and leg_index >= self.first_sentences:
            return False
        if self.last_sentences is not None and leg_index < leg_count - self.last_sentences:
            return False
        if self.first_seconds is not None and start >= self.first_seconds:
            return False
        return True

    def describe(self) -> str:
        parts = []
        if self.first_sentences is not None:
            parts.append(f"first {self.first_sentences} sentences")
        if self.last_sentences is not None:
            parts.append(f"last {self.last_sentences} sentences")
        if self.first_seconds is not None:
            parts.append(f"first {self.first_seconds:g} s")
        return ", ".join(parts) or "whole call"


@dataclass(frozen=True)
class Trigger:
    """What a debtor-side trigger proposes to a supervisor."""

    case_status: str | None = None
    stop_number: bool = False
    invalid_number: bool = False
    third_party: bool = False
    appointment: bool = False


@dataclass(frozen=True)
class After:
    """A condition on what was said earlier in the call (both legs in order of time): the
    rule's hits count only after one of `patterns`, or a finding of one of `rules`, was said
    on `leg` — and not once one of `until` was said there after it."""

    leg: str  # agent, debtor or any: whose words set the condition
    patterns: tuple[Pattern, ...] = ()
    rules: tuple[str, ...] = ()  # ids of phrase rules of the same rule set
    until: tuple[Pattern, ...] = ()
    within_seconds: float | None = None  # only this long after the condition was said

    def describe(self) -> str:
        said = [*self.rules, *(p.text for p in self.patterns)]
        return f"after the {self.leg if self.leg != 'any' else 'call'} said: {', '.join(said)}"


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    severity: str
    leg: str
    kind: str = "phrase"
    patterns: tuple[Pattern, ...] = ()
    exclude: tuple[Pattern, ...] = ()
    exclude_within: int | None = None  # units between an exclusion and the hit; None: same sentence
    window: Window | None = None
    first: tuple[Pattern, ...] = ()  # order rules: what must come first ...
    then: tuple[Pattern, ...] = ()  # ... before any of these
    trigger: Trigger | None = None
    min_conf: float | None = None
    description: str = ""
    after: After | None = None


@dataclass(frozen=True)
class RuleSet:
    version: str
    language: str
    rules: tuple[Rule, ...]
    min_conf: float = DEFAULT_MIN_CONF
    source: str = "<rules>"
    name: str = ""

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


_RULE_KEYS = {"id", "category", "severity", "leg", "kind", "patterns", "exclude", "exclude_within",
              "window", "first", "then", "trigger", "min_conf", "description", "after"}
_AFTER_KEYS = {"leg", "patterns", "rules", "until", "within_seconds"}
#: Whose earlier words an `after:` condition reads when it does not say: the other party's.
_OTHER_LEG = {"agent": "debtor", "debtor": "agent", "any": "any"}
_PATTERN_OPTIONS = {"max_gap", "threshold", "homophones"}


def _check_number(value, source, rule_id, fld, lo, hi, integer=False):
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise RuleError(source, f"must be {kind} from {lo} to {hi}, got {value!r}", rule_id, fld)
    return value


def _parse_pattern(raw, language: str, source: str, rule_id: str, fld: str) -> Pattern:
    if isinstance(raw, str):
        raw = {"literal": raw}
    if not isinstance(raw, Mapping):
        raise RuleError(source, f"a pattern is a phrase or a mapping with one of {', '.join(PATTERN_KINDS)}",
                        rule_id, fld)
    kinds = [k for k in raw if k in PATTERN_KINDS]
    unknown = [k for k in raw if k not in PATTERN_KINDS and k not in _PATTERN_OPTIONS]
    if unknown:
        raise RuleError(source, f"unknown key {unknown[0]!r} (pattern keys: {', '.join(PATTERN_KINDS)}; "
                        f"options: {', '.join(sorted(_PATTERN_OPTIONS))})", rule_id, f"{fld}.{unknown[0]}")
    if len(kinds) != 1:
        raise RuleError(source, f"a pattern needs exactly one of {', '.join(PATTERN_KINDS)}, got {kinds or 'none'}",
                        rule_id, fld)
    kind = kinds[0]
    value = raw[kind]
    max_gap = _check_number(raw.get("max_gap", DEFAULT_MAX_GAP), source, rule_id, f"{fld}.max_gap", 0, 200, True)
    threshold = _check_number(raw.get("threshold", DEFAULT_THRESHOLD), source, rule_id, f"{fld}.threshold",
                              50, 100)
    homophones = raw.get("homophones", False)
    if not isinstance(homophones, bool):
        raise RuleError(source, f"must be true or false, got {homophones!r}", rule_id, f"{fld}.homophones")
    if "max_gap" in raw and kind != "parts":
        raise RuleError(source, "max_gap applies to parts patterns only", rule_id, f"{fld}.max_gap")
    if "threshold" in raw and kind != "fuzzy":
        raise RuleError(source, "threshold applies to fuzzy patterns only", rule_id, f"{fld}.threshold")
    if "homophones" in raw and kind != "parts":
        raise RuleError(source, "homophones applies to parts patterns only (use a pinyin pattern)",
                        rule_id, f"{fld}.homophones")
    if (kind == "pinyin" or homophones) and not language.startswith("zh"):
        raise RuleError(source, f"pinyin matching needs a Chinese rule set (language is {language!r})",
                        rule_id, f"{fld}.{kind}")
    if kind == "parts":
        if not isinstance(value, list) or len(value) < 2 or not all(isinstance(p, str) and p.strip() for p in value):
            raise RuleError(source, "parts is a list of at least two phrases, said in this order", rule_id,
                            f"{fld}.parts")
        units = tuple(tuple(_units_of(p, language)) for p in value)
        if not all(units):
            raise RuleError(source, "a part is empty once spaces and punctuation are removed", rule_id,
                            f"{fld}.parts")
        return Pattern("parts", " … ".join(value), units, max_gap=max_gap, homophones=homophones)
    if not isinstance(value, str) or not value.strip():
        raise RuleError(source, "must be a non-empty string", rule_id, f"{fld}.{kind}")
    if kind == "regex":
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise RuleError(source, f"not a valid regular expression: {exc}", rule_id, f"{fld}.regex") from None
        if compiled.match(""):
            raise RuleError(source, "the regular expression matches the empty string", rule_id, f"{fld}.regex")
        return Pattern("regex", value, (), regex=compiled)
    units = tuple(_units_of(value, language))
    if not units:
        raise RuleError(source, "is empty once spaces and punctuation are removed", rule_id, f"{fld}.{kind}")
    if kind == "fuzzy" and len("".join(units)) < 3:
        raise RuleError(source, "a fuzzy pattern needs at least 3 characters (shorter ones match anything)",
                        rule_id, f"{fld}.fuzzy")
    return Pattern(kind, value, (units,), threshold=float(threshold))


def _parse_patterns(raw, language, source, rule_id, fld, required=True) -> tuple[Pattern, ...]:
    if raw is None and not required:
        return ()
    if isinstance(raw, (str, Mapping)):
        raw = [raw]
    if not isinstance(raw, list) or (required and not raw):
        raise RuleError(source, "must be a non-empty list of patterns", rule_id, fld)
    return tuple(_parse_pattern(p, language, source, rule_id, f"{fld}[{i}]") for i, p in enumerate(raw))


def _parse_window(raw, source, rule_id) -> Window | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not raw:
        raise RuleError(source, "a window is a mapping: first_sentences, last_sentences or first_seconds",
                        rule_id, "window")
    known = {"first_sentences", "last_sentences", "first_seconds"}
    for key in raw:
        if key not in known:
            raise RuleError(source, f"unknown key (known: {', '.join(sorted(known))})", rule_id, f"window.{key}")
    return Window(
        first_sentences=None if "first_sentences" not in raw else
        _check_number(raw["first_sentences"], source, rule_id, "window.first_sentences", 1, 1000, True),
        last_sentences=None if "last_sentences" not in raw else
        _check_number(raw["last_sentences"], source, rule_id, "window.last_sentences", 1, 1000, True),
        first_seconds=None if "first_seconds" not in raw else
        float(_check_number(raw["first_seconds"], source, rule_id, "window.first_seconds", 0.1, 86400)))


def _parse_trigger(raw, source, rule_id) -> Trigger:
    from campaigns.models import CaseStatus
    if not isinstance(raw, Mapping) or not raw:
        raise RuleError(source, f"a trigger is a mapping of {', '.join(TRIGGER_KEYS)}", rule_id, "trigger")
    for key, value in raw.items():
        if key not in TRIGGER_KEYS:
            raise RuleError(source, f"unknown key (known: {', '.join(TRIGGER_KEYS)})", rule_id, f"trigger.{key}")
        if key != "case_status" and not isinstance(value, bool):
            raise RuleError(source, f"must be true or false, got {value!r}", rule_id, f"trigger.{key}")
    status = raw.get("case_status")
    if status is not None and status not in {s.value for s in CaseStatus}:
        raise RuleError(source, f"unknown case status {status!r} (known: {', '.join(s.value for s in CaseStatus)})",
                        rule_id, "trigger.case_status")
    trigger = Trigger(case_status=status, **{k: raw.get(k, False) for k in TRIGGER_KEYS if k != "case_status"})
    if trigger == Trigger():
        raise RuleError(source, "proposes nothing: set case_status or one of the flags to true", rule_id, "trigger")
    return trigger


def _parse_after(raw, rule_leg: str, language: str, source: str, rule_id: str) -> After:
    if not isinstance(raw, Mapping) or not raw:
        raise RuleError(source, "after is a mapping: rules and/or patterns said earlier, optional leg, until, "
                        "within_seconds", rule_id, "after")
    for key in raw:
        if key not in _AFTER_KEYS:
            raise RuleError(source, f"unknown key (known: {', '.join(sorted(_AFTER_KEYS))})", rule_id, f"after.{key}")
    leg = raw.get("leg", _OTHER_LEG[rule_leg])
    if leg not in RULE_LEGS:
        raise RuleError(source, f"{leg!r} is not one of {', '.join(RULE_LEGS)}", rule_id, "after.leg")
    rules = raw.get("rules", [])
    if isinstance(rules, str):
        rules = [rules]
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise RuleError(source, "a list of rule ids", rule_id, "after.rules")
    patterns = _parse_patterns(raw.get("patterns"), language, source, rule_id, "after.patterns", required=False)
    if not rules and not patterns:
        raise RuleError(source, "says nothing: give the rules or the patterns said earlier", rule_id, "after")
    until = _parse_patterns(raw.get("until"), language, source, rule_id, "after.until", required=False)
    within = raw.get("within_seconds")
    if within is not None:
        within = float(_check_number(within, source, rule_id, "after.within_seconds", 0.1, 86400))
    return After(leg, patterns, tuple(rules), until, within)


def _parse_rule(raw, language: str, source: str, index: int) -> Rule:
    if not isinstance(raw, Mapping):
        raise RuleError(source, f"rules[{index}] is not a mapping")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_.\-]{0,99}", rule_id):
        raise RuleError(source, f"rules[{index}]: id must be lower-case letters, digits, '.', '_' or '-' "
                        f"(at most 100), got {rule_id!r}", field="id")
    for key in raw:
        if key not in _RULE_KEYS:
            raise RuleError(source, f"unknown key (known: {', '.join(sorted(_RULE_KEYS))})", rule_id, key)
    for key in ("category", "severity", "leg"):
        if key not in raw:
            raise RuleError(source, "is missing", rule_id, key)
    kind = raw.get("kind", "phrase")
    checks = (("kind", kind, KINDS), ("category", raw["category"], CATEGORIES),
              ("severity", raw["severity"], SEVERITIES), ("leg", raw["leg"], RULE_LEGS))
    for key, value, allowed in checks:
        if value not in allowed:
            raise RuleError(source, f"{value!r} is not one of {', '.join(allowed)}", rule_id, key)
    patterns = first = then = ()
    if kind == "order":
        for key in ("patterns", "exclude", "trigger"):
            if key in raw:
                raise RuleError(source, "an order rule has 'first' and 'then' instead", rule_id, key)
        first = _parse_patterns(raw.get("first"), language, source, rule_id, "first")
        then = _parse_patterns(raw.get("then"), language, source, rule_id, "then")
    else:
        for key in ("first", "then"):
            if key in raw:
                raise RuleError(source, "only order rules have 'first' and 'then'", rule_id, key)
        patterns = _parse_patterns(raw.get("patterns"), language, source, rule_id, "patterns")
    if kind == "must_say" and "trigger" in raw:
        raise RuleError(source, "a must-say rule cannot be a trigger", rule_id, "trigger")
    if kind != "phrase" and "after" in raw:
        raise RuleError(source, "only phrase rules have an 'after' condition", rule_id, "after")
    after = _parse_after(raw["after"], raw["leg"], language, source, rule_id) if "after" in raw else None
    exclude = _parse_patterns(raw.get("exclude"), language, source, rule_id, "exclude", required=False)
    exclude_within = raw.get("exclude_within")
    if exclude_within is not None:
        _check_number(exclude_within, source, rule_id, "exclude_within", 0, 1000, True)
    min_conf = raw.get("min_conf")
    if min_conf is not None:
        min_conf = float(_check_number(min_conf, source, rule_id, "min_conf", 0, 1))
    trigger = _parse_trigger(raw["trigger"], source, rule_id) if "trigger" in raw else None
    if trigger is not None and raw["leg"] == "agent":
        raise RuleError(source, "a trigger is what the debtor says: leg must be debtor or any", rule_id, "leg")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise RuleError(source, "must be text", rule_id, "description")
    return Rule(rule_id, raw["category"], raw["severity"], raw["leg"], kind, patterns, exclude, exclude_within,
                _parse_window(raw.get("window"), source, rule_id), first, then, trigger, min_conf, description, after)


def parse_ruleset(data: str | Mapping, source: str = "<rules>") -> RuleSet:
    """A rule set from YAML text or an already-loaded mapping; raises RuleError."""
    import yaml
    if isinstance(data, str):
        try:
            data = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise RuleError(source, f"not valid YAML{where}: {problem}") from None
    if not isinstance(data, Mapping):
        raise RuleError(source, "a rule file is a mapping with version, language and rules")
    for key in data:
        if key not in {"version", "language", "min_conf", "name", "rules", "opening"}:
            raise RuleError(source, "unknown top-level key (known: version, language, min_conf, name, opening, "
                            "rules)", field=str(key))
    version = data.get("version")
    if version is None or isinstance(version, bool) or not isinstance(version, (str, int, float)) \
            or not str(version).strip() or len(str(version)) > 40:
        raise RuleError(source, "every rule file has a version (text or number, at most 40 characters), "
                        "stored with each finding", field="version")
    language = data.get("language")
    if language not in LANGUAGES:
        raise RuleError(source, f"must be one of {', '.join(LANGUAGES)}, got {language!r}", field="language")
    min_conf = float(_check_number(data.get("min_conf", DEFAULT_MIN_CONF), source, None, "min_conf", 0, 1))
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RuleError(source, "must be a non-empty list of rules", field="rules")
    rules = tuple(_parse_rule(r, language, source, i) for i, r in enumerate(raw_rules))
    if data.get("opening") is not None:
        rules += _opening(data["opening"], language, source)
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise RuleError(source, "the id is used twice", rule.id, "id")
        seen.add(rule.id)
    kinds = {rule.id: rule for rule in rules}
    for rule in rules:
        for ref in rule.after.rules if rule.after else ():
            if ref not in kinds:
                raise RuleError(source, f"no rule {ref!r} in this rule set", rule.id, "after.rules")
            if kinds[ref].kind != "phrase" or kinds[ref].after is not None:
                raise RuleError(source, f"rule {ref!r} is not a plain phrase rule (no after of its own)",
                                rule.id, "after.rules")
    return RuleSet(str(version), language, rules, min_conf, source, str(data.get("name", "")))


def _opening(raw, language: str, source: str) -> tuple[Rule, ...]:
    from recordings.opening import OpeningError, opening_rules
    try:
        generated = opening_rules(raw, language)
    except OpeningError as exc:
        raise RuleError(source, str(exc), field="opening" + (f".{exc.field}" if exc.field else "")) from None
    return tuple(_parse_rule(r, language, f"{source} (opening)", i) for i, r in enumerate(generated))


def with_opening(ruleset: RuleSet, opening: Mapping, source: str = "<opening>") -> RuleSet:
    """The rule set with its opening's must-say rules written from `opening` (the client's
    words: ``recordings.opening``) instead; the version gets the opening's digest appended,
    so findings say which words they were checked against."""
    import hashlib
    import json
    generated = _opening(opening, ruleset.language, source)
    lang = "zh" if ruleset.language.startswith("zh") else ruleset.language
    ids = {f"{lang}.must.{item}" for item in ("identity", "staff_id", "recording_notice")}  # all three replaced
    digest = hashlib.sha256(json.dumps(opening, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:6]
    version = f"{ruleset.version}+{digest}"[:40]
    return replace(ruleset, rules=tuple(r for r in ruleset.rules if r.id not in ids) + generated, version=version)


def load_ruleset(path: str | Path) -> RuleSet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(str(path), f"cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RuleError(str(path), "is not UTF-8 text") from None
    return parse_ruleset(text, str(path))


#: Languages a rule set may be written for: Mandarin and English; Korean only for the test
#: model (words separated by spaces, matched like English).
LANGUAGES = ("zh", "en", "ko")


def shipped_rulesets() -> dict[str, RuleSet]:
    """The rule sets shipped with the project, by language (zh first; ko is a small set for the
    Korean test model, the only real Vosk model these machines can get)."""
    return {rs.language: rs for rs in (load_ruleset(RULES_DIR / f"{lang}.yaml") for lang in ("zh", "en", "ko"))}


def rulesets_in_use(env: Mapping[str, str] | None = None) -> dict[str, RuleSet]:
    """The shipped rule sets, each replaced by the file of its language that
    ``DUNNING_QA_RULES`` (comma-separated YAML files) names, if any."""
    import os
    env = os.environ if env is None else env
    found = shipped_rulesets()
    for name in filter(None, (part.strip() for part in env.get("DUNNING_QA_RULES", "").split(","))):
        ruleset = load_ruleset(Path(name))
        found[ruleset.language] = ruleset
    if env.get("DUNNING_QA_OPENING"):
        from recordings.opening import OpeningError, load_opening
        path = env["DUNNING_QA_OPENING"]
        try:
            blocks = load_opening(path)
        except (OSError, OpeningError) as exc:
            raise RuleError(path, f"cannot be used as the opening: {exc}") from None
        for language, block in blocks.items():
            if language in found:
                found[language] = with_opening(found[language], block, path)
    return found


def ruleset_for(language: str, rulesets: Mapping[str, RuleSet] | None = None) -> RuleSet:
    rulesets = rulesets_in_use() if rulesets is None else rulesets
    key = "zh" if language.startswith("zh") else language.split("-")[0]
    if key not in rulesets:
        raise RuleError("<rules>", f"no rule set for language {language!r} (have: {', '.join(rulesets)})")
    return rulesets[key]


# ── Findings ──────────────────────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class Finding:
    rule_id: str
    rule_version: str
    category: str
    severity: str
    leg: str
    offset_s: float  # seconds from the start of the recording
    matched_text: str
    match_type: str  # literal, parts, regex, pinyin, fuzzy, absent (must-say), order
    confidence: float  # 0..1: the words' confidence times the match score
    status: str  # confirmed or review
    kind: str = "phrase"
    sentence: int | None = None  # index into transcript.utterances
    span: tuple[int, int] = (0, 0)  # matched units inside that sentence
    trigger: bool = False
    because: str = ""  # a rule with `after`: what was said earlier that makes this a finding

    @property
    def key(self) -> str:
        """What makes a finding the same finding when a recording is checked again."""
        return "|".join((self.rule_id, self.rule_version, self.leg, str(self.sentence), f"{self.span[0]}-{self.span[1]}",
                         self.match_type))


@dataclass
class _Sentence:
    index: int  # in transcript.utterances
    leg: str
    utterance: Utterance
    source: str  # the text the units point into
    units: list[str]  # normalised
    src: list[tuple[int, int]]  # each unit's [start, end) in source
    word: list[int | None]  # each unit's word index
    sep: str = ""  # between units: nothing in Chinese, a space in English
    joined: str = ""
    unit_at: list[int] = field(default_factory=list)  # joined char -> unit
    leg_index: int = 0  # among the sentences of its leg
    any_index: int = 0  # among all sentences
    pos: int = 0  # in order of time, both legs interleaved (start, then transcript order)

    @functools.cached_property
    def pinyin(self) -> list[frozenset[str]]:
        return [readings(u) for u in self.units]


def _sentence(index: int, u: Utterance, language: str) -> _Sentence:
    zh = language.startswith("zh")
    source = join_words([w.text for w in u.words], language) if u.words else u.text
    # Which word each source character belongs to.
    owner: list[int | None] = [None] * len(source)
    if u.words:
        pos = 0
        for wi, w in enumerate(u.words):
            for _ in w.text:
                if pos < len(source):
                    owner[pos] = wi
                pos += 1
            if not zh:
                pos += 1
    units, src, word = [], [], []
    if zh:
        text, spans = normalise_map(source)
        for c, (a, b) in zip(text, spans):
            units.append(c)
            src.append((a, b))
            word.append(owner[a])
    else:
        for m in re.finditer(r"\S+", source):
            for piece in _words_en(m.group()):
                units.append(piece)
                src.append((m.start(), m.end()))
                word.append(owner[m.start()])
    s = _Sentence(index, u.leg, u, source, units, src, word)
    sep = s.sep = "" if zh else " "
    s.joined = sep.join(units)
    for ui, unit in enumerate(units):
        s.unit_at.extend([ui] * len(unit))
        if sep and ui < len(units) - 1:
            s.unit_at.append(ui)
    return s


@dataclass(frozen=True)
class _Hit:
    sentence: _Sentence
    start: int  # unit index
    end: int  # exclusive
    match_type: str
    score: float  # 0..1 from the matcher


def _eq_literal(units: Sequence[str], i: int, pat: Sequence[str]) -> bool:
    return list(units[i:i + len(pat)]) == list(pat)


def _eq_pinyin(s: _Sentence, i: int, pat: Sequence[str]) -> bool:
    if i + len(pat) > len(s.units):
        return False
    py = s.pinyin
    return all(py[i + k] & readings(p) for k, p in enumerate(pat))


def _occurrences(s: _Sentence, pat: Sequence[str], homophones: bool, start: int = 0, stop: int | None = None):
    """(index, literal?) for each place the unit sequence occurs, from `start` up to `stop`."""
    last = len(s.units) - len(pat)
    if stop is not None:
        last = min(last, stop)
    for i in range(start, last + 1):
        if _eq_literal(s.units, i, pat):
            yield i, True
        elif homophones and _eq_pinyin(s, i, pat):
            yield i, False


def _match(pattern: Pattern, s: _Sentence) -> list[_Hit]:
    if not s.units:
        return []
    if pattern.kind in ("literal", "pinyin"):
        pat = pattern.units[0]
        return [_Hit(s, i, i + len(pat), "literal" if lit else "pinyin", 1.0 if lit else PINYIN_FACTOR)
                for i, lit in _occurrences(s, pat, pattern.kind == "pinyin")]
    if pattern.kind == "parts":
        hits = []
        first, rest = pattern.units[0], pattern.units[1:]
        for i, lit in _occurrences(s, first, pattern.homophones):
            end, all_literal = i + len(first), lit
            for part in rest:
                nxt = next(_occurrences(s, part, pattern.homophones, end, end + pattern.max_gap), None)
                if nxt is None:
                    break
                end, all_literal = nxt[0] + len(part), all_literal and nxt[1]
            else:
                hits.append(_Hit(s, i, end, "parts" if all_literal else "pinyin",
                                 1.0 if all_literal else PINYIN_FACTOR))
        return hits
    if pattern.kind == "regex":
        hits = []
        for m in pattern.regex.finditer(s.joined):
            if m.end() > m.start():
                hits.append(_Hit(s, s.unit_at[m.start()], s.unit_at[m.end() - 1] + 1, "regex", 1.0))
        return hits
    # fuzzy: the best alignment in the sentence
    from rapidfuzz import fuzz
    needle = s.sep.join(pattern.units[0])
    if len(s.joined) < max(3, len(needle) * 2 // 3):
        return []
    res = fuzz.partial_ratio_alignment(needle, s.joined, score_cutoff=pattern.threshold)
    if res is None or res.dest_end <= res.dest_start:
        return []
    start, end = s.unit_at[res.dest_start], s.unit_at[res.dest_end - 1] + 1
    if res.score >= 100:
        return [_Hit(s, start, end, "literal", 1.0)]
    return [_Hit(s, start, end, "fuzzy", res.score / 100.0)]


def _word_conf(s: _Sentence, start: int, end: int) -> float:
    words = s.utterance.words
    idx = {s.word[i] for i in range(start, end) if s.word[i] is not None}
    if not words or not idx:
        return s.utterance.conf
    return min(words[i].conf for i in idx)


def _offset(s: _Sentence, unit: int) -> float:
    u = s.utterance
    if u.words and unit < len(s.word) and s.word[unit] is not None:
        return u.words[s.word[unit]].start
    if not s.source or unit >= len(s.src):
        return u.start
    return u.start + (u.end - u.start) * s.src[unit][0] / len(s.source)


def _text(s: _Sentence, start: int, end: int) -> str:
    return s.source[s.src[start][0]:s.src[end - 1][1]]


class _Call:
    """A transcript split into sentences, with per-leg numbering."""

    def __init__(self, transcript: Transcript):
        self.language = transcript.language
        self.sentences = [_sentence(i, u, transcript.language) for i, u in enumerate(transcript.utterances)]
        counts: dict[str, int] = {}
        for n, s in enumerate(self.sentences):
            s.leg_index = counts.get(s.leg, 0)
            s.any_index = n
            counts[s.leg] = s.leg_index + 1
        self.counts = counts
        for pos, s in enumerate(sorted(self.sentences, key=lambda s: (s.utterance.start, s.index))):
            s.pos = pos
        self.phrase_cache: dict[str, list[Finding]] = {}

    def scope(self, rule: Rule) -> list[_Sentence]:
        """The sentences a rule looks at: its leg only, inside its window."""
        out = []
        for s in self.sentences:
            if rule.leg != "any" and s.leg != rule.leg:
                continue
            if rule.window is not None:
                index, count = ((s.any_index, len(self.sentences)) if rule.leg == "any"
                                else (s.leg_index, self.counts.get(s.leg, 0)))
                if not rule.window.admits(index, count, s.utterance.start):
                    continue
            out.append(s)
        return out


_RANK = {"literal": 0, "parts": 0, "regex": 1, "pinyin": 2, "fuzzy": 3}


def _hits(patterns: Iterable[Pattern], sentences: Iterable[_Sentence]) -> list[_Hit]:
    return [h for s in sentences for p in patterns for h in _match(p, s)]


def _excluded(rule: Rule, hit: _Hit) -> bool:
    for ex in rule.exclude:
        if ex.kind == "literal" and hit.sentence.sep == "":
            ex = Pattern("pinyin", ex.text, ex.units)  # in Chinese an exclusion also counts when mis-heard
        for e in _match(ex, hit.sentence):
            if rule.exclude_within is None:
                return True
            gap = max(e.start - hit.end, hit.start - e.end, 0)
            if gap <= rule.exclude_within:
                return True
    return False


def _best(hits: list[_Hit], rule: Rule, min_conf: float) -> list[tuple[_Hit, float]]:
    """One hit per place: the strongest of overlapping hits, with its confidence."""
    scored = [(h, round(_word_conf(h.sentence, h.start, h.end) * h.score, 3)) for h in hits]
    scored.sort(key=lambda hc: (_RANK.get(hc[0].match_type, 9), -hc[1], -(hc[0].end - hc[0].start),
                                hc[0].sentence.index, hc[0].start))
    kept: list[tuple[_Hit, float]] = []
    for h, c in scored:
        if any(k.sentence is h.sentence and h.start < k.end and k.start < h.end for k, _ in kept):
            continue
        kept.append((h, c))
    return kept


def _status(match_type: str, conf: float, min_conf: float) -> str:
    return "confirmed" if match_type in STRONG and conf >= min_conf else "review"


def _finding(rule: Rule, rs: RuleSet, hit: _Hit, conf: float, match_type: str | None = None) -> Finding:
    min_conf = rule.min_conf if rule.min_conf is not None else rs.min_conf
    s = hit.sentence
    mtype = match_type or hit.match_type
    status = _status(hit.match_type, conf, min_conf)
    return Finding(rule.id, rs.version, rule.category, rule.severity, s.leg, round(_offset(s, hit.start), 2),
                   _text(s, hit.start, hit.end), mtype, conf, status, rule.kind, s.index, (hit.start, hit.end),
                   rule.trigger is not None)


def _phrase(rule: Rule, rs: RuleSet, call: _Call) -> list[Finding]:
    if rule.after is None and rule.id in call.phrase_cache:
        return call.phrase_cache[rule.id]
    hits = [h for h in _hits(rule.patterns, call.scope(rule)) if not _excluded(rule, h)]
    because: dict[int, str] = {}
    if rule.after is not None:
        hits = [h for h in hits if _after(rule, rs, call, h.sentence, because)]
    min_conf = rule.min_conf if rule.min_conf is not None else rs.min_conf
    out = [_finding(rule, rs, h, c) for h, c in _best(hits, rule, min_conf)]
    if rule.after is not None:
        out = [replace(f, because=because.get(f.sentence, "")) for f in out]
    else:
        call.phrase_cache[rule.id] = out
    return out


def _clock(seconds: float) -> str:
    m, sec = divmod(seconds, 60)
    return f"{int(m):02d}:{sec:04.1f}"


def _moments(rule: Rule, rs: RuleSet, call: _Call) -> tuple[list[tuple[_Sentence, str]], list[_Sentence]]:
    """Where the rule's `after` condition was said (sentence, words), and where its `until`."""
    a = rule.after
    said_by = [s for s in call.sentences if a.leg == "any" or s.leg == a.leg]
    moments = [(h.sentence, _text(h.sentence, h.start, h.end)) for h in _hits(a.patterns, said_by)]
    for ref in a.rules:
        for f in _phrase(rs.rule(ref), rs, call):
            if f.sentence is not None and (a.leg == "any" or f.leg == a.leg):
                moments.append((call.sentences[f.sentence], f.matched_text))
    until = [h.sentence for h in _hits(a.until, said_by)]
    return moments, until


def _after(rule: Rule, rs: RuleSet, call: _Call, s: _Sentence, because: dict[int, str]) -> bool:
    """Whether the rule's condition holds when sentence `s` is said (noting what set it)."""
    key = ("after", rule.id)
    if key not in call.phrase_cache:
        call.phrase_cache[key] = _moments(rule, rs, call)
    moments, until = call.phrase_cache[key]
    within = rule.after.within_seconds
    for c, words in sorted(moments, key=lambda m: m[0].pos):
        if c.pos >= s.pos:
            continue
        if within is not None and s.utterance.start - c.utterance.start > within:
            continue
        if any(c.pos < u.pos < s.pos for u in until):
            continue
        because[s.index] = f"after {c.leg} {_clock(c.utterance.start)} “{words}”"
        return True
    return False


def _must_say(rule: Rule, rs: RuleSet, call: _Call) -> list[Finding]:
    scope = call.scope(rule)
    legs = LEGS if rule.leg == "any" else (rule.leg,)
    if not any(call.counts.get(leg) for leg in legs):
        return []  # that leg never spoke: nothing to hold against it
    if _hits(rule.patterns, scope):
        return []  # said (a homophone or a near miss counts: absence is never guessed)
    confs = [_word_conf(s, 0, len(s.units)) for s in scope] or [1.0]
    conf = round(sum(confs) / len(confs), 3)
    min_conf = rule.min_conf if rule.min_conf is not None else rs.min_conf
    first = scope[0] if scope else next(s for s in call.sentences if s.leg in legs)
    where = rule.window.describe() if rule.window else "whole call"
    return [Finding(rule.id, rs.version, rule.category, rule.severity, first.leg if rule.leg == "any" else rule.leg,
                    round(first.utterance.start, 2), f"(not said: {where})", "absent", conf,
                    "confirmed" if conf >= min_conf else "review", rule.kind, None, (0, 0))]


def _order(rule: Rule, rs: RuleSet, call: _Call) -> list[Finding]:
    scope = call.scope(rule)

    def place(h: _Hit) -> tuple[int, int]:
        return (h.sentence.any_index, h.start)
    firsts = _hits(rule.first, scope)
    earliest = min((place(h) for h in firsts), default=None)
    early = [h for h in _hits(rule.then, scope) if earliest is None or place(h) < earliest]
    if not early:
        return []
    min_conf = rule.min_conf if rule.min_conf is not None else rs.min_conf
    best = _best(early, rule, min_conf)
    hit, conf = min(best, key=lambda hc: place(hc[0]))
    return [_finding(rule, rs, hit, conf, "order")]  # as sure as the 'then' hit was


def words_end(transcript: Transcript, finding: Finding) -> float:
    """When the words of a phrase finding end (seconds from the start of the recording): the
    end of the word its last matched unit belongs to, else the end of its sentence."""
    if finding.sentence is None or not 0 <= finding.sentence < len(transcript.utterances):
        return finding.offset_s
    u = transcript.utterances[finding.sentence]
    s = _sentence(finding.sentence, u, transcript.language)
    last = finding.span[1] - 1
    if u.words and 0 <= last < len(s.word) and s.word[last] is not None:
        return u.words[s.word[last]].end
    return u.end


def find(transcript: Transcript, ruleset: RuleSet) -> list[Finding]:
    """Every finding of the rule set in the transcript, in order of time."""
    call = _Call(transcript)
    out: list[Finding] = []
    for rule in ruleset.rules:
        if rule.kind == "must_say":
            out.extend(_must_say(rule, ruleset, call))
        elif rule.kind == "order":
            out.extend(_order(rule, ruleset, call))
        else:
            out.extend(_phrase(rule, ruleset, call))
    out.sort(key=lambda f: (f.offset_s, f.sentence if f.sentence is not None else -1, f.span, f.rule_id))
    return out
