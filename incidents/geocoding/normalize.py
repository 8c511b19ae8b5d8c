"""One way to write a street name, for the address file, the road graph and what a dispatcher
types: upper case, no punctuation (O'FARRELL -> OFARRELL), suffixes and directionals
abbreviated (Street -> ST, North -> N), ordinals as digits without leading zeros (01ST, First
-> 1ST). And the parse of a typed location: house number, street, unit, hundred-block form,
intersection."""

from __future__ import annotations

import re
from dataclasses import dataclass

SUFFIXES = {
    "STREET": "ST", "STR": "ST", "AVENUE": "AVE", "AV": "AVE", "BOULEVARD": "BLVD", "BL": "BLVD",
    "ROAD": "RD", "DRIVE": "DR", "LANE": "LN", "COURT": "CT", "PLACE": "PL", "TERRACE": "TER",
    "TERR": "TER", "HIGHWAY": "HWY", "PARKWAY": "PKWY", "CIRCLE": "CIR", "SQUARE": "SQ",
    "ALLEY": "ALY", "EXPRESSWAY": "EXPY", "WY": "WAY", "PLAZA": "PLZ", "ALLY": "ALY",
}
SUFFIX_FORMS = frozenset(SUFFIXES.values()) | {"WAY", "LOOP", "ROW", "WALK", "PATH", "HL", "XING"}
DIRECTIONALS = {"NORTH": "N", "SOUTH": "S", "EAST": "E", "WEST": "W"}
_UNITS = ["", "FIRST", "SECOND", "THIRD", "FOURTH", "FIFTH", "SIXTH", "SEVENTH", "EIGHTH", "NINTH"]
_TEENS = ["TENTH", "ELEVENTH", "TWELFTH", "THIRTEENTH", "FOURTEENTH", "FIFTEENTH", "SIXTEENTH",
          "SEVENTEENTH", "EIGHTEENTH", "NINETEENTH"]
_TENS = ["", "", "TWENTY", "THIRTY", "FORTY", "FIFTY", "SIXTY", "SEVENTY", "EIGHTY", "NINETY"]
_TENTHS = ["", "", "TWENTIETH", "THIRTIETH", "FORTIETH", "FIFTIETH", "SIXTIETH", "SEVENTIETH",
           "EIGHTIETH", "NINETIETH"]


def _ordinal_suffix(n: int) -> str:
    if n % 100 in (11, 12, 13):
        return "TH"
    return {1: "ST", 2: "ND", 3: "RD"}.get(n % 10, "TH")


def _ordinal_words() -> dict[str, str]:
    out: dict[str, str] = {}
    for n in range(1, 100):
        if n < 10:
            word = _UNITS[n]
        elif n < 20:
            word = _TEENS[n - 10]
        elif n % 10 == 0:
            word = _TENTHS[n // 10]
        else:
            word = f"{_TENS[n // 10]}{_UNITS[n % 10]}"
        out[word] = f"{n}{_ordinal_suffix(n)}"
    return out


ORDINAL_WORDS = _ordinal_words()
_ORDINAL_DIGITS = re.compile(r"^0*(\d+)(ST|ND|RD|TH)$")
_PUNCT = re.compile(r"[^A-Z0-9 &/@#-]")


def _word(w: str) -> str:
    if w in ORDINAL_WORDS:
        return ORDINAL_WORDS[w]
    m = _ORDINAL_DIGITS.match(w)
    if m:
        n = int(m.group(1))
        return f"{n}{_ordinal_suffix(n)}"
    return SUFFIXES.get(w, DIRECTIONALS.get(w, w))


def normalize_street(name: str) -> str:
    """'O'Farrell Street' -> 'OFARRELL ST'; 'Twenty-Sixth Avenue', '26th Ave' -> '26TH AVE'."""
    text = name.upper().replace("'", "").replace("’", "").replace(".", "")
    text = re.sub(r"TWENTY|THIRTY|FORTY|FIFTY|SIXTY|SEVENTY|EIGHTY|NINETY",
                  lambda m: m.group(0) + "~", text)
    text = text.replace("~-", "").replace("~ ", "").replace("~", "")
    words = re.sub(r"[^A-Z0-9 ]", " ", text).split()
    if words and words[0] == "ST":  # a leading ST is SAINT: "St Francis Blvd"
        words[0] = "SAINT"
    out = [_word(w) for w in words]
    if len(words) > 1 and words[0] in _LEADING:
        rest = out[1:]
        core = rest[:-1] if rest[-1] in SUFFIX_FORMS else rest
        if len(core) == 1:
            # "SOUTH PARK", "WEST PORTAL AVE", "N Point St": one word after it, so the
            # directional is part of the name, written in full whichever way it was typed
            out[0] = _LEADING[words[0]]
        elif not core:
            out[0] = words[0]     # "SOUTH DR", "E ST": the whole name, as written
    return " ".join(out)


# A leading directional, full or abbreviated, and how it is written when it is part of the name
_LEADING = {**{w: w for w in DIRECTIONALS}, **{a: w for w, a in DIRECTIONALS.items()}}


def normalize_text(text: str) -> str:
    """Place names and aliases: upper case, punctuation out, spaces collapsed."""
    return " ".join(re.sub(r"[^A-Z0-9 ]", " ", text.upper().replace("'", "")).split())


def base_name(norm: str) -> str:
    """The street name without its suffix: 'FOLSOM ST' -> 'FOLSOM' (a name typed without one)."""
    parts = norm.split()
    if len(parts) > 1 and parts[-1] in SUFFIX_FORMS:
        return " ".join(parts[:-1])
    return norm


@dataclass(frozen=True)
class ParsedQuery:
    """A typed location: ``kind`` is address (number + street), block (a hundred-block),
    intersection (two streets), or name (a street or a place without a number)."""

    kind: str
    text: str                 # what was typed, trimmed
    number: int | None = None
    number_suffix: str = ""   # 12A
    street: str = ""          # as typed (normalise with normalize_street)
    street2: str = ""         # the cross street of an intersection
    unit: str = ""            # apartment, suite ...: kept with the incident, never moves the point


_UNIT = re.compile(r"(?:\s+|^)(?:APT|APARTMENT|UNIT|STE|SUITE|RM|ROOM|FL|FLOOR|SPC|SPACE|#)"
                   r"\s*#?\s*([A-Z0-9-]+)\s*$")
# "100 BLOCK MARKET ST", "0 Block of BALCETA AVE", "800 Block of BLK WEBSTER ST", "100 BLK OAK ST"
_BLOCK = re.compile(r"^(\d+)\s+(?:BLOCK|BLK)(?:\s+OF)?(?:\s+BLK)?\s+(.+)$")
_SPLIT = re.compile(r"\s*(?:&|/|@|\bAND\b|\bAT\b)\s*")
_NUMBER = re.compile(r"^(\d+)\s*([A-Z])?(?:\s*-\s*\d+[A-Z]?)?\s+(.+)$")
_CITY_TAIL = re.compile(r"\s+(?:CA|CALIFORNIA)(?:\s+\d{5}(?:-\d{4})?)?$|\s+\d{5}(?:-\d{4})?$")


def parse_query(text: str) -> ParsedQuery:
    raw = " ".join(text.strip().split())
    up = raw.upper()
    parts = [p.strip() for p in up.split(",") if p.strip()]
    head = parts[0] if parts else ""
    unit = ""
    # "935 FOLSOM ST, APT 3, SAN FRANCISCO, CA 94107": a later part may be the unit
    for extra in parts[1:]:
        m = _UNIT.search(" " + extra)
        if m and not unit:
            unit = m.group(1)
    head = _CITY_TAIL.sub("", head)
    m = _UNIT.search(head)
    if m and m.start() > 0:
        unit = unit or m.group(1)
        head = head[:m.start()].strip()
    m = _BLOCK.match(head)
    if m:
        return ParsedQuery("block", raw, number=int(m.group(1)), street=m.group(2), unit=unit)
    pieces = [p for p in _SPLIT.split(head) if p.strip()]
    if len(pieces) == 2:
        return ParsedQuery("intersection", raw, street=pieces[0], street2=pieces[1], unit=unit)
    m = _NUMBER.match(head)
    if m and normalize_street(m.group(3)):
        return ParsedQuery("address", raw, number=int(m.group(1)), number_suffix=m.group(2) or "",
                           street=m.group(3), unit=unit)
    return ParsedQuery("name", raw, street=head, unit=unit)
