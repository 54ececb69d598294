"""A word-level tokenizer with a LLaVA-like chat template, built offline for tests."""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

WORDS = (
    "USER ASSISTANT : . , ? ; a an the is are of and on in left right top bottom what color shape "
    "red green blue yellow circle square triangle star man dog cat sky grass please describe image "
    "there one two three yes no this picture shows big small"
).split()


def chat_template(image_text: str = "<image> ") -> str:
    """A LLaVA-like template; ``image_text`` is what an image part renders to (each family's placeholder)."""
    return (
        "{{ bos_token }}{% for m in messages %}"
        "{% if m['role'] == 'user' %}USER : "
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
        "{% if p['type'] == 'image' %}"
        + image_text
        + "{% else %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %} "
        "{% else %}ASSISTANT : "
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
        "{{ p['text'] }}{% endfor %}{% endif %}{{ eos_token }} {% endif %}{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT :{% endif %}"
    )


CHAT_TEMPLATE = chat_template()


def word_tokenizer(
    extra_special: tuple[str, ...] = ("<image>",), image_text: str = "<image> "
) -> PreTrainedTokenizerFast:
    specials = ["<pad>", "<unk>", "<s>", "</s>", *extra_special]
    vocab = {t: i for i, t in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.add_special_tokens({"additional_special_tokens": list(extra_special)})
    fast.chat_template = chat_template(image_text)
    return fast


def suppress_special_tokens(model, tok: PreTrainedTokenizerFast) -> None:
    """Keep a random-weight model from generating special tokens other than EOS (``<unk>``, image
    placeholders, ...): decoding skips them, so a generated answer would not re-tokenize to the same ids."""
    ids = sorted(set(tok.all_special_ids) - {tok.eos_token_id})
    model.generation_config.suppress_tokens = ids
