"""The small pickup request page a community's QR code opens on a phone."""

from html import escape

from services.intake.catalog import CHAPTER_17
from services.intake.models import Community, PickupRequest

COMMON_MATERIALS = (
    "17 01 07",
    "17 01 01",
    "17 01 02",
    "17 01 03",
    "17 02 01",
    "17 02 02",
    "17 02 03",
    "17 04 07",
    "17 08 02",
    "17 09 04",
)

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;padding:1rem;max-width:32rem;
margin-inline:auto;line-height:1.4}
h1{font-size:1.3rem}label{display:block;margin:.8rem 0 .2rem;font-weight:600}
input,select,button{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;
min-height:2.75rem}select{margin-top:.4rem}
fieldset{border:1px solid #ccc;margin:.8rem 0}.check{display:flex;gap:.6rem;
align-items:center;font-weight:normal;min-height:2.75rem;margin:0;padding:.15rem 0}
.check input{width:1.4rem;height:1.4rem;min-height:0;flex:none}
button{margin-top:1rem;background:#1b5e20;color:#fff;border:0;border-radius:.3rem;
font-weight:600}code{overflow-wrap:anywhere}
.error{background:#fdecea;padding:.6rem;border-radius:.3rem}
"""


def _page(title: str, content: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{content}</body></html>"
    )


def _materials() -> str:
    boxes = []
    for code in COMMON_MATERIALS:
        boxes.append(
            f'<label class="check"><input type="checkbox" name="materials" '
            f'value="{escape(code)}"> {escape(code)} {escape(CHAPTER_17[code])}</label>'
        )
    return "".join(boxes)


def request_form(
    community: Community, *, token: str | None, signed_in: bool, timezone: str
) -> str:
    """The request form; it asks for a token only when the phone has none."""
    hidden = (
        f'<input type="hidden" name="token" value="{escape(token)}">' if token else ""
    )
    sign_in = (
        ""
        if token or signed_in
        else '<label for="token">Access token</label>'
        '<input id="token" name="token" type="password" required>'
    )
    content = f"""
<h1>Renovation waste pickup</h1>
<p><strong>{escape(community.name)}</strong><br>{escape(community.address)}</p>
<form method="post" action="/r/{escape(community.code)}">
{hidden}{sign_in}
<label for="unit">Flat or unit</label>
<input id="unit" name="unit" required maxlength="100">
<fieldset><legend>Materials</legend>{_materials()}</fieldset>
<label for="quantity">Estimated amount</label>
<input id="quantity" name="quantity" type="number" min="1" required>
<select name="quantity_unit" aria-label="unit of the amount">
<option value="bags">bags</option><option value="litres">litres</option></select>
<label for="preferred_start">Earliest pickup ({escape(timezone)})</label>
<input id="preferred_start" name="preferred_start" type="datetime-local" required>
<label for="preferred_end">Latest pickup ({escape(timezone)})</label>
<input id="preferred_end" name="preferred_end" type="datetime-local" required>
<button type="submit">Request pickup</button>
</form>"""
    return _page("Request a pickup", content)


def request_created(request: PickupRequest) -> str:
    quote = request.quote or {}
    content = f"""
<h1>Pickup requested</h1>
<p>Request <code id="request-id">{escape(request.id)}</code></p>
<p>Status: <span id="status">{escape(request.status)}</span></p>
<p>Fee: <span id="fee">{escape(str(quote.get("amount", "")))}</span>
{escape(str(quote.get("currency", "")))}</p>"""
    return _page("Pickup requested", content)


def error(status: int, detail: str, messages: list[str] | None = None) -> str:
    items = "".join(f"<li>{escape(message)}</li>" for message in messages or [])
    listed = f"<ul>{items}</ul>" if items else ""
    content = (
        f'<h1>Request not accepted</h1><div class="error" role="alert">'
        f"<p>{escape(detail)}</p>{listed}</div><p>Status {status}.</p>"
    )
    return _page("Request not accepted", content)
