"""The retirement certificate as a one-page PDF, beside its signed JSON.

The PDF says what the signed statement says and prints the statement's
SHA-256 and the trading key's signature, so a reader can match the paper to
the JSON certificate and the ledger's credit.retirement entry.
"""

import io
import textwrap
from typing import Any

from reportlab.lib.colors import HexColor
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas

from shared.canonical import canonical_json, sha256

WIDTH, HEIGHT = A4
MARGIN = 20 * mm
INK = HexColor("#1f2d3d")
MUTED = HexColor("#5b6b7b")
RULE = HexColor("#2e7d32")
CJK_FONT = "STSong-Light"
pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))


def _font_for(text: str) -> str:
    """Helvetica for Latin text; a CID font for Chinese names and purposes."""
    return "Helvetica" if all(ord(ch) < 256 for ch in text) else CJK_FONT


def render_pdf(certificate: dict[str, Any], *, registry_url: str = "") -> bytes:
    """A deterministic PDF of a signed retirement certificate."""
    statement = certificate["statement"]
    body = statement["body"]
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=1, pageCompression=1)
    canvas.setTitle(f"Retirement certificate {body['retirement_id']}")
    canvas.setAuthor("Salvage trading")
    y = _heading(canvas, body)
    y = _facts(canvas, y, _facts_of(statement, body))
    y = _serials(canvas, y, body["serials"])
    _proof(canvas, y, certificate, registry_url)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _heading(canvas: Canvas, body: dict[str, Any]) -> float:
    canvas.setFillColor(RULE)
    canvas.rect(0, HEIGHT - 12 * mm, WIDTH, 12 * mm, stroke=0, fill=1)
    canvas.setFillColor(INK)
    canvas.setFont("Helvetica-Bold", 22)
    canvas.drawString(MARGIN, HEIGHT - 32 * mm, "Retirement certificate")
    canvas.setFont("Helvetica", 11)
    canvas.setFillColor(MUTED)
    canvas.drawString(
        MARGIN,
        HEIGHT - 40 * mm,
        "Salvage: verified recycling of renovation waste, in tonnes of CO2e",
    )
    canvas.setFillColor(INK)
    canvas.setFont("Helvetica-Bold", 40)
    canvas.drawString(MARGIN, HEIGHT - 62 * mm, f"{body['quantity_t']} t CO2e")
    canvas.setFont("Helvetica", 12)
    canvas.drawString(
        MARGIN, HEIGHT - 70 * mm, "retired for good on behalf of the beneficiary below"
    )
    return HEIGHT - 84 * mm


def _facts_of(statement: dict[str, Any], body: dict[str, Any]) -> list[tuple]:
    return [
        ("Beneficiary", body["beneficiary"]),
        ("Purpose", body["purpose"]),
        ("Retired by", body.get("org_id", "")),
        ("Retired at", statement["at"]),
        ("Certificate", body["retirement_id"]),
    ]


def _facts(canvas: Canvas, y: float, facts: list[tuple[str, str]]) -> float:
    for label, value in facts:
        canvas.setFont("Helvetica", 9)
        canvas.setFillColor(MUTED)
        canvas.drawString(MARGIN, y, label.upper())
        canvas.setFont(_font_for(str(value)), 12)
        canvas.setFillColor(INK)
        width = 70 if _font_for(str(value)) == "Helvetica" else 38
        for line in textwrap.wrap(str(value), width) or [""]:
            y -= 5.5 * mm
            canvas.drawString(MARGIN, y, line)
        y -= 7 * mm
    return y


def _serials(canvas: Canvas, y: float, serials: list[str]) -> float:
    canvas.setFont("Helvetica", 9)
    canvas.setFillColor(MUTED)
    canvas.drawString(MARGIN, y, "SERIAL NUMBERS (PROJECT-VINTAGE-FIRST-LAST TONNE)")
    canvas.setFont("Courier", 10)
    canvas.setFillColor(INK)
    shown = serials[:12]
    for serial in shown:
        y -= 5 * mm
        canvas.drawString(MARGIN, y, serial)
    if len(serials) > len(shown):
        y -= 5 * mm
        canvas.drawString(MARGIN, y, f"... and {len(serials) - len(shown)} more blocks")
    return y - 10 * mm


def _proof(
    canvas: Canvas, y: float, certificate: dict[str, Any], registry_url: str
) -> None:
    signature = certificate["signatures"][0]
    digest = sha256(canonical_json(certificate["statement"])).hex()
    canvas.setStrokeColor(RULE)
    canvas.line(MARGIN, y, WIDTH - MARGIN, y)
    y -= 7 * mm
    lines = [
        ("Statement SHA-256 (RFC 8785 JSON)", [digest]),
        ("Signed by trading key", [signature["key_id"]]),
        ("Ed25519 signature", textwrap.wrap(signature["signature"], 64)),
    ]
    for label, values in lines:
        canvas.setFont("Helvetica", 9)
        canvas.setFillColor(MUTED)
        canvas.drawString(MARGIN, y, label.upper())
        canvas.setFont("Courier", 9)
        canvas.setFillColor(INK)
        for value in values:
            y -= 4.5 * mm
            canvas.drawString(MARGIN, y, value)
        y -= 6 * mm
    canvas.setFont("Helvetica", 8.5)
    canvas.setFillColor(MUTED)
    note = (
        "This page restates the signed JSON certificate. The same statement is a "
        "credit.retirement entry in the Salvage ledger; check it, and the seals of "
        "every batch behind these serials, with the provenance bundle of any serial "
        f"({registry_url or ''}/v1/credits/<serial>/bundle) and salvage audit."
    )
    for line in textwrap.wrap(note, 110):
        canvas.drawString(MARGIN, y, line)
        y -= 4 * mm
