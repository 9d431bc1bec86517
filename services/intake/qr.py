"""QR codes that open a community's pickup request page."""

import io

import segno


def request_url(public_url: str, code: str) -> str:
    return f"{public_url.rstrip('/')}/r/{code}"


def png(url: str, *, scale: int = 8) -> bytes:
    buffer = io.BytesIO()
    segno.make_qr(url, error="m").save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def svg(url: str, *, scale: int = 8) -> bytes:
    buffer = io.BytesIO()
    segno.make_qr(url, error="m").save(buffer, kind="svg", scale=scale, border=4)
    return buffer.getvalue()
