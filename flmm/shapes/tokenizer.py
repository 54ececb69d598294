"""Word-level tokenizer and chat template of the tiny shapes-world LMM.

One token per word of the shapes world (:func:`flmm.world.vocabulary`, plus the words of the user
prompts), whitespace pre-tokenisation, and the LLaVA-1.5 conversation format::

    <s>USER: <image>
    what color is the star ? ASSISTANT: red</s>USER: how many circles are there ? ASSISTANT: two</s>

``<s>`` is added by the tokenizer's post-processor (as Llama tokenizers do), so both
``processor(text=prompt)`` and ``processor.apply_chat_template(..., tokenize=True)`` produce it once.
Character offsets (``return_offsets_mapping=True``) are exact: each word token spans its word.
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS, IMAGE = "<pad>", "<unk>", "<s>", "</s>", "<image>"
USER, ASSISTANT = "USER:", "ASSISTANT:"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS, IMAGE, USER, ASSISTANT)

# Words of the user prompts (captioning and grounding requests) and separators (";" joins referring
# expressions into one answer, as in the paper's RES-as-narrative recipe) that the world's vocabulary lacks.
PROMPT_WORDS: tuple[str, ...] = (
    ";",
    "please",
    "give",
    "me",
    "description",
    "describe",
    "image",
    "picture",
    "this",
    "segment",
    "where",
    "find",
    "show",
)

# LLaVA-1.5 layout. `{% generation %}` marks the assistant tokens so that
# `return_assistant_tokens_mask=True` works as with hub templates (the space after "ASSISTANT:" stays
# outside: a mask that starts on a space maps to no token and transformers then drops it); content may be a string or a list of
# {"type": "image"} / {"type": "text", "text": ...} items.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{ 'USER:' }}"
    "{%- if message['content'] is string -%}{{ ' ' + message['content'] }}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ ' <image>\n' }}"
    "{%- elif item['type'] == 'text' and loop.previtem is defined and loop.previtem['type'] == 'image' -%}"
    "{{ item['text'] }}"
    "{%- elif item['type'] == 'text' -%}{{ ' ' + item['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ ' ' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ 'ASSISTANT: ' }}"
    "{% generation %}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}"
    "{{ message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') }}"
    "{%- endif -%}"
    "{{ '</s>' }}"
    "{% endgeneration %}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)


def build_vocab(words: list[str] | None = None) -> dict[str, int]:
    """``{token: id}``: the special tokens first (ids 0..6), then the words sorted.

    Args:
        words: the word list; default :func:`flmm.world.vocabulary` plus :data:`PROMPT_WORDS`.
    """
    if words is None:
        from flmm.world import vocabulary

        words = [*vocabulary(), *PROMPT_WORDS]
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for w in sorted(set(words) - set(SPECIAL_TOKENS)):
        vocab[w] = len(vocab)
    return vocab


def build_tokenizer(words: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A fast word-level tokenizer with the chat template attached (see the module docstring)."""
    vocab = build_vocab(words)
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    # Free text ("Please give me a description of the image.") must map onto the world's words:
    # lower-case it and cut punctuation off words. Not `Whitespace`: hyphenated words ("left-most")
    # must stay whole. Offsets still index the original text.
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"[.,?;!:]"), behavior="isolated")]
    )
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins word tokens with spaces
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE},
        padding_side="left",  # batched generation continues each prompt right after its last token
        model_max_length=2048,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
