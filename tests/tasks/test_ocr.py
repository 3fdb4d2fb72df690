from __future__ import annotations

import difflib
import io
import textwrap
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from legato import tasks
from legato.errors import InputError

from .conftest import load_data

pytestmark = pytest.mark.local_models

PARAGRAPHS: list[str] = load_data("ocr")["items"]


def render(text: str, size: int = 28) -> Image.Image:
    font = ImageFont.load_default(size=size)
    lines = textwrap.wrap(text, 60)
    image = Image.new("RGB", (1100, 60 + 40 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((30, 30 + 40 * i), line, fill="black", font=font)
    return image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def accuracy(expected: str, got: str) -> float:
    return difflib.SequenceMatcher(None, expected, got, autojunk=False).ratio()


def test_character_accuracy_on_rendered_images_is_at_least_95_percent(ocr_task: tasks.OcrTask) -> None:
    results = ocr_task.run_sync([png(render(p)) for p in PARAGRAPHS])
    for paragraph, result in zip(PARAGRAPHS, results, strict=True):
        assert accuracy(paragraph, result.text) >= 0.95, result.text
        assert result.pages[0].method == "tesseract"


async def test_reads_image_files_by_path(ocr_task: tasks.OcrTask, tmp_path: Path) -> None:
    path = tmp_path / "note.png"
    render(PARAGRAPHS[1]).save(path)
    result = await ocr_task(path)
    assert result.source == str(path)
    assert accuracy(PARAGRAPHS[1], result.text) >= 0.95


def test_scanned_pdf_pages_are_rendered_and_recognised(ocr_task: tasks.OcrTask, tmp_path: Path) -> None:
    pages = [render(p) for p in PARAGRAPHS[:2]]
    path = tmp_path / "scan.pdf"
    pages[0].save(path, "PDF", save_all=True, append_images=pages[1:], resolution=100)
    [result] = ocr_task.run_sync([path])
    assert [p.number for p in result.pages] == [1, 2]
    for paragraph, page in zip(PARAGRAPHS[:2], result.pages, strict=True):
        assert page.method == "tesseract"
        assert accuracy(paragraph, page.text) >= 0.95


def _text_pdf(text: str) -> bytes:
    """A one-page PDF with a real text layer (Helvetica), written by hand."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_a_pdf_text_layer_is_read_directly(ocr_task: tasks.OcrTask) -> None:
    [result] = ocr_task.run_sync([_text_pdf("Invoice 2024-117 for Example Ltd")])
    assert result.pages[0].method == "pdf-text"
    assert result.text == "Invoice 2024-117 for Example Ltd"


@pytest.mark.slow
def test_rapidocr_engine_reads_rendered_text() -> None:
    rapid = tasks.get("ocr", engine="rapidocr")
    [result] = rapid.run_sync([png(render(PARAGRAPHS[0]))])
    assert result.pages[0].method == "rapidocr"
    assert accuracy(PARAGRAPHS[0], result.text) >= 0.95


def test_bad_input_is_an_input_error(ocr_task: tasks.OcrTask, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        ocr_task.run_sync([tmp_path / "missing.png"])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"unsupported file type '\.txt'"):
        ocr_task.run_sync([tmp_path / "notes.txt"])
    with pytest.raises(InputError, match="not a readable image"):
        ocr_task.run_sync([b"definitely not an image"])
    with pytest.raises(InputError, match="not a readable PDF"):
        ocr_task.run_sync([b"%PDF-1.4 truncated"])
