"""The opening's must-say rules, written from the client's own words.

A rule set's ``opening:`` block (or the file ``DUNNING_QA_OPENING`` names, which replaces it)
says who the agency is, for whom it calls, how agents give their staff id and how they say
the call is recorded:

```yaml
opening:
  window: {first_sentences: 3}          # where the three items must be said (agent's sentences)
  institutions: [深圳前海信达资产管理有限公司]   # the agency's full names
  trade_names: [信达]                    # the short names agents use: 信达资产, 信达律所 ...
  forms: [资产管理, 资产, 律师事务所, 催收中心]   # optional: the kinds of institution (defaults below)
  clients: [平安银行]                     # on whose behalf: 受平安银行委托
  staff_id: [工号, 员工编号]              # absent: the defaults; []: not required
  recording_notice: [录音, 本次通话将被录音]
```

From it come three must-say rules, ``<language>.must.identity``, ``.staff_id`` and
``.recording_notice``: identity is said when the agent names the agency (full name, or a trade
name followed by one of the forms: 信达资产, 信达的催收中心), introduces an institution of one
of the forms (我是……资产管理公司的), or says for whom they call (受平安银行委托). Names are
matched by pinyin as well (a small model's 信大资产), and so are the staff-id words; a
recording notice written as a sentence is matched loosely (rapidfuzz, 85).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

#: The kinds of institution an agent names in Chinese, longest first (the common forms).
FORMS_ZH = ("资产管理有限公司", "资产管理公司", "资产管理", "律师事务所", "信用卡中心", "贷后管理中心", "催收中心",
            "客服中心", "服务中心", "资产", "律所", "法务部", "事务所", "有限公司", "公司", "中心", "机构", "银行")
FORMS_EN = ("collections", "collection agency", "recovery", "asset management", "law firm", "law office",
            "financial services", "services", "bank")
STAFF_ID_ZH = ("工号", "员工编号", "坐席号", "工牌号")
STAFF_ID_EN = ("agent id", "employee number", "staff id", "my id is", "badge number")
NOTICE_ZH = ("录音", "录制")
NOTICE_EN = ("recorded", "recording")
KEYS = {"window", "institutions", "trade_names", "forms", "clients", "staff_id", "recording_notice"}


class OpeningError(ValueError):
    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(message)


def _names(raw: Mapping, key: str) -> list[str]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise OpeningError("a list of phrases", key)
    return [v.strip() for v in value]


def _alt(words) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


def opening_rules(raw: Mapping, language: str) -> list[dict]:
    """The opening's three must-say rules, as rule mappings (the rule file's format)."""
    if not isinstance(raw, Mapping):
        raise OpeningError("opening is a mapping of " + ", ".join(sorted(KEYS)))
    for key in raw:
        if key not in KEYS:
            raise OpeningError(f"unknown key (known: {', '.join(sorted(KEYS))})", str(key))
    zh = language.startswith("zh")
    window = raw.get("window", {"first_sentences": 3})
    institutions = _names(raw, "institutions")
    trade = _names(raw, "trade_names")
    forms = _names(raw, "forms") or list(FORMS_ZH if zh else FORMS_EN)
    clients = _names(raw, "clients")
    # absent: the defaults; an empty list: that item is not required
    staff = _names(raw, "staff_id") if "staff_id" in raw else list(STAFF_ID_ZH if zh else STAFF_ID_EN)
    notice = _names(raw, "recording_notice") if "recording_notice" in raw else list(NOTICE_ZH if zh else NOTICE_EN)
    from .normalise import normalise
    if zh:
        norm = [normalise(f) for f in forms]
        identity: list[dict] = [
            {"regex": f"(我是|我们是|这里是|这边是|我这边是|我这里是|来自).{{0,15}}({_alt(norm)})"},
            {"regex": "受.{0,15}委托"},
        ]
        for name in institutions:
            identity.append({"pinyin": name})
        for name in trade:
            identity.append({"regex": f"{re.escape(normalise(name))}(的)?({_alt(norm)})"})
            identity.append({"pinyin": f"{name}资产"})
        for name in clients:
            identity.append({"regex": f"{re.escape(normalise(name))}.{{0,6}}委托"})
        staff_patterns: list[dict] = [{"pinyin": w} for w in staff]
        staff_patterns.append({"regex": "(工号|编号|号码)(是)?[0-9]{3,}"})
        notice_patterns: list[dict] = []
        for w in notice:
            notice_patterns.append({"fuzzy": w, "threshold": 85} if len(normalise(w)) > 6 else {"pinyin": w})
    else:
        lower = [f.lower() for f in forms]
        identity = [{"regex": r"\b(my name is|this is|calling from|calling on behalf of|on behalf of)\b"},
                    {"regex": rf"\b({_alt(lower)})\b"}]
        identity += [{"literal": n} for n in institutions + trade + clients]
        staff_patterns = [{"literal": w} for w in staff]
        notice_patterns = [{"regex": r"\b(call|conversation) (is|may be|will be|is being) (recorded|monitored)\b"},
                           {"literal": "recorded line"}]
        notice_patterns += [{"fuzzy": w, "threshold": 85} if len(w) > 12 else {"literal": w} for w in notice]
    lang = "zh" if zh else language
    rules = [
        {"id": f"{lang}.must.identity", "kind": "must_say", "category": "must_say", "severity": "medium",
         "leg": "agent", "window": window, "patterns": identity,
         "description": "the agency named (full or trade name and its form), or for whom it calls"},
        {"id": f"{lang}.must.staff_id", "kind": "must_say", "category": "must_say", "severity": "low",
         "leg": "agent", "window": window, "patterns": staff_patterns, "description": "the staff id given"},
        {"id": f"{lang}.must.recording_notice", "kind": "must_say", "category": "must_say", "severity": "medium",
         "leg": "agent", "window": window, "patterns": notice_patterns,
         "description": "the call is said to be recorded"},
    ]
    return [r for r in rules if r["patterns"] and not (r["id"].endswith(".staff_id") and not staff)
            and not (r["id"].endswith(".recording_notice") and not notice)]


def load_opening(path) -> dict[str, Mapping]:
    """The opening blocks of a YAML file, by language: the file is ``{zh: {...}, en: {...}}``,
    or one block (Mandarin's), with or without an ``opening:`` key around it."""
    import yaml
    from pathlib import Path
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, Mapping) and "opening" in data:
        data = data["opening"]
    if not isinstance(data, Mapping):
        raise OpeningError(f"{path}: not an opening block")
    if data and set(data) <= {"zh", "en", "ko"}:
        return dict(data)
    return {"zh": data}
