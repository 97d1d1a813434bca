"""ops' padding helpers against hand-written tensors (the oracles), and the padders built on them."""

import pytest
import torch

from alignzoo.algos.dpo import collate_pairs
from alignzoo.ops import left_pad, pad_completions, right_pad
from alignzoo.stages.lm import sft_batch

RAGGED = [[5, 6, 7], [8], [], [9, 10]]
PAD = 0


def _long(rows):
    return torch.tensor(rows, dtype=torch.long)


def test_right_pad_ragged_rows_exact():
    ids, mask = right_pad(RAGGED, PAD)
    assert torch.equal(ids, _long([[5, 6, 7], [8, 0, 0], [0, 0, 0], [9, 10, 0]]))
    assert torch.equal(mask, _long([[1, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0]]))
    assert ids.dtype == mask.dtype == torch.long and ids.device.type == "cpu"


def test_left_pad_ragged_rows_exact():
    ids, mask = left_pad(RAGGED, PAD)
    assert torch.equal(ids, _long([[5, 6, 7], [0, 0, 8], [0, 0, 0], [0, 9, 10]]))
    assert torch.equal(mask, _long([[1, 1, 1], [0, 0, 1], [0, 0, 0], [0, 1, 1]]))


def test_pad_id_fills_padding_only():
    ids, mask = right_pad([[1], [2, 3]], 42)
    assert torch.equal(ids, _long([[1, 42], [2, 3]]))
    assert torch.equal(mask, _long([[1, 0], [1, 1]]))  # the mask does not depend on the pad id


@pytest.mark.parametrize("pad", [right_pad, left_pad])
def test_empty_inputs(pad):
    ids, mask = pad([], PAD)
    assert ids.shape == mask.shape == (0, 0)
    ids, mask = pad([[], []], PAD)
    assert ids.shape == (2, 0) and mask.shape == (2, 0)
    ids, mask = pad([[], []], 7, min_len=1)  # a forward needs one column: all padding, nothing counts
    assert torch.equal(ids, _long([[7], [7]])) and torch.equal(mask, _long([[0], [0]]))


def test_min_len_widens_but_never_cuts():
    ids, _ = right_pad([[1, 2, 3]], PAD, min_len=2)
    assert torch.equal(ids, _long([[1, 2, 3]]))
    ids, mask = right_pad([[1]], PAD, min_len=3)
    assert torch.equal(ids, _long([[1, 0, 0]])) and torch.equal(mask, _long([[1, 0, 0]]))


def test_max_len_keeps_the_start_on_the_right_and_the_end_on_the_left():
    ids, mask = right_pad([[1, 2, 3, 4], [5]], PAD, max_len=2)
    assert torch.equal(ids, _long([[1, 2], [5, 0]])) and torch.equal(mask, _long([[1, 1], [1, 0]]))
    ids, mask = left_pad([[1, 2, 3, 4], [5]], PAD, max_len=2)
    assert torch.equal(ids, _long([[3, 4], [0, 5]])) and torch.equal(mask, _long([[1, 1], [0, 1]]))
    assert right_pad([[1, 2]], PAD, max_len=0)[0].shape == (1, 0)
    assert left_pad([[1, 2]], PAD, max_len=0)[0].shape == (1, 0)  # not s[-0:], which would keep everything


def test_inputs_are_not_modified():
    seqs = [[1, 2, 3], [4]]
    right_pad(seqs, PAD, max_len=1)
    left_pad(seqs, PAD, max_len=1)
    pad_completions(seqs, seqs, PAD, max_len=2)
    assert seqs == [[1, 2, 3], [4]]


def test_pad_completions_marks_completion_tokens_exact():
    ids, attn, comp = pad_completions([[1, 2], [3], [4, 5, 6]], [[7, 8], [9, 10, 11], []], PAD)
    assert torch.equal(ids, _long([[1, 2, 7, 8], [3, 9, 10, 11], [4, 5, 6, 0]]))
    assert torch.equal(attn, _long([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]]))
    assert torch.equal(comp, _long([[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]]))
    assert comp.dtype == torch.long


def test_pad_completions_truncates_the_completion_first():
    ids, attn, comp = pad_completions([[1, 2], [3, 4, 5, 6]], [[7, 8, 9], [10]], PAD, max_len=3)
    assert torch.equal(ids, _long([[1, 2, 7], [3, 4, 5]]))
    assert torch.equal(attn, _long([[1, 1, 1], [1, 1, 1]]))
    assert torch.equal(comp, _long([[0, 0, 1], [0, 0, 0]]))  # a prompt longer than max_len keeps no completion


def test_device_argument_places_every_tensor():
    meta = torch.device("meta")
    assert {t.device for t in right_pad([[1]], PAD, device=meta)} == {meta}
    assert {t.device for t in left_pad([[1]], PAD, device=meta)} == {meta}
    assert {t.device for t in pad_completions([[1]], [[2]], PAD, device=meta)} == {meta}


def test_sft_batch_and_collate_pairs_are_the_helper():
    ids, loss_mask, attn = sft_batch([[1, 2], [3]], [[4], [5, 6, 7]], PAD, 3)
    assert torch.equal(ids, _long([[1, 2, 4], [3, 5, 6]]))
    assert torch.equal(loss_mask, _long([[0, 0, 1], [0, 1, 1]]))
    assert torch.equal(attn, _long([[1, 1, 1], [1, 1, 1]]))
    batch = collate_pairs([([1, 2], [3], [4, 5])], [7], PAD, torch.device("cpu"))
    assert torch.equal(batch.input_ids, _long([[1, 2, 3, 0], [1, 2, 4, 5]]))
    assert torch.equal(batch.attention_mask, _long([[1, 1, 1, 0], [1, 1, 1, 1]]))
    assert torch.equal(batch.completion_mask, _long([[0, 1, 0], [0, 1, 1]]))  # labels ids[:, 1:]
    assert batch.index.tolist() == [7]


def test_ilql_collate_step_mask_and_rewards_exact():
    from alignzoo.algos.ilql import collate

    batch = collate([([1, 2, 3, 4], 2, 0.5), ([5, 6, 7], 1, -1.0)], PAD, "cpu")
    assert torch.equal(batch.input_ids, _long([[1, 2, 3, 4], [5, 6, 7, 0]]))
    assert torch.equal(batch.mask, torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]))  # position j predicts j+1
    assert torch.equal(batch.rewards, torch.tensor([[0.0, 0.0, 0.5], [0.0, -1.0, 0.0]]))
    assert batch.mask.dtype == torch.float32


def test_pad_completions_needs_one_completion_per_prompt():
    with pytest.raises(ValueError, match="zip"):
        pad_completions([[1], [2]], [[3]], PAD)
