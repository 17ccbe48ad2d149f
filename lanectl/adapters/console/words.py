"""The lane card's fee breakdown in plain words, Chinese and English.

The lane writes a record's `detail` as lines for the log and the records (core/lane.py): `match:<kind>`, the
tariff engine's lines (core/tariff.BreakdownItem.line: "<from> - <to>  <kind>  <fen> fen  <note>"), `flag:<f>`
and the stored-value line. Each line becomes {"kind", "zh", "en"}; a line not known here is shown as it is
(kind "raw"), never dropped, so a new kind of line is seen at the booth before it is translated here.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional

Words = dict[str, str]

_LINE = re.compile(r"(?P<start>\d{4}-\d\d-\d\d \d\d:\d\d) - (?P<end>\d{4}-\d\d-\d\d \d\d:\d\d)  (?P<kind>\S+)\s+"
                   r"(?P<fen>-?\d+) fen  (?P<note>.*)")
CLASSES_ZH = {"temporary": "临时车", "monthly": "月卡车", "stored_value": "储值车", "whitelist": "白名单",
              "free": "免费车", "vip": "贵宾车", "police": "军警车", "special": "特种车"}


def yuan(fen: int | str) -> str:
    fen = int(fen)
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _minutes_zh(m: int) -> str:  # after 首 / 每: 首小时, 每 30 分钟
    return "小时" if m == 60 else f" {m // 60} 小时" if m % 60 == 0 else f" {m} 分钟"


def _minutes_en(m: int) -> str:
    return "hour" if m == 60 else f"{m // 60} hours" if m % 60 == 0 else f"{m} min"


# --- the tariff engine's notes ----------------------------------------------------------------------------------

def _label(label: str) -> Words:
    """A run's label: the tariff itself says nothing; a day segment keeps its name and hours."""
    zh, en = label, label
    period = re.search(r", 24 h period (\d+)$", label)
    if period:
        zh, en = label[:period.start()], label[:period.start()]
    after = zh.endswith(" (after payment)")
    if after:
        zh = en = zh[: -len(" (after payment)")]
    if zh in ("tariff", "flat"):
        zh = en = ""
    if after:
        zh, en = f"{zh}（付款后）" if zh else "付款后", f"{en} (after payment)" if en else "after payment"
    if period:
        zh = f"{zh}，第 {period.group(1)} 个 24 小时" if zh else f"第 {period.group(1)} 个 24 小时"
        en = f"{en}, 24 h period {period.group(1)}" if en else f"24 h period {period.group(1)}"
    return {"zh": zh, "en": en}


_FIRST = re.compile(r"first (\d+) min (\d+) fen")
_UNITS = re.compile(r"(\d+) x (\d+) min x (\d+) fen")


def _run(label: str, body: str) -> Optional[Words]:
    """`<label>: first 60 min 500 fen + 2 x 60 min x 200 fen` (or flat ... per visit, or nothing)."""
    head = _label(label)
    flat = re.fullmatch(r"flat (\d+) fen per visit", body)
    if flat:
        zh, en = f"按次收费 {yuan(flat.group(1))} 元", f"{yuan(flat.group(1))} yuan per visit"
    elif body == "nothing":
        zh, en = "不收费", "nothing charged"
    else:
        zh_parts, en_parts = [], []
        for part in body.split(" + "):
            first, units = _FIRST.fullmatch(part), _UNITS.fullmatch(part)
            if first:
                m, fen = int(first.group(1)), first.group(2)
                zh_parts.append(f"首{_minutes_zh(m)} {yuan(fen)} 元")
                en_parts.append(f"first {_minutes_en(m)} {yuan(fen)} yuan")
            elif units:
                n, m, fen = int(units.group(1)), int(units.group(2)), units.group(3)
                zh_parts.append(f"{'之后' if zh_parts else ''}每{_minutes_zh(m)} {yuan(fen)} 元 × {n}")
                en_parts.append(f"{'then ' if en_parts else ''}{yuan(fen)} yuan per {_minutes_en(m)} × {n}")
            else:
                return None
        zh, en = "；".join(zh_parts), "; ".join(en_parts)
    return {"zh": f"{head['zh']}：{zh}" if head["zh"] else zh, "en": f"{head['en']}: {en}" if head["en"] else en}


_NOTES: list[tuple[str, re.Pattern[str], Callable[[re.Match[str]], Words]]] = [
    ("rule", re.compile(r"tariff rule (.+) \((\w+)\) for the time the card does not cover"),
     lambda m: {"zh": f"月卡未覆盖的时段按收费规则 {m[1]}（{CLASSES_ZH.get(m[2], m[2])}）计费",
                "en": f"the time the card does not cover: tariff {m[1]} ({m[2].replace('_', ' ')})"}),
    ("rule", re.compile(r"tariff rule (.+) \((\w+)\)"),
     lambda m: {"zh": f"收费规则 {m[1]}（{CLASSES_ZH.get(m[2], m[2])}）",
                "en": f"tariff {m[1]} ({m[2].replace('_', ' ')})"}),
    ("segment_cap", re.compile(r"(.+): cap (\d+) fen per occurrence \(charged (\d+)\)"),
     lambda m: {"zh": f"{_label(m[1])['zh']} 时段封顶 {yuan(m[2])} 元（按时计 {yuan(m[3])} 元）",
                "en": f"{_label(m[1])['en']}: capped at {yuan(m[2])} yuan (counted {yuan(m[3])})"}),
    ("cap", re.compile(r"cap (\d+) fen per 24 h from the entry, period (\d+) \(asked (\d+), charged (\d+)\)"),
     lambda m: {"zh": f"封顶 {yuan(m[1])} 元（自入场起第 {m[2]} 个 24 小时，按时计 {yuan(m[3])} 元）",
                "en": f"capped at {yuan(m[1])} yuan (24 h period {m[2]} from the entry; counted {yuan(m[3])})"}),
    ("cap", re.compile(r"cap (\d+) fen in any 24 h \(asked (\d+), charged (\d+)\)"),
     lambda m: {"zh": f"封顶 {yuan(m[1])} 元（任意 24 小时内；按时计 {yuan(m[2])} 元）",
                "en": f"capped at {yuan(m[1])} yuan in any 24 h (counted {yuan(m[2])})"}),
    ("cap", re.compile(r"cap (\d+) fen per calendar day \(asked (\d+), charged (\d+)\)"),
     lambda m: {"zh": f"封顶 {yuan(m[1])} 元（每天；按时计 {yuan(m[2])} 元，收 {yuan(m[3])} 元）",
                "en": f"capped at {yuan(m[1])} yuan a day (counted {yuan(m[2])}, charged {yuan(m[3])})"}),
    ("free", re.compile(r"stay of (\d+) min within (\d+) free minutes"),
     lambda m: {"zh": f"停留 {m[1]} 分钟，在 {m[2]} 分钟免费时间内", "en": f"{m[1]} min stay, within {m[2]} free min"}),
    ("free", re.compile(r"(\d+) free minutes deducted"),
     lambda m: {"zh": f"免费 {m[1]} 分钟（已扣除）", "en": f"{m[1]} free min deducted"}),
    ("free", re.compile(r"(\d+) free minutes not deducted: the stay is longer"),
     lambda m: {"zh": f"免费 {m[1]} 分钟（超时后不扣除）", "en": f"{m[1]} free min not deducted (stayed longer)"}),
    ("rounding", re.compile(r"stay of (\d+) started min, counted from the seconds"),
     lambda m: {"zh": f"停留 {m[1]} 分钟（不足一分钟按一分钟计）", "en": f"{m[1]} min stay (a started minute counts)"}),
    ("grace", re.compile(r"left (\d+) min after paying, within the (\d+) min grace: time after the payment is not "
                         r"charged"),
     lambda m: {"zh": f"付款后 {m[1]} 分钟离场，在 {m[2]} 分钟离场时限内：付款后不再计费",
                "en": f"left {m[1]} min after paying, within the {m[2]} min grace: nothing more"}),
    ("grace", re.compile(r"left (\d+) min after paying, beyond the (\d+) min grace: charged again from the payment.*"),
     lambda m: {"zh": f"付款后 {m[1]} 分钟离场，超过 {m[2]} 分钟离场时限：从付款时起重新计费",
                "en": f"left {m[1]} min after paying, beyond the {m[2]} min grace: charged again from the payment"}),
    ("grace", re.compile(r"left (\d+) min after paying, beyond the (\d+) min grace: the whole stay is charged.*"),
     lambda m: {"zh": f"付款后 {m[1]} 分钟离场，超过 {m[2]} 分钟离场时限：按全程计费，减去已付",
                "en": f"left {m[1]} min after paying, beyond the {m[2]} min grace: the whole stay less what was paid"}),
    ("grace", re.compile(r"paid within the free minutes and left (\d+) min later, beyond the (\d+) min grace.*"),
     lambda m: {"zh": f"免费时间内付款，{m[1]} 分钟后离场，超过 {m[2]} 分钟离场时限：按未付款计费",
                "en": f"paid within the free minutes, left {m[1]} min later beyond the {m[2]} min grace: "
                      "charged as if unpaid"}),
    ("grace", re.compile(r"after the payment, within the grace: not charged"),
     lambda m: {"zh": "付款后，在离场时限内：不计费", "en": "after the payment, within the grace: not charged"}),
    ("no_entry", re.compile(r"no entry record: fixed amount"),
     lambda m: {"zh": "无入场记录：按固定金额收费", "en": "no entry record: fixed amount"}),
    ("no_entry", re.compile(r"no entry record: first segment price"),
     lambda m: {"zh": "无入场记录：按首段价格收费", "en": "no entry record: the first period's price"}),
    ("operator", re.compile(r"no entry record: the booth operator decides"),
     lambda m: {"zh": "无入场记录：由岗亭人工处理", "en": "no entry record: the booth decides"}),
    ("operator", re.compile(r"entry time is after the exit time"),
     lambda m: {"zh": "入场时间晚于出场时间（两台电脑时钟不一致）：由岗亭人工处理",
                "en": "the entry time is after the exit time (booth clocks differ): the booth decides"}),
    ("monthly", re.compile(r"no entry record; card (\S+) valid (.+) - (.+)"),
     lambda m: {"zh": f"无入场记录；月卡 {m[1]} 有效期 {m[2]} 至 {m[3]}",
                "en": f"no entry record; card {m[1]} valid {m[2]} to {m[3]}"}),
    ("monthly", re.compile(r"card (\S+) valid (.+) - (.+): not during this stay, charged as temporary"),
     lambda m: {"zh": f"月卡 {m[1]} 有效期 {m[2]} 至 {m[3]}，不在本次停车期间：按临时车收费",
                "en": f"card {m[1]} valid {m[2]} to {m[3]}, not during this stay: charged as temporary"}),
    ("monthly", re.compile(r"card (\S+) valid (.+) - (.+): not charged"),
     lambda m: {"zh": f"月卡 {m[1]} 有效期 {m[2]} 至 {m[3]} 内：不收费",
                "en": f"card {m[1]} valid {m[2]} to {m[3]}: not charged"}),
    ("monthly", re.compile(r"card (\S+): its (\d+) space\(s\) were taken, charged as temporary"),
     lambda m: {"zh": f"月卡 {m[1]} 的 {m[2]} 个车位已被占用：按临时车收费",
                "en": f"card {m[1]}: its {m[2]} space(s) were taken, charged as temporary"}),
    ("blacklist", re.compile(r"blacklisted: (.*)"),
     lambda m: {"zh": f"黑名单车辆：{m[1]}", "en": f"blacklisted: {m[1]}"}),
    ("whitelist", re.compile(r"(\w+)(?: (.*))?"),
     lambda m: {"zh": f"白名单（{CLASSES_ZH.get(m[1], m[1])}）{m[2] or ''}".strip(),
                "en": f"whitelist ({m[1]}) {m[2] or ''}".strip()}),
]


def _breakdown(kind: str, note: str) -> Optional[Words]:
    if kind in ("tariff", "flat", "segment"):
        run = re.fullmatch(r"(.+?): (first .+|\d+ x .+|flat \d+ fen per visit|nothing)", note)
        return _run(run[1], run[2]) if run else None
    for known, pattern, words in _NOTES:
        if known == kind:
            m = pattern.fullmatch(note)
            if m:
                return words(m)
    return None


# --- the lane's own lines ---------------------------------------------------------------------------------------

def _match(kind: str, car: Mapping[str, Any]) -> Optional[Words]:
    plate, entry = car.get("plate") or "", car.get("entry_plate") or ""
    pair = f"（{plate} ↔ {entry}）" if entry and entry != plate else ""
    pair_en = f" ({plate} ↔ {entry})" if entry and entry != plate else ""
    return {
        "exact": {"zh": "与入场记录车牌完全一致", "en": "matched the entry exactly"},
        "province": {"zh": f"按入场记录匹配，仅省份简称不同{pair}",
                     "en": f"matched the entry with another province character{pair_en}"},
        "confusable": {"zh": f"按形近字匹配入场记录（8/B、0/O、1/I）{pair}",
                       "en": f"matched the entry by letters that look alike (8/B, 0/O, 1/I){pair_en}"},
        "ambiguous": {"zh": "有多条相似的入场记录：请人工确认", "en": "several entries look alike: the booth decides"},
        "none": {"zh": "无入场记录", "en": "no entry record found"},
    }.get(kind)


_YUAN_WORDS = r"(\d+)元(?:(\d\d)分)?"


def _fen(m: re.Match[str], at: int) -> int:
    return int(m[at]) * 100 + int(m[at + 1] or 0)


def _stored_value(line: str) -> Optional[Words]:
    m = re.fullmatch(rf"stored value: balance {_YUAN_WORDS}, (debit|short of) {_YUAN_WORDS}", line)
    if m is None:
        return None
    balance, amount = _fen(m, 1), _fen(m, 4)
    if m[3] == "debit":
        return {"zh": f"储值余额 {yuan(balance)} 元，扣款 {yuan(amount)} 元",
                "en": f"stored value: balance {yuan(balance)} yuan, {yuan(amount)} taken"}
    return {"zh": f"储值余额 {yuan(balance)} 元，不足 {yuan(amount)} 元", "en":
            f"stored value: balance {yuan(balance)} yuan, short of {yuan(amount)}"}


def describe_line(line: str, car: Mapping[str, Any]) -> dict[str, str]:
    """One detail line in words: {"kind", "zh", "en"}; an unknown line as it is (kind "raw")."""
    words: Optional[Words] = None
    kind = "raw"
    if line.startswith("match:"):
        kind, words = "match", _match(line[len("match:"):], car)
    elif line == "flag:blacklist":
        kind, words = "flag", {"zh": "⚠ 黑名单车辆", "en": "⚠ blacklisted"}
    elif line.startswith("stored value:"):
        kind, words = "stored_value", _stored_value(line)
    else:
        m = _LINE.fullmatch(line)
        if m:
            kind, words = m["kind"], _breakdown(m["kind"], m["note"])
    if words is None:
        return {"kind": "raw", "zh": line, "en": line}
    return {"kind": kind, **words}


def describe(car: Mapping[str, Any]) -> list[dict[str, str]]:
    """The car's detail lines in words, then what was paid ahead and what is due."""
    lines = [describe_line(line, car) for line in car.get("detail") or ()]
    total, paid, due = car.get("total_fen") or 0, car.get("paid_fen") or 0, car.get("due_fen") or 0
    if paid:
        lines.append({"kind": "paid", "zh": f"合计 {yuan(total)} 元；已预付 {yuan(paid)} 元；还需 {yuan(due)} 元",
                      "en": f"total {yuan(total)} yuan; paid ahead {yuan(paid)}; {yuan(due)} to pay"})
    return lines
