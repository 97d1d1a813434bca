"""Byte-level BPE tokenizers trained on a task's own text (no download), with distinct BOS/EOS and pad."""

from __future__ import annotations

from typing import Iterable

EOS = "<|endoftext|>"
PAD = "<|pad|>"
#: A minimal chat template for tiny tokenizers, so conversational datasets render without a Hub tokenizer.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2):
    """Train a byte-level BPE tokenizer and wrap it as a transformers fast tokenizer.

    Id 0 is ``<|endoftext|>`` (BOS and EOS, as in GPT-2) and id 1 is ``<|pad|>``; prompts get a leading BOS
    through the post-processor, so ``tokenizer(text)`` matches what the model saw in pretraining.
    """
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=[EOS, PAD], show_progress=False)
    bpe.post_processor = TemplateProcessing(single=f"{EOS} $A", pair=f"{EOS} $A $B", special_tokens=[(EOS, 0)])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=EOS, eos_token=EOS, pad_token=PAD,
                                  padding_side="left")
    tok.chat_template = CHAT_TEMPLATE
    return tok
