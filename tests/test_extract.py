import numpy as np
import torch

from charlens.analysis.runs.extract import iter_attention
from charlens.data.tokenizer import CharTokenizer
from charlens.model.hooks import attention_patterns
from charlens.model.transformer import ModelConfig, TransformerLM


def setup(T=16):
    tok = CharTokenizer.from_text("abcdefgh .")
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=tok.vocab_size, block_size=T, n_layer=2, n_head=2, n_embd=16))
    return tok, model


def test_streamed_attention_equals_a_direct_forward_pass():
    tok, model = setup()
    windows = ["abcdefgh abcdefg", "hgfedcba. abcdef", "a b c d e f g h "]
    got = [w for batch in iter_attention(model, tok, windows, "en", batch_size=2) for w in batch.windows()]
    assert [t for _, t, _ in got] == windows
    ids = torch.from_numpy(np.stack([tok.encode(w).astype(np.int64) for w in windows]))
    att = attention_patterns(model.eval(), ids)
    for k, (a, _, classes) in enumerate(got):
        assert a.shape == (2, 2, 16, 16)
        assert torch.allclose(a, att[k], atol=1e-6)
        assert classes.dtype == np.int8
    assert got[0][2][8] == 4 and got[1][2][8] == 6  # space, punctuation


def test_batches_group_equal_lengths_and_respect_batch_size():
    tok, model = setup()
    windows = ["abc", "bca", "cab", "ab cd", "abcd."]
    shapes = [b.attention.shape[0:1] + b.attention.shape[-1:] for b in iter_attention(model, tok, windows, "en", batch_size=2)]
    assert shapes == [(2, 3), (1, 3), (2, 5)]


def test_extraction_runs_in_eval_mode_without_gradients():
    tok, model = setup()
    model.train()
    batch = next(iter_attention(model, tok, ["abcdefgh abcdefg"], "en"))
    assert not model.training and not batch.attention.requires_grad
