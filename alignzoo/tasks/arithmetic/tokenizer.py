"""The arithmetic task's tokenizer: one token per character, so every digit is its own token.

A BPE tokenizer merges frequent digit runs ("12", "100") into single tokens, and a ~100k-parameter model then has
to learn the sum of every pair of merged chunks; one token per digit lets it learn column arithmetic. The
vocabulary is fixed (special tokens, then ``ALPHABET``): ``vocab_size`` does not apply, and characters outside
the alphabet become ``<|unk|>``.
"""

from __future__ import annotations

from alignzoo.models.tokenizer import CHAT_TEMPLATE, EOS, PAD

UNK = "<|unk|>"
#: every character a prompt or a worked solution uses (word problems use the letters and "?.,")
ALPHABET = " 0123456789+-*=#,.?abcdefghijklmnopqrstuvwxyz\n"


def char_tokenizer():
    """A transformers fast tokenizer: id 0 is EOS (also BOS, added before every text as the BPE ones do), 1 pad,
    2 unknown, then one id per character of ``ALPHABET``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([EOS, PAD, UNK, *ALPHABET])}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(".|\n"), behavior="isolated")  # every character alone
    core.decoder = decoders.Fuse()  # characters join back without separators
    core.post_processor = TemplateProcessing(single=f"{EOS} $A", pair=f"{EOS} $A $B", special_tokens=[(EOS, 0)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=EOS, eos_token=EOS, pad_token=PAD,
                                  unk_token=UNK, padding_side="left")
    tok.chat_template = CHAT_TEMPLATE
    return tok
