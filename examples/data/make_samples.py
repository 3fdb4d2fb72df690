"""Render the sample documents of ``document_insights.yaml``.

The texts are written for this project (no third-party content) and every name in
them is fictional. Each is rendered to an image with Pillow's bundled font, the
way a scan or a screenshot would arrive; the last one becomes a two-page PDF
through Pillow's PDF writer, so the pipeline's OCR step sees both formats.

    python examples/data/make_samples.py
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).parent / "documents"

DOCUMENTS: dict[str, list[str]] = {
    "harbor-bank-results": [
        "Harbor Bank reports strong third quarter results",
        "Harbor Bank, the regional lender based in Portland, reported a net profit of 84 million dollars for "
        "the third quarter, up 18 percent from a year earlier. Chief executive Laura Chen said higher interest "
        "rates and steady loan growth lifted revenue. Deposits rose to 12 billion dollars as savers moved money "
        "from checking accounts into term deposits. The bank set aside more money for bad loans after "
        "commercial property prices fell in Seattle and Denver. Analysts at Meridian Securities had expected "
        "a smaller profit. The board approved a dividend of 40 cents per share and a new share buyback of "
        "200 million dollars. Shares of Harbor Bank rose four percent in early trading on Wednesday.",
    ],
    "lumen-laptop-review": [
        "Review: the Lumen Air 14 laptop disappoints",
        "I bought the Lumen Air 14 from Northwind Electronics last month and I regret it. The screen is bright "
        "and sharp, but the battery barely lasts four hours, far from the twelve hours the box promises. The "
        "keyboard flexes when you type and the trackpad often misses clicks. Worse, the laptop overheats during "
        "video calls and the fan is loud enough to distract everyone in the meeting. A software update from "
        "Lumen Systems made the Wi-Fi connection drop every few minutes. Support in Austin asked me to reset "
        "the machine twice and then stopped answering my emails. For this price there are faster, quieter and "
        "better built computers. I would not recommend it.",
    ],
    "riverside-council-minutes": [
        "Riverside City Council: minutes of the budget session",
        "The Riverside City Council met on Tuesday evening to vote on the budget for next year. Mayor Daniel "
        "Okafor opened the session and thanked residents for their comments during the public consultation. "
        "The council approved 2.4 million dollars for public parks, including three new playgrounds and the "
        "repair of the river trail. Councillor Priya Shah proposed longer opening hours for the public "
        "libraries, and the motion passed by seven votes to two.",
        "The council rejected a proposal to raise parking fees in the town centre after local shop owners "
        "objected. The planning department will publish new rules for housing permits in the spring, and a "
        "public hearing on the transport plan is set for March. The state of Oregon will fund half of the cost "
        "of the new bus lanes. The next council meeting will take place on the first Monday of next month.",
    ],
}


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Serif when the system has it (its capital I has serifs, which OCR
    tells apart from a bar), else Pillow's bundled font."""
    try:
        return ImageFont.truetype("DejaVuSerif.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def render_page(title: str, body: str, *, width: int = 1240) -> Image.Image:
    lines = textwrap.wrap(body, 80)
    height = 170 + 34 * len(lines) + 80
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    draw.text((60, 60), title, fill=0, font=font(34))
    for i, line in enumerate(lines):
        draw.text((60, 150 + 34 * i), line, fill=0, font=font(24))
    return page


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (title, *pages) in DOCUMENTS.items():
        images = [render_page(title if i == 0 else f"{title} (continued)", body) for i, body in enumerate(pages)]
        if len(images) == 1:
            target = OUT / f"{name}.png"
            images[0].save(target, optimize=True)
        else:
            target = OUT / f"{name}.pdf"
            images[0].save(target, "PDF", save_all=True, append_images=images[1:], resolution=150)
        print(f"wrote {target} ({target.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
