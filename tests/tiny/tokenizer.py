"""A word-level tokenizer with a LLaVA-like chat template, built offline for tests."""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

WORDS = (
    "USER ASSISTANT : . , ? ; a an the is are of and on in left right top bottom what color shape "
    "red green blue yellow circle square triangle star man dog cat sky grass please describe image "
    "there one two three yes no this picture shows big small"
).split()

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}USER : "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<image> {% else %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %} "
    "{% else %}ASSISTANT : "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{{ p['text'] }}{% endfor %}{% endif %}{{ eos_token }} {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT :{% endif %}"
)


def word_tokenizer(extra_special: tuple[str, ...] = ("<image>",)) -> PreTrainedTokenizerFast:
    specials = ["<pad>", "<unk>", "<s>", "</s>", *extra_special]
    vocab = {t: i for i, t in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.add_special_tokens({"additional_special_tokens": list(extra_special)})
    fast.chat_template = CHAT_TEMPLATE
    return fast
