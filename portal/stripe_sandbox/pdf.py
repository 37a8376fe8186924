"""A one-page invoice PDF, written by hand: valid, tiny, and no PDF library to install."""

from __future__ import annotations

from typing import Any

from portal.stripe_sandbox.display import format_amount, format_date


def _text(value: str) -> bytes:
    # WinAnsiEncoding is Windows-1252: it has €, £, × and the dashes the lines use.
    raw = value.encode("cp1252", "replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _lines(invoice: dict[str, Any]) -> list[str]:
    line = invoice["lines"]["data"][0]
    return [
        f"Invoice {invoice['number']}",
        "",
        f"Status: {invoice['status']}",
        f"Date: {format_date(invoice['created'])}",
        f"Period: {format_date(line['period']['start'])} – {format_date(line['period']['end'])}",
        f"{line['description']}",
        f"Amount due: {format_amount(invoice['amount_due'], invoice['currency'])}",
        f"Amount paid: {format_amount(invoice['amount_paid'], invoice['currency'])}",
        "",
        "Issued by the offline Stripe sandbox (test mode): no money was moved.",
    ]


def invoice_pdf(invoice: dict[str, Any]) -> bytes:
    body = (
        b"BT /F1 12 Tf 16 TL 72 740 Td "
        + b" ".join(b"(" + _text(text) + b") Tj T*" for text in _lines(invoice))
        + b" ET"
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(body) + body + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
