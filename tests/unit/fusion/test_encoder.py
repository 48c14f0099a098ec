"""The text encoder runs MiniLM only over the batch's real tokens; what it returns is unchanged."""

import torch


def test_token_states_are_those_of_the_full_padded_pass_and_zero_after_the_longest_title(encoder):
    titles = ["Puma Men Blue Tshirt", "Nike"]
    batch = encoder.encode(titles, None)
    assert batch.hidden.shape == (2, encoder.max_tokens, 384)
    assert batch.mask.shape == batch.types.shape == batch.prior.shape == (2, encoder.max_tokens)
    enc = encoder.tokenizer(
        titles, padding="max_length", truncation=True, max_length=encoder.max_tokens, return_tensors="pt"
    )
    with torch.no_grad():
        padded = encoder.model(**enc).last_hidden_state
    real = enc["attention_mask"].bool()
    assert torch.allclose(batch.hidden[real], padded[real], atol=1e-4)
    used = int(enc["attention_mask"].sum(1).max())
    assert used < encoder.max_tokens and not batch.hidden[:, used:].any()
    assert torch.equal(batch.mask, enc["attention_mask"])
