"""The page a phone shows when someone scans a volunteer card's QR code (V9): whether the card is
genuine and current, with the masked name and the volunteer number, nothing else.

The QR code holds the public verification URL, and a phone's camera opens it in a browser, which
asks for HTML: the same check as the JSON answer, as a page. One self-contained HTML5 document (no
script, no external file, inline CSS only), so it opens alike in current Chrome and Firefox, which
the system recommends (X3, FAQ O3), and on a phone's built-in browser.
"""

from __future__ import annotations

from html import escape

from identity.cards import CardCheck
from shared.browsers import BROWSER_ADVICE

_TEXT = {
    "zh": {
        "lang": "zh-CN",
        "title": "志愿服务证核验",
        "current": "此志愿服务证真实有效",
        "not_current": "此志愿服务证为本系统签发,但已失效(已补发新证,或持证人实名认证已撤销)",
        "not_genuine": "无法核验:此二维码不是本系统签发的有效志愿服务证",
        "name": "姓名",
        "number": "志愿者编号",
        "issued": "发证日期",
        "browsers": BROWSER_ADVICE["zh"],
    },
    "en": {
        "lang": "en",
        "title": "Volunteer service card check",
        "current": "This volunteer service card is genuine and current",
        "not_current": (
            "This card was issued by the system but is no longer current (a new card was issued, or the "
            "holder's verification was withdrawn)"
        ),
        "not_genuine": "Cannot verify: this QR code is not a valid card issued by the system",
        "name": "Name",
        "number": "Volunteer number",
        "issued": "Issued on",
        "browsers": BROWSER_ADVICE["en"],
    },
}

_STYLE = (
    "body{margin:0;font-family:system-ui,-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;"
    "background:#f4f5f7;color:#1f2328}"
    "main{max-width:28rem;margin:2rem auto;padding:1.5rem;background:#fff;border-radius:.75rem;"
    "box-shadow:0 1px 4px rgba(0,0,0,.12)}"
    "h1{font-size:1.25rem;margin:0 0 1rem}"
    ".verdict{padding:.75rem 1rem;border-radius:.5rem;font-weight:600}"
    ".ok{background:#e6f4ea;color:#137333}.stale{background:#fef7e0;color:#8a5a00}"
    ".bad{background:#fce8e6;color:#a50e0e}"
    "dl{display:grid;grid-template-columns:auto 1fr;gap:.5rem 1rem;margin:1.25rem 0 0}"
    "dt{color:#59636e}dd{margin:0}footer{font-size:.8rem;color:#59636e;margin-top:1.5rem}"
)


def render_check_page(result: CardCheck, lang: str) -> str:
    text = _TEXT["en" if lang == "en" else "zh"]
    if not result.genuine:
        verdict, kind = text["not_genuine"], "bad"
    elif result.current:
        verdict, kind = text["current"], "ok"
    else:
        verdict, kind = text["not_current"], "stale"
    facts = ""
    if result.genuine:
        rows = [
            (text["name"], result.masked_name),
            (text["number"], result.volunteer_number),
            (text["issued"], result.issued_on.isoformat() if result.issued_on else None),
        ]
        facts = "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows if v) + "</dl>"
    return (
        f'<!DOCTYPE html>\n<html lang="{text["lang"]}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex">\n'
        # an empty icon: browsers then ask the server for none (the page's policy would refuse it)
        '<link rel="icon" href="data:,">\n'
        f"<title>{escape(text['title'])}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{escape(text['title'])}</h1>\n"
        f'<p class="verdict {kind}">{escape(verdict)}</p>\n{facts}\n'
        f"<footer>{escape(text['browsers'])}</footer>\n</main>\n</body>\n</html>\n"
    )
