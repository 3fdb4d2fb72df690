"""``ocr``: text from images and PDFs.

Two engines, both offline:

- ``tesseract`` (default): the Debian ``tesseract-ocr`` + ``tesseract-ocr-eng``
  binaries driven by ``pytesseract``. Fast to start and exact on clean print.
- ``rapidocr``: ``rapidocr_onnxruntime``, whose ONNX detection and recognition models
  ship inside the wheel. No system package needed; slower to load.

Tesseract is started with ``OMP_THREAD_LIMIT=1`` (unless the environment sets
it): its OpenMP threads otherwise spin against the other models for the same
cores, and on two busy cores the three sample documents took 9.1 s instead of
2.2 s. Documents are read in parallel by the pipeline (``max_concurrency``)
instead. pytesseract has no per-call environment, so its module-level copy of the
environment is given the limit.

Images are read with Pillow. PDFs are opened with ``pypdfium2``: a page that has a
text layer gives its text directly (exact, no OCR); a scanned page is rendered at
``dpi`` and recognised. The result says which method produced each page.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from legato.errors import ConfigError, InputError
from legato.tasks._base import Task

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["OcrPage", "OcrResult", "OcrTask"]

Engine = Literal["tesseract", "rapidocr"]
OcrInput = str | Path | bytes

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".pnm", ".ppm"}


class OcrPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: int
    text: str
    method: str  # "tesseract", "rapidocr" or "pdf-text"


class OcrResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    pages: list[OcrPage]
    source: str | None = None


class OcrTask(Task[OcrInput, OcrResult]):
    """Recognise the text of an image or PDF given as a path or as bytes."""

    name: ClassVar[str] = "ocr"

    def __init__(self, engine: Engine = "tesseract", lang: str = "eng", dpi: int = 200) -> None:
        super().__init__()
        if engine not in ("tesseract", "rapidocr"):
            raise ConfigError(f"task 'ocr': engine must be 'tesseract' or 'rapidocr', not {engine!r}")
        if not 50 <= dpi <= 600:
            raise ConfigError(f"task 'ocr': dpi must be between 50 and 600, not {dpi}")
        self.engine: Engine = engine
        self.lang = lang
        self.dpi = dpi
        self._rapid: Any = None
        self.model_name = f"tesseract-{lang}" if engine == "tesseract" else "rapidocr-onnx"

    def _load(self) -> None:
        if self.engine == "tesseract":
            import pytesseract

            if shutil.which("tesseract") is None:
                raise ConfigError(
                    "task 'ocr': the tesseract binary is not installed "
                    "(apt-get install tesseract-ocr tesseract-ocr-eng, or use engine: rapidocr)"
                )
            module = pytesseract.pytesseract
            if "OMP_THREAD_LIMIT" not in os.environ and isinstance(getattr(module, "environ", None), Mapping):
                module.environ = {**module.environ, "OMP_THREAD_LIMIT": "1"}
            langs = pytesseract.get_languages(config="")
            if self.lang not in langs:
                raise ConfigError(
                    f"task 'ocr': tesseract has no language {self.lang!r} "
                    f"(installed: {', '.join(sorted(langs))}); install tesseract-ocr-{self.lang}"
                )
        else:
            from rapidocr_onnxruntime import RapidOCR

            self._rapid = RapidOCR()

    def _run(self, items: list[OcrInput]) -> list[OcrResult]:
        return [self._one(item) for item in items]

    def _one(self, item: OcrInput) -> OcrResult:
        source = str(item) if isinstance(item, str | Path) else None
        data = _read(item)
        if data[:5] == b"%PDF-":
            pages = self._pdf(data)
        else:
            pages = [OcrPage(number=1, text=self._recognise(_open_image(data, source)), method=self.engine)]
        text = "\n\n".join(p.text for p in pages if p.text)
        return OcrResult(text=text, pages=pages, source=source)

    def _pdf(self, data: bytes) -> list[OcrPage]:
        import pypdfium2

        try:
            pdf = pypdfium2.PdfDocument(data)
        except pypdfium2.PdfiumError as exc:
            raise InputError(f"ocr: not a readable PDF: {exc}") from exc
        pages: list[OcrPage] = []
        try:
            for index in range(len(pdf)):
                page = pdf[index]
                textpage = page.get_textpage()
                layer = textpage.get_text_bounded().strip()
                textpage.close()
                if layer:
                    pages.append(OcrPage(number=index + 1, text=layer, method="pdf-text"))
                else:
                    image = page.render(scale=self.dpi / 72).to_pil()
                    pages.append(OcrPage(number=index + 1, text=self._recognise(image), method=self.engine))
                page.close()
        finally:
            pdf.close()
        return pages

    def _recognise(self, image: Image) -> str:
        if self.engine == "tesseract":
            import pytesseract

            text: str = pytesseract.image_to_string(image.convert("RGB"), lang=self.lang)
            return _tidy(text)
        import numpy as np

        result, _elapsed = self._rapid(np.asarray(image.convert("RGB")))
        lines = [str(entry[1]) for entry in result or []]
        return _tidy("\n".join(lines))


def _read(item: OcrInput) -> bytes:
    if isinstance(item, bytes):
        if not item:
            raise InputError("ocr: empty input")
        return item
    path = Path(item)
    if not path.is_file():
        raise InputError(f"ocr: no such file: {path}")
    if path.suffix.lower() not in _IMAGE_SUFFIXES | {".pdf"}:
        raise InputError(f"ocr: unsupported file type {path.suffix!r} ({path}); give an image or a PDF")
    return path.read_bytes()


def _open_image(data: bytes, source: str | None) -> Image:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"ocr: not a readable image or PDF: {source or 'bytes input'}") from exc
    return image


def _tidy(text: str) -> str:
    """Join the lines of each paragraph; keep blank lines between paragraphs.

    Tesseract sometimes sees a paragraph break inside a sentence (a wider gap
    between two lines); a block that starts with a lower-case letter continues
    the previous one.
    """
    paragraphs: list[str] = []
    for block in text.split("\n\n"):
        joined = " ".join(line.strip() for line in block.splitlines() if line.strip())
        if not joined:
            continue
        if paragraphs and joined[0].islower():
            paragraphs[-1] = f"{paragraphs[-1]} {joined}"
        else:
            paragraphs.append(joined)
    return "\n\n".join(paragraphs)
