"""The browsers the system recommends (SPEC X3, FAQ O3: 建议使用 Google Chrome 或 Mozilla Firefox),
in one place: every web page the system ships is tested in both (tests/standalone), the card check
page says so, and teams' support contacts answer it to frontends."""

from __future__ import annotations

#: the recommended browsers, by the names their makers give them
RECOMMENDED_BROWSERS = ("Google Chrome", "Mozilla Firefox")

#: the recommendation as a sentence, by language
BROWSER_ADVICE = {
    "zh": "建议使用 Google Chrome(谷歌)或 Mozilla Firefox(火狐)浏览器访问本系统。",
    "en": "We recommend Google Chrome or Mozilla Firefox for this system.",
}
